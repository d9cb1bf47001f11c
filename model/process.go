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
	// Args is the command line; nil when expose_cmdline is off or unreadable.
	Args      []string
	StartTime time.Time
	UID       uint32
	User      string
	// Environ holds the allowlisted environment variables; nil unless
	// expose_environ is on.
	Environ map[string]string
}
