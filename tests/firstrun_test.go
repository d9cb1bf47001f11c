package tests

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestShippedConfigPrintsAtOnce runs the agent with connbeat.yml as shipped
// (what `make run` uses) and waits for its first event. libbeat's memory
// queue alone would hold the first events for its 10 s flush timeout; the
// beater's queue default brings them out within a poll and a flush, so a
// bound well under 10 s tells the two apart on any machine.
func TestShippedConfigPrintsAtOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	port := float64(ln.Addr().(*net.TCPAddr).Port)

	dir := t.TempDir()
	shipped, err := os.ReadFile("../connbeat.yml")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "connbeat.yml"), shipped, 0o644))
	start := time.Now()
	a := runAgentCmd(t, dir, []string{bins.connbeat, "-e", "-c", filepath.Join(dir, "connbeat.yml"),
		"--strict.perms=false", "--path.data", dir, "--path.logs", dir})
	ev := a.WaitFor("the test's listener", func(e Event) bool { return e.Get("local_port") == port })
	elapsed := time.Since(start)
	assert.Less(t, elapsed, 5*time.Second, "first events printed %s after start", elapsed)
	assert.Equal(t, "listener", ev.Str("connbeat.kind"))
	assert.True(t, strings.Contains(a.Stderr(), "connbeat started"), "start line logged")
}
