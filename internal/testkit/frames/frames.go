// Package frames reads and writes the test fixtures of captured netlink
// traffic: a file of datagrams, each a native-endian uint32 length and the
// bytes recv returned.
package frames

import (
	"encoding/binary"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// Read splits a fixture file into its datagrams.
func Read(t testing.TB, path string) [][]byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	var frames [][]byte
	for len(raw) > 0 {
		require.GreaterOrEqual(t, len(raw), 4)
		n := int(binary.NativeEndian.Uint32(raw))
		require.GreaterOrEqual(t, len(raw)-4, n)
		frames = append(frames, raw[4:4+n])
		raw = raw[4+n:]
	}
	return frames
}

// Write writes datagrams as a fixture file.
func Write(path string, frames [][]byte) error {
	var file []byte
	for _, f := range frames {
		file = binary.NativeEndian.AppendUint32(file, uint32(len(f)))
		file = append(file, f...)
	}
	return os.WriteFile(path, file, 0o644)
}
