package testkit

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFreePorts: the ports are distinct, below the ephemeral range, and
// bindable on every address.
func TestFreePorts(t *testing.T) {
	ports, err := FreePorts(8)
	require.NoError(t, err)
	require.Len(t, ports, 8)
	low := ephemeralLow("/proc/sys/net/ipv4/ip_local_port_range")
	seen := map[int]bool{}
	for _, p := range ports {
		assert.False(t, seen[p], "port %d twice", p)
		seen[p] = true
		assert.GreaterOrEqual(t, p, 10000)
		assert.Less(t, p, low)
		l, err := net.Listen("tcp", ":"+strconv.Itoa(p))
		require.NoError(t, err, "port %d", p)
		l.Close()
	}
}

func TestEphemeralLow(t *testing.T) {
	dir := t.TempDir()
	for content, want := range map[string]int{"40000\t60999\n": 40000, "garbage": 32768, "80 60999": 32768} {
		p := filepath.Join(dir, "range")
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
		assert.Equal(t, want, ephemeralLow(p), content)
	}
	assert.Equal(t, 32768, ephemeralLow(filepath.Join(dir, "missing")))
}
