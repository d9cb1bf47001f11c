package procs

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Capability bits (include/uapi/linux/capability.h).
const (
	capDacReadSearch = 2
	capSysPtrace     = 19
)

// Access describes what the agent may read of other processes.
type Access struct {
	UID           int
	DacReadSearch bool
	SysPtrace     bool
}

// Full reports whether every process's fd table is readable.
func (a Access) Full() bool { return a.UID == 0 && a.SysPtrace || a.DacReadSearch && a.SysPtrace }

// Explain says, in one line for the startup log, what the agent cannot see
// and why; it is empty when the agent sees everything.
func (a Access) Explain() string {
	if a.Full() {
		return ""
	}
	var missing []string
	if !a.SysPtrace {
		missing = append(missing, "CAP_SYS_PTRACE")
	}
	if !a.DacReadSearch {
		missing = append(missing, "CAP_DAC_READ_SEARCH")
	}
	return fmt.Sprintf("running as uid %d without %s: sockets of processes owned by other users are reported without process fields (grant the capabilities to the binary or the service to see them; see README, Privileges)",
		a.UID, strings.Join(missing, " and "))
}

// SelfAccess reads the agent's own effective capabilities.
func SelfAccess(root string) (Access, error) {
	f, err := os.Open(filepath.Join(root, "self", "status"))
	if err != nil {
		return Access{}, fmt.Errorf("reading own capabilities: %w", err)
	}
	defer f.Close()
	eff, err := parseCapEff(f)
	if err != nil {
		return Access{}, fmt.Errorf("reading own capabilities: %w", err)
	}
	return Access{
		UID:           os.Geteuid(),
		DacReadSearch: eff&(1<<capDacReadSearch) != 0,
		SysPtrace:     eff&(1<<capSysPtrace) != 0,
	}, nil
}

// parseCapEff returns the CapEff mask of a /proc/PID/status file.
func parseCapEff(r io.Reader) (uint64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "CapEff:")
		if !ok {
			continue
		}
		v, err := strconv.ParseUint(strings.TrimSpace(rest), 16, 64)
		if err != nil {
			return 0, fmt.Errorf("malformed CapEff line %q: %w", sc.Text(), err)
		}
		return v, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no CapEff line in status")
}
