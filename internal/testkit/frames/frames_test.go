package frames

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f.bin")
	in := [][]byte{{1, 2, 3}, {}, {4}}
	require.NoError(t, Write(path, in))
	assert.Equal(t, [][]byte{{1, 2, 3}, {}, {4}}, Read(t, path))
}
