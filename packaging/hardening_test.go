package packaging

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// maxExposure is the unit's `systemd-analyze security` exposure level
// (0 safest .. 10): 3.6 before the system call filter, read-only /proc,
// @resources and the other settings below; 2.0 with them and polling
// only; 2.3 with the event capture's CAP_BPF, CAP_NET_ADMIN and bpf(2).
// What is left is what connbeat's job takes: the host's network, its
// whole /proc, netlink, CAP_SYS_PTRACE and the capture's programs
// (docs/packaging.md).
const maxExposure = 2.3

// TestUnitHardening pins what limits a compromised agent: the system calls
// that CAP_SYS_PTRACE makes dangerous are denied, /proc is read-only (no
// writes to /proc/PID/mem), memory and tasks are bounded.
func TestUnitHardening(t *testing.T) {
	u := parseUnit(t, "connbeat.service")
	require.Len(t, u["SystemCallFilter"], 3)
	assert.Equal(t, []string{"@system-service", "seccomp"}, strings.Fields(u["SystemCallFilter"][0]))
	denied := strings.Fields(strings.TrimPrefix(u["SystemCallFilter"][1], "~"))
	for _, s := range []string{"ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp", "@debug", "@privileged", "@mount"} {
		assert.Contains(t, denied, s)
	}
	// The capture's one call out of @privileged, and nothing else.
	assert.Equal(t, "bpf", u["SystemCallFilter"][2])
	for key, value := range map[string]string{
		"SystemCallErrorNumber":   "EPERM",
		"SystemCallArchitectures": "native",
		"ReadOnlyPaths":           "/proc",
		"MemoryMax":               "1G",
		"TasksMax":                "256",
		"KeyringMode":             "private",
		"DevicePolicy":            "closed",
	} {
		assert.Equal(t, []string{value}, u[key], key)
	}
}

// TestUnitSecurityScore records the unit's exposure as `systemd-analyze
// security` rates it (offline: no running systemd needed).
func TestUnitSecurityScore(t *testing.T) {
	requireTools(t, "systemd-analyze")
	out, err := exec.Command("systemd-analyze", "security", "--offline=true", "--no-pager", "connbeat.service").CombinedOutput()
	require.NoError(t, err, "%s", out)
	m := regexp.MustCompile(`Overall exposure level for connbeat.service: ([0-9.]+)`).FindSubmatch(out)
	require.NotNil(t, m, "%s", out)
	score, err := strconv.ParseFloat(string(m[1]), 64)
	require.NoError(t, err)
	t.Logf("systemd-analyze security: exposure %.1f (0 safest, 10 unsafe)", score)
	assert.LessOrEqual(t, score, maxExposure, "%s", out)
}

// syscallGroups reads systemd's system call groups (`systemd-analyze
// syscall-filter`): group -> members, which may be groups.
func syscallGroups(t *testing.T) map[string][]string {
	out, err := exec.Command("systemd-analyze", "syscall-filter", "--no-pager").Output()
	require.NoError(t, err)
	groups := map[string][]string{}
	current := ""
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "@"):
			current = strings.TrimSpace(line)
		case current != "" && strings.HasPrefix(line, "    ") && !strings.HasPrefix(strings.TrimSpace(line), "#"):
			groups[current] = append(groups[current], strings.TrimSpace(line))
		}
	}
	return groups
}

// allowedSyscalls applies SystemCallFilter lines in order, as systemd does
// when the first is an allow list: later lines add, ~lines take away.
func allowedSyscalls(t *testing.T, lines []string) map[string]bool {
	groups := syscallGroups(t)
	allowed := map[string]bool{}
	for _, line := range lines {
		deny := strings.HasPrefix(line, "~")
		for n := range expand(groups, strings.Fields(strings.TrimPrefix(line, "~"))) {
			if deny {
				delete(allowed, n)
			} else {
				allowed[n] = true
			}
		}
	}
	return allowed
}

// expand turns a SystemCallFilter list into system call names.
func expand(groups map[string][]string, names []string) map[string]bool {
	out := map[string]bool{}
	var add func(string)
	add = func(n string) {
		if !strings.HasPrefix(n, "@") {
			out[n] = true
			return
		}
		for _, m := range groups[n] {
			add(m)
		}
	}
	for _, n := range names {
		add(n)
	}
	return out
}

// testHardenedRun runs the installed agent as the unit would (the connbeat
// user, the unit's capabilities, no new privileges) in a mount namespace
// whose /proc is read-only (ReadOnlyPaths=/proc), under strace, as shipped
// (capturing events) and with the poll-only drop-in. The agent still joins
// another user's connection to its process, and every system call it made
// is one the SystemCallFilter in effect allows: bpf(2) included as
// shipped; with the drop-in, bpf only where the auto socket source probes
// it (it fails as it does without CAP_BPF). With the unit's capabilities
// another user's /proc/PID/mem opens for reading (what is left of
// CAP_SYS_PTRACE, docs/packaging.md) but not for writing.
func testHardenedRun(t *testing.T) {
	requireTools(t, "strace", "unshare", "mount")
	unit := parseUnit(t, unitPath)
	readOnlyProc := func(argv ...string) []string {
		// A private mount namespace with /proc bound read-only, then the
		// command: what ReadOnlyPaths=/proc gives the service.
		script := `mount --make-rprivate / && mount --bind /proc /proc && mount -o remount,bind,ro /proc && exec "$@"`
		return append([]string{"unshare", "--mount", "sh", "-c", script, "sh"}, argv...)
	}
	python := func(ro bool, code string) string {
		argv := asService(unit, "/usr/bin/python3", "-c", code)
		if ro {
			argv = readOnlyProc(argv...)
		}
		out, _ := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		return strings.TrimSpace(string(out))
	}
	openMem := func(path, flags string) string {
		return fmt.Sprintf(`import os
try:
    os.close(os.open(%q, %s)); print("opened")
except OSError as e:
    print(e.strerror)`, path, flags)
	}

	port := listen(t)
	pid := connectAs(t, "nobody", port)
	mem := fmt.Sprintf("/proc/%d/mem", pid)
	assert.Equal(t, "Permission denied", python(false, openMem(mem, "os.O_RDWR")), "no CAP_DAC_OVERRIDE: another user's memory is not writable")
	assert.Equal(t, "opened", python(false, openMem(mem, "os.O_RDONLY")), "CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH read it (documented)")
	assert.Equal(t, "opened", python(false, openMem("/proc/self/mem", "os.O_RDWR")), "a writable /proc")
	assert.Equal(t, "Read-only file system", python(true, openMem("/proc/self/mem", "os.O_RDWR")), "ReadOnlyPaths=/proc")

	for _, tt := range []struct {
		name        string
		unit        unitFile
		capture     string
		mayRefuse   []string // calls the filter may refuse without harm
		mustCallBPF bool
	}{
		{"as shipped", unit, "events", nil, true},
		// bpf only where the host holds 10,000 sockets or more: auto
		// then tries the bpf source, which the filter refuses with EPERM
		// as a missing CAP_BPF would, and stays on netlink.
		{"poll-only drop-in", unit.with(parseUnit(t, dropInPath)), "poll", []string{"bpf"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			trace := filepath.Join(t.TempDir(), "strace.out")
			cfg := writeAgentConfig(t, agentConfig)
			argv := append([]string{"strace", "-f", "-qq", "-o", trace}, readOnlyProc(asService(tt.unit, "/usr/bin/connbeat", "-c", cfg)...)...)
			a := startAgent(t, "/", argv...)
			a.logDir = "/var/log/connbeat"
			ev := a.waitFor(t, fmt.Sprintf("nobody's connection to port %d", port), func(ev map[string]any) bool {
				return field(ev, "direction") == "outbound" && number(ev, "remote_port") == port
			})
			assert.Equal(t, pid, number(ev, "local_process.pid"), "joined to its process with /proc read-only")
			time.Sleep(2 * time.Second) // a few more polls
			// SIGTERM to the agent, not to strace (which would detach and
			// leave it running); strace exits with it.
			agentPID := descendant(t, a.cmd.Process.Pid, "/usr/share/connbeat/bin/connbeat")
			require.NoError(t, syscall.Kill(agentPID, syscall.SIGTERM))
			a.stop(t)

			allowed := allowedSyscalls(t, tt.unit["SystemCallFilter"])
			used := tracedSyscalls(t, trace, "/usr/bin/connbeat")
			require.NotEmpty(t, used)
			var refused []string
			for n := range used {
				if !allowed[n] {
					refused = append(refused, n)
				}
			}
			sort.Strings(refused)
			t.Logf("the agent made %d distinct system calls", len(used))
			assert.Subset(t, tt.mayRefuse, refused, "system calls the agent made that the SystemCallFilter refuses")
			if tt.mustCallBPF {
				assert.True(t, used["bpf"], "the capture loads its programs through bpf(2)")
			}
			assert.Contains(t, a.stderrText(), "connbeat started: source=netlink ")
			assert.Contains(t, a.stderrText(), " capture="+tt.capture+" ")
		})
	}
}

// descendant finds the process running exe among the descendants of pid.
func descendant(t *testing.T, pid int, exe string) int {
	t.Helper()
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	require.NoError(t, err)
	parent := map[int]int{}
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		p, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		pp, _ := strconv.Atoi(fields[1])
		parent[p] = pp
	}
	for p := range parent {
		if target, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", p)); target != exe {
			continue
		}
		for q := parent[p]; q > 1; q = parent[q] {
			if q == pid {
				return p
			}
		}
	}
	t.Fatalf("no %s below pid %d", exe, pid)
	return 0
}

// tracedSyscalls returns the system calls strace saw from the execve of
// exe on (setpriv's and unshare's own calls before it are left out).
func tracedSyscalls(t *testing.T, path, exe string) map[string]bool {
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	name := regexp.MustCompile(`^\d+\s+(?:<\.\.\. )?([a-z0-9_]+)[( ]`)
	used := map[string]bool{}
	started := false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !started {
			started = strings.Contains(line, `execve("`+exe+`"`) && !strings.Contains(line, "= -1")
			continue
		}
		if strings.Contains(line, "+++") || strings.Contains(line, "---") {
			continue // exits and signals
		}
		if m := name.FindStringSubmatch(line); m != nil {
			used[m[1]] = true
		}
	}
	require.NoError(t, sc.Err())
	require.True(t, started, "no execve of %s in the trace", exe)
	return used
}
