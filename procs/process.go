package procs

import (
	"fmt"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/connbeat/connbeat/model"
	"github.com/prometheus/procfs"
)

// MetadataOptions says which process details are read and shipped.
type MetadataOptions struct {
	Cmdline bool
	// RedactCmdline replaces credential-looking argument values with
	// "REDACTED" (password=..., --token x, user:pass@ in URLs).
	RedactCmdline    bool
	Environ          bool
	EnvironAllowlist []string
}

// procKey identifies one process instance: a pid is reused, a pid with its
// start time is not.
type procKey struct {
	pid   int32
	start uint64 // clock ticks since boot, field 22 of /proc/PID/stat
}

// metaReader reads process details once per process instance.
type metaReader struct {
	fs       procfs.FS
	opts     MetadataOptions
	bootTime time.Time
	users    map[uint32]string
}

func newMetaReader(fs procfs.FS, opts MetadataOptions) (*metaReader, error) {
	st, err := fs.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading boot time from stat: %w", err)
	}
	return &metaReader{
		fs:       fs,
		opts:     opts,
		bootTime: time.Unix(int64(st.BootTime), 0),
		users:    map[uint32]string{},
	}, nil
}

// userHZ is the kernel's USER_HZ, 100 on every architecture Linux ships.
const userHZ = 100

// startKey reads the start time that, with the pid, names the process.
func (m *metaReader) startKey(pid int32) (procKey, procfs.ProcStat, error) {
	p, err := m.fs.Proc(int(pid))
	if err != nil {
		return procKey{}, procfs.ProcStat{}, err
	}
	st, err := p.Stat()
	if err != nil {
		return procKey{}, procfs.ProcStat{}, err
	}
	return procKey{pid: pid, start: st.Starttime}, st, nil
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
		p.Executable = strings.TrimSuffix(exe, " (deleted)")
		p.Binary = filepath.Base(p.Executable)
	} else {
		// Kernel threads and unreadable exe links: comm is the best name.
		p.Binary = st.Comm
	}
	if status, err := proc.NewStatus(); err == nil {
		p.UID = uint32(status.UIDs[0])
		p.User = m.userName(p.UID)
	}
	if m.opts.Cmdline {
		if args, err := proc.CmdLine(); err == nil && len(args) > 0 {
			if m.opts.RedactCmdline {
				args = RedactArgs(args)
			}
			p.Args = args
		}
	}
	if m.opts.Environ && len(m.opts.EnvironAllowlist) > 0 {
		if env, err := proc.Environ(); err == nil {
			p.Environ = filterEnviron(env, m.opts.EnvironAllowlist)
		}
	}
	return p
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

func filterEnviron(env []string, allow []string) map[string]string {
	var out map[string]string
	for _, kv := range env {
		name, value, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		for _, a := range allow {
			if name == a {
				if out == nil {
					out = make(map[string]string, len(allow))
				}
				out[name] = value
				break
			}
		}
	}
	return out
}

// secretName matches argument names that usually carry a credential.
var secretName = regexp.MustCompile(`(?i)(pass(wd|word|phrase)?|secret|token|api[-_]?key|access[-_]?key|auth|credentials?|private[-_]?key)$`)

// urlUserinfo matches the password part of scheme://user:password@host.
var urlUserinfo = regexp.MustCompile(`(://[^/\s:@]*:)[^/\s@]+@`)

// Redacted replaces a credential in a redacted command line.
const Redacted = "REDACTED"

// RedactArgs returns args with credential-looking values replaced: the value
// of name=value and name:value when the name looks secret, the argument after
// a secret-looking flag (--password hunter2), and passwords in URLs.
func RedactArgs(args []string) []string {
	out := make([]string, len(args))
	redactNext := false
	for i, a := range args {
		if redactNext {
			out[i] = Redacted
			redactNext = false
			continue
		}
		a = urlUserinfo.ReplaceAllString(a, "${1}"+Redacted+"@")
		if name, _, ok := strings.Cut(a, "="); ok && secretName.MatchString(strings.TrimLeft(name, "-")) {
			a = name + "=" + Redacted
		} else if strings.HasPrefix(a, "-") && secretName.MatchString(strings.TrimLeft(a, "-")) {
			redactNext = i+1 < len(args) && !strings.HasPrefix(args[i+1], "-")
		}
		out[i] = a
	}
	return out
}
