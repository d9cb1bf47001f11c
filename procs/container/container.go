// Package container tells which container a process runs in from its
// /proc/PID/cgroup: every runtime names the cgroup it puts a container in
// after the container's id (Docker, containerd/CRI, CRI-O, Podman) or name
// (systemd-nspawn), on cgroup v1 and v2 alike.
package container

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/connbeat/connbeat/model"
)

// Runtime names, as model.Container.Runtime carries them.
const (
	Docker     = "docker"
	Containerd = "containerd"
	CRIO       = "cri-o"
	Podman     = "podman"
	// CRI is a Kubernetes container whose cgroupfs path does not say which
	// CRI runtime runs it (/kubepods/<qos>/pod<uid>/<id>).
	CRI    = "cri"
	Nspawn = "systemd-nspawn"
)

// MaxBytes bounds what Parse reads of a cgroup file. A process is in one
// cgroup per v1 hierarchy and one v2 cgroup; a path is at most PATH_MAX
// (4096) bytes, and hosts mount well under 16 hierarchies.
const MaxBytes = 64 << 10

// maxMachineName bounds a systemd-nspawn machine name (a host name: 64).
const maxMachineName = 64

// ErrTooLarge is returned for a cgroup file longer than MaxBytes.
var ErrTooLarge = errors.New("cgroup file larger than the bound")

// Parse reads a /proc/PID/cgroup file ("hierarchy-ID:controllers:path" a
// line, "0::path" for cgroup v2) and returns the container the process runs
// in, or nil when no line names one. Lines are tried in order and the first
// container found wins; in a path, the innermost container does (Docker in
// Docker). A malformed line or a file larger than MaxBytes is an error.
func Parse(r io.Reader) (*model.Container, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading cgroup file: %w", err)
	}
	if len(data) > MaxBytes {
		return nil, fmt.Errorf("%w (%d bytes)", ErrTooLarge, MaxBytes)
	}
	var found *model.Container
	for line := 1; len(data) > 0; line++ {
		text := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			text, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if len(text) == 0 {
			continue
		}
		_, rest, ok1 := bytes.Cut(text, []byte{':'})
		_, path, ok2 := bytes.Cut(rest, []byte{':'})
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("cgroup file line %d: %q is not hierarchy:controllers:path", line, clip(string(text)))
		}
		if found == nil {
			found = FromPath(string(path))
		}
	}
	return found, nil
}

// clip shortens hostile text for an error message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// FromPath returns the container a cgroup path belongs to, or nil. It
// looks at the path's components from the innermost out.
func FromPath(path string) *model.Container {
	path = strings.Trim(path, "/")
	for path != "" {
		name, parents := path, ""
		if i := strings.LastIndexByte(path, '/'); i >= 0 {
			name, parents = path[i+1:], path[:i]
		}
		if c := fromComponent(name, parents); c != nil {
			return c
		}
		path = parents
	}
	return nil
}

// fromComponent recognises one path component; parents is the path
// above it.
func fromComponent(name, parents string) *model.Container {
	// systemd's cgroup driver: one scope unit a container, named
	// <runtime>-<id>.scope. The runtime's own monitor (conmon) gets a
	// <runtime>-conmon-<id>.scope beside it: not the container.
	if unit, ok := strings.CutSuffix(name, ".scope"); ok {
		for _, s := range []struct{ prefix, runtime string }{
			{"docker-", Docker},
			{"cri-containerd-", Containerd},
			{"crio-", CRIO},
			{"libpod-", Podman},
		} {
			if id, ok := strings.CutPrefix(unit, s.prefix); ok && isID(id) {
				return &model.Container{ID: id, Runtime: s.runtime}
			}
		}
		if m, ok := strings.CutPrefix(unit, "machine-"); ok && parent(parents) == "machine.slice" {
			return machine(m)
		}
		return nil
	}
	// systemd-nspawn started as its template service: the payload runs in
	// .../systemd-nspawn@<name>.service/payload (or directly in it).
	if unit, ok := strings.CutSuffix(name, ".service"); ok {
		if m, ok := strings.CutPrefix(unit, "systemd-nspawn@"); ok {
			return machine(m)
		}
		return nil
	}
	if !isID(name) {
		// cgroupfs drivers that prefix the id: Podman's
		// /libpod_parent/libpod-<id>, CRI-O's .../pod<uid>/crio-<id>.
		if id, ok := strings.CutPrefix(name, "libpod-"); ok && isID(id) {
			return &model.Container{ID: id, Runtime: Podman}
		}
		if id, ok := strings.CutPrefix(name, "crio-"); ok && isID(id) {
			return &model.Container{ID: id, Runtime: CRIO}
		}
		return nil
	}
	// cgroupfs drivers name the container's cgroup by its bare id, under
	// the runtime's parent: /docker/<id>, /kubepods/<qos>/pod<uid>/<id>.
	p := parent(parents)
	switch {
	case p == "docker":
		return &model.Container{ID: name, Runtime: Docker}
	case strings.HasPrefix(p, "pod") && inKubepods(parents):
		return &model.Container{ID: name, Runtime: CRI}
	}
	return nil
}

// parent returns the last component of a path.
func parent(parents string) string {
	return parents[strings.LastIndexByte(parents, '/')+1:]
}

func inKubepods(parents string) bool {
	for _, p := range strings.Split(parents, "/") {
		if p == "kubepods" || strings.HasPrefix(p, "kubepods.slice") || strings.HasPrefix(p, "kubepods-") {
			return true
		}
	}
	return false
}

// isID reports whether s is a container id as Docker, containerd, CRI-O
// and Podman make them: 64 lower-case hex digits.
func isID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// machine returns the systemd-nspawn container named by a unit name,
// undoing systemd's escaping (\x2d for '-'). Names that are not a host
// name after unescaping are not taken; libvirt's virtual machines
// (machine-qemu...) register as machines too but are not containers.
func machine(escaped string) *model.Container {
	name, ok := unescapeUnit(escaped)
	if !ok || name == "" || len(name) > maxMachineName || strings.HasPrefix(name, "qemu-") {
		return nil
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return nil
		}
	}
	return &model.Container{ID: name, Runtime: Nspawn}
}

// unescapeUnit undoes systemd's unit-name escaping of one name: "\xNN"
// is the byte NN.
func unescapeUnit(s string) (string, bool) {
	if !strings.Contains(s, `\x`) {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' {
			hi, ok1 := unhex(s[i+2])
			lo, ok2 := unhex(s[i+3])
			if !ok1 || !ok2 {
				return "", false
			}
			b.WriteByte(hi<<4 | lo)
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String(), true
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
