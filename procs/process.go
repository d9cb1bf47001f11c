package procs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/connbeat/connbeat/model"
	"github.com/connbeat/connbeat/procs/container"
	"github.com/connbeat/connbeat/procs/redact"
	"github.com/prometheus/procfs"
)

// MetadataOptions says which process details are read and shipped.
type MetadataOptions struct {
	Cmdline bool
	// RedactCmdline replaces credentials in command lines with
	// redact.Mask (see package redact).
	RedactCmdline bool
	// MaxCmdlineBytes bounds the command line read and shipped (its
	// arguments and their separators); the arguments past it are left out
	// and the process marked ArgsTruncated. 0: DefaultMaxCmdlineBytes.
	MaxCmdlineBytes  int
	Environ          bool
	EnvironAllowlist []string
}

// Bounds on what one process puts in an event. A local user controls a
// process's arguments and environment (up to ARG_MAX, 2 MiB and more) and
// so, without them, the size of every event about its sockets.
const (
	DefaultMaxCmdlineBytes = 8 << 10
	// MaxEnvValueBytes bounds each allowlisted environment value.
	MaxEnvValueBytes = 1 << 10
	// maxEnvironBytes bounds the environment searched for the allowlisted
	// variables.
	maxEnvironBytes = 256 << 10
)

// procKey identifies one process image: a pid is reused, a pid with its
// start time is not; exec keeps both but changes the image (execID), and a
// credential change the owner of /proc/PID (uid).
type procKey struct {
	pid   int32
	start uint64 // clock ticks since boot, field 22 of /proc/PID/stat
	exec  execID
	uid   uint32 // owner of /proc/PID/fd: the effective uid
}

// execID tells one exec of a process from the next without a read beyond
// /proc/PID/stat: the name, and where the program's code and stack were
// mapped (both move on every exec under ASLR, and the code's size changes
// with the program).
type execID struct {
	comm                           string
	startCode, endCode, startStack uint64
}

func execIDOf(st procfs.ProcStat) execID {
	return execID{comm: st.Comm, startCode: st.StartCode, endCode: st.EndCode, startStack: st.StartStack}
}

// metaReader reads process details once per process image.
type metaReader struct {
	fs       procfs.FS
	root     string
	opts     MetadataOptions
	bootTime time.Time
	users    map[uint32]string
}

func newMetaReader(fs procfs.FS, root string, opts MetadataOptions) (*metaReader, error) {
	st, err := fs.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading boot time from stat: %w", err)
	}
	if opts.MaxCmdlineBytes <= 0 {
		opts.MaxCmdlineBytes = DefaultMaxCmdlineBytes
	}
	return &metaReader{
		fs:       fs,
		root:     root,
		opts:     opts,
		bootTime: time.Unix(int64(st.BootTime), 0),
		users:    map[uint32]string{},
	}, nil
}

// userHZ is the kernel's USER_HZ, 100 on every architecture Linux ships.
const userHZ = 100

// key reads what names the process image pid runs now; uid is the owner
// of its /proc/PID/fd as the last listing saw it.
func (m *metaReader) key(pid int32, uid uint32) (procKey, procfs.ProcStat, error) {
	p, err := m.fs.Proc(int(pid))
	if err != nil {
		return procKey{}, procfs.ProcStat{}, err
	}
	st, err := p.Stat()
	if err != nil {
		return procKey{}, procfs.ProcStat{}, err
	}
	return procKey{pid: pid, start: st.Starttime, exec: execIDOf(st), uid: uid}, st, nil
}

// read gathers a process's details. It returns what it could read: a field
// that is unreadable (EACCES on exe for another user's process without
// CAP_SYS_PTRACE) stays empty instead of failing the whole process.
func (m *metaReader) read(key procKey, st procfs.ProcStat) *model.Process {
	p := &model.Process{
		PID:       key.pid,
		PPID:      int32(st.PPID),
		Name:      st.Comm,
		StartTime: m.bootTime.Add(time.Duration(key.start) * time.Second / userHZ),
	}
	proc, err := m.fs.Proc(int(key.pid))
	if err != nil {
		return p
	}
	if exe, err := proc.Executable(); err == nil && exe != "" {
		// The kernel appends " (deleted)" to the path of an executable
		// that was removed or replaced, and of every memfd.
		p.Executable, p.ExecutableDeleted = strings.CutSuffix(exe, " (deleted)")
		p.Binary = filepath.Base(p.Executable)
	} else {
		// Kernel threads and unreadable exe links: comm is the best name.
		p.Binary = st.Comm
	}
	if status, err := proc.NewStatus(); err == nil {
		p.UID = uint32(status.UIDs[0])
		p.User = m.userName(p.UID)
	}
	p.Container = m.container(key.pid)
	if m.opts.Cmdline {
		path := filepath.Join(m.root, strconv.Itoa(int(key.pid)), "cmdline")
		if args, truncated, err := readNULList(path, m.opts.MaxCmdlineBytes); err == nil && len(args) > 0 {
			if m.opts.RedactCmdline {
				args = redact.Args(args)
			}
			p.Args, p.ArgsTruncated = args, truncated
		}
	}
	if m.opts.Environ && len(m.opts.EnvironAllowlist) > 0 {
		path := filepath.Join(m.root, strconv.Itoa(int(key.pid)), "environ")
		if env, _, err := readNULList(path, maxEnvironBytes); err == nil {
			p.Environ, p.EnvironTruncated = filterEnviron(env, m.opts.EnvironAllowlist)
		}
	}
	return p
}

// container reads the container the process runs in from its cgroup
// file; nil outside containers and when the file is unreadable (the
// process exited) or malformed, which leaves the rest of the details
// valid.
func (m *metaReader) container(pid int32) *model.Container {
	f, err := os.Open(filepath.Join(m.root, strconv.Itoa(int(pid)), "cgroup"))
	if err != nil {
		return nil
	}
	defer f.Close()
	c, err := container.Parse(f)
	if err != nil {
		return nil
	}
	return c
}

// readNULList reads at most max bytes of a NUL-separated list (a command
// line, an environment). When there is more, the item cut by the bound is
// left out (a cut argument could end inside a secret that redaction then
// misses), unless it is the first: then its first max bytes stand for it.
func readNULList(path string, max int) (items []string, truncated bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	buf := make([]byte, max+1)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, false, err
	}
	data := buf[:n]
	if n > max {
		truncated = true
		data = data[:max]
		if i := bytes.LastIndexByte(data, 0); i >= 0 {
			data = data[:i]
		}
	}
	data = bytes.TrimSuffix(data, []byte{0})
	if len(data) == 0 {
		return nil, truncated, nil
	}
	return strings.Split(string(data), "\x00"), truncated, nil
}

func (m *metaReader) userName(uid uint32) string {
	if name, ok := m.users[uid]; ok {
		return name
	}
	name := ""
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		name = u.Username
	}
	m.users[uid] = name
	return name
}

// filterEnviron keeps the allowlisted variables, each value cut to
// MaxEnvValueBytes; truncated says one was cut.
func filterEnviron(env []string, allow []string) (out map[string]string, truncated bool) {
	for _, kv := range env {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !slices.Contains(allow, name) {
			continue
		}
		if out == nil {
			out = make(map[string]string, len(allow))
		}
		if len(value) > MaxEnvValueBytes {
			value, truncated = value[:MaxEnvValueBytes], true
		}
		out[name] = value
	}
	return out, truncated
}
