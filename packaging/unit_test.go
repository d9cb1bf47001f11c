package packaging

import (
	"bufio"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// unitFile holds a systemd unit's [Service] settings: every value of each
// key, in order (capability lists may be split over several lines).
type unitFile map[string][]string

func parseUnit(t *testing.T, path string) unitFile {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		case section == "Service":
			k, v, ok := strings.Cut(line, "=")
			require.True(t, ok, "malformed line %q", line)
			u[k] = append(u[k], v)
		}
	}
	require.NoError(t, sc.Err())
	return u
}

// capabilities returns the capabilities a key grants, e.g. CAP_SYS_PTRACE;
// an empty assignment resets the list, as systemd does.
func (u unitFile) capabilities(key string) []string {
	var caps []string
	for _, v := range u[key] {
		if strings.TrimSpace(v) == "" {
			caps = nil
			continue
		}
		caps = append(caps, strings.Fields(v)...)
	}
	return caps
}

// with returns the unit with a drop-in's [Service] settings applied:
// each key's values follow the unit's, so list keys add up and an empty
// assignment resets them (capabilities), as systemd reads drop-ins.
func (u unitFile) with(dropIn unitFile) unitFile {
	out := unitFile{}
	for k, v := range u {
		out[k] = append([]string(nil), v...)
	}
	for k, v := range dropIn {
		out[k] = append(out[k], v...)
	}
	return out
}

// environment returns the value the unit's Environment= lines give name
// (the last assignment wins), and whether one does.
func (u unitFile) environment(name string) (string, bool) {
	value, found := "", false
	for _, line := range u["Environment"] {
		if k, v, ok := strings.Cut(line, "="); ok && k == name {
			value, found = v, true
		}
	}
	return value, found
}

// TestPollOnlyDropIn pins the shipped drop-in: over the unit it leaves the
// process join's two capabilities only, denies bpf(2) again and turns the
// capture off through CONNBEAT_OPTS, which ExecStart passes on.
func TestPollOnlyDropIn(t *testing.T) {
	unit := parseUnit(t, "connbeat.service")
	drop := parseUnit(t, "poll-only.conf")
	u := unit.with(drop)
	assert.ElementsMatch(t, joinCaps, u.capabilities("AmbientCapabilities"))
	assert.ElementsMatch(t, joinCaps, u.capabilities("CapabilityBoundingSet"))
	opts, ok := u.environment("CONNBEAT_OPTS")
	require.True(t, ok)
	assert.Equal(t, "-E connbeat.capture=poll", opts)
	require.Len(t, u["ExecStart"], 1)
	assert.True(t, strings.HasSuffix(u["ExecStart"][0], " $CONNBEAT_OPTS"), "ExecStart passes CONNBEAT_OPTS on")
	// The unit's filter lets bpf through for the capture; the drop-in's
	// last line takes it away.
	require.NotEmpty(t, u["SystemCallFilter"])
	assert.Equal(t, "~bpf", u["SystemCallFilter"][len(u["SystemCallFilter"])-1])
	assert.Equal(t, []string{"bpf"}, unit["SystemCallFilter"][len(unit["SystemCallFilter"])-1:])
}

// setprivCaps turns [CAP_SYS_PTRACE CAP_DAC_READ_SEARCH] into setpriv's
// "+sys_ptrace,+dac_read_search".
func setprivCaps(caps []string) string {
	out := make([]string, len(caps))
	for i, c := range caps {
		out[i] = "+" + strings.ToLower(strings.TrimPrefix(c, "CAP_"))
	}
	return strings.Join(out, ",")
}

// captureCaps are what the event capture takes on top of the process
// join's two (the package test proves the capture runs with them).
var captureCaps = []string{"CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"}

// joinCaps are what reading other users' /proc/PID/fd takes (the deb test
// proves both are needed): all the poll-only drop-in leaves.
var joinCaps = []string{"CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"}

// TestUnitLeastPrivilege pins the unit's privileges: the capability sets
// are exactly the process join's two and the capture's three, and no
// setting hides the host's sockets or processes from connbeat.
func TestUnitLeastPrivilege(t *testing.T) {
	u := parseUnit(t, "connbeat.service")
	want := append(append([]string(nil), joinCaps...), captureCaps...)
	assert.ElementsMatch(t, want, u.capabilities("AmbientCapabilities"))
	assert.ElementsMatch(t, want, u.capabilities("CapabilityBoundingSet"))

	for key, value := range map[string]string{
		"User":            "connbeat",
		"Group":           "connbeat",
		"NoNewPrivileges": "yes",
		"ProtectSystem":   "strict",
		"ProtectHome":     "yes",
		"PrivateTmp":      "yes",
		"ReadWritePaths":  "/var/lib/connbeat /var/log/connbeat",
		"Restart":         "on-failure",
	} {
		assert.Equal(t, []string{value}, u[key], key)
	}
	require.Len(t, u["ExecStart"], 1)
	assert.True(t, strings.HasPrefix(u["ExecStart"][0], "/usr/share/connbeat/bin/connbeat --path.home /usr/share/connbeat --path.config /etc/connbeat --path.data /var/lib/connbeat --path.logs /var/log/connbeat"),
		"ExecStart=%s", u["ExecStart"][0])
	// Each of these would make connbeat report nothing or no processes.
	for _, key := range []string{"PrivateNetwork", "ProtectProc", "ProcSubset", "PrivateUsers", "NetworkNamespacePath"} {
		assert.NotContains(t, u, key)
	}
}
