package tests

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFileOutputRotation writes far more events than fit the rotation
// settings and checks the files: each below rotate_every_kb, number_of_files
// rotated files kept beside the active one, the oldest deleted, and every
// line one whole JSON event.
func TestFileOutputRotation(t *testing.T) {
	t.Parallel()
	const (
		ip        = "127.0.0.8"
		listeners = 400
		rotateKB  = 8
		keep      = 3
	)
	dir := t.TempDir()
	lns := ownListeners(t, ip, listeners)
	mon := freePort(t)
	a := outputAgent(t, "  poll_interval: 200ms\n  aggregation: 5m",
		fmt.Sprintf("output.file:\n  path: %q\n  filename: connbeat\n  rotate_every_kb: %d\n  number_of_files: %d\n", dir, rotateKB, keep),
		keepOwn(ip), monitoring(mon))
	eventually(t, a, 60*time.Second, "every listener written", func() bool {
		return agentStats(t, mon).sofar("libbeat.output.events.acked") >= listeners
	})

	files, err := filepath.Glob(filepath.Join(dir, "connbeat-*.ndjson"))
	require.NoError(t, err)
	// libbeat's rotator keeps number_of_files rotated files and the active one.
	assert.Len(t, files, keep+1, "files: %v", files)

	seen := map[float64]int{}
	var lines int
	for _, f := range files {
		fi, err := os.Stat(f)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "libbeat's default permissions: %s", f)

		fh, err := os.Open(f)
		require.NoError(t, err)
		sc := bufio.NewScanner(fh)
		var last int64
		for sc.Scan() {
			lines++
			last = int64(len(sc.Bytes()) + 1)
			var e Event
			require.NoError(t, json.Unmarshal(sc.Bytes(), &e), "%s: %q", f, sc.Text())
			assert.Equal(t, "listening", e.Str("direction"))
			assert.Equal(t, ip, e.Str("local_ip"))
			seen[e.Get("local_port").(float64)]++
		}
		require.NoError(t, sc.Err())
		fh.Close()
		// Rotation comes after the write that crosses rotate_every_kb.
		assert.Less(t, fi.Size()-last, int64(rotateKB*1024), "%s: %d bytes", f, fi.Size())
	}
	assert.Less(t, lines, listeners, "the oldest files were deleted")
	assert.Greater(t, lines, keep*rotateKB*1024/2000, "the kept files are full of events")
	ours := map[float64]bool{}
	for _, l := range lns {
		ours[portOf(l)] = true
	}
	for p, n := range seen {
		assert.True(t, ours[p], "port %v is one of the test's listeners", p)
		assert.Equal(t, 1, n, "listener %v written once", p)
	}
}
