package procs

import "github.com/connbeat/connbeat/model"

// maxLookups bounds the details Lookup keeps of processes the fd scan has
// not listed.
const maxLookups = 4096

// Lookup returns the details of process pid as they are now, for a socket
// the kernel attributed to it (the event capture) rather than one found
// in its fd table: no fd scan is needed. uid is the process's uid as the
// kernel saw it. It returns nil when the process has exited or its stat
// cannot be read.
func (r *Resolver) Lookup(pid int32, uid uint32) *model.Process {
	if pid <= 0 {
		return nil
	}
	if r.procs[pid] != nil {
		if m := r.process(pid); m != nil {
			return m
		}
	}
	key, st, err := r.meta.key(pid, uid)
	if err != nil {
		return nil
	}
	if m, ok := r.lookups[key]; ok {
		return m
	}
	m := r.meta.read(key, st)
	if len(r.lookups) >= maxLookups {
		clear(r.lookups)
	}
	r.lookups[key] = m
	return m
}
