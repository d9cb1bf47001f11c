package model

import "time"

// Process is what events say about a socket's owner. Fields the agent could
// not read (permissions, a process that exited) are left empty.
type Process struct {
	PID        int32
	PPID       int32
	Name       string // comm, as the kernel truncates it to 15 bytes
	Binary     string // base name of Executable
	Executable string
	// ExecutableDeleted says the executable file no longer exists under
	// that path: replaced or deleted since the process started, or a
	// memfd (Executable "/memfd:name"), a common sign of fileless malware.
	ExecutableDeleted bool
	// Args is the command line; nil when expose_cmdline is off or unreadable.
	Args []string
	// ArgsTruncated says Args stops short: the command line was longer than
	// the configured bound, and the arguments past it were left out.
	ArgsTruncated bool
	StartTime     time.Time
	UID           uint32
	User          string
	// Environ holds the allowlisted environment variables; nil unless
	// expose_environ is on.
	Environ map[string]string
	// EnvironTruncated says a value of Environ was cut to the bound.
	EnvironTruncated bool
	// Container is the container the process runs in, read from its
	// cgroup path; nil for a process outside any container.
	Container *Container
}

// Container identifies the container a process runs in.
type Container struct {
	// ID is the runtime's container id (64 hex digits for Docker,
	// containerd, CRI-O and Podman; the machine name for systemd-nspawn).
	ID string
	// Runtime names the runtime the cgroup path belongs to ("docker",
	// "containerd", "cri-o", "podman", "systemd-nspawn"; "cri" for a
	// Kubernetes container whose cgroupfs path does not name its runtime).
	Runtime string
}
