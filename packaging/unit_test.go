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

// capabilities returns the capabilities a key grants, e.g. CAP_SYS_PTRACE.
func (u unitFile) capabilities(key string) []string {
	var caps []string
	for _, v := range u[key] {
		caps = append(caps, strings.Fields(v)...)
	}
	return caps
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

// TestUnitLeastPrivilege pins the unit's privileges: the capability sets are
// exactly the two that reading other users' /proc/PID/fd takes (the deb test
// proves both are needed), and no setting hides the host's sockets or
// processes from connbeat.
func TestUnitLeastPrivilege(t *testing.T) {
	u := parseUnit(t, "connbeat.service")
	want := []string{"CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"}
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
