package filetail

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLines: each whole line is given once, across files and calls; a
// line still being written waits for its newline.
func TestLines(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "events-1.ndjson")
	require.NoError(t, os.WriteFile(a, []byte("one\ntwo\nthr"), 0o600))
	r := New(filepath.Join(dir, "events*"))
	var got []string
	collect := func(line []byte) {
		if len(line) > 0 {
			got = append(got, string(line))
		}
	}
	require.NoError(t, r.Lines(collect))
	assert.Equal(t, []string{"one", "two"}, got)

	f, err := os.OpenFile(a, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString("ee\n")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.NoError(t, os.WriteFile(filepath.Join(dir, "events-2.ndjson"), []byte("four\n"), 0o600))
	got = nil
	require.NoError(t, r.Lines(collect))
	assert.Equal(t, []string{"three", "four"}, got)

	got = nil
	require.NoError(t, r.Lines(collect))
	assert.Empty(t, got)
}
