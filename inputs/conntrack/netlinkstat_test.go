package conntrack

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestParseNetlinkDrops reads a captured /proc/net/netlink and variants the
// parser must refuse rather than misread.
func TestParseNetlinkDrops(t *testing.T) {
	f, err := os.Open("testdata/netlink")
	require.NoError(t, err)
	defer f.Close()
	drops, ok, err := parseNetlinkDrops(f, 567)
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Zero(t, drops)

	const header = "sk               Eth Pid        Groups   Rmem     Wmem     Dump  Locks    Drops    Inode\n"
	for _, tc := range []struct {
		name, text string
		ino        uint64
		drops      uint64
		found      bool
		err        string
	}{
		{"drops of the socket", header + "0000000012345678 12  4321       00000006 0        0        0     2        1994     77\n", 77, 1994, true, ""},
		{"another socket", header + "0000000012345678 12  4321       00000006 0        0        0     2        1994     77\n", 78, 0, false, ""},
		{"columns by name", "Inode Drops\n77 5\n", 77, 5, true, ""},
		{"no such columns", "sk Eth Pid\n1 2 3\n", 77, 0, false, "no Drops and Inode columns"},
		{"short line", header + "0000000012345678 12 4321\n", 77, 0, false, "has 3 columns, the header 10"},
		{"negative drops", "Inode Drops\n77 -1\n", 77, 0, false, "Drops of inode 77"},
		{"empty", "", 77, 0, false, "empty file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			drops, found, err := parseNetlinkDrops(strings.NewReader(tc.text), tc.ino)
			if tc.err != "" {
				assert.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.found, found)
			assert.Equal(t, tc.drops, drops)
		})
	}
}

// FuzzParseNetlinkDrops: any text gives an answer or an error, never a
// panic.
func FuzzParseNetlinkDrops(f *testing.F) {
	b, err := os.ReadFile("testdata/netlink")
	require.NoError(f, err)
	f.Add(string(b), uint64(567))
	f.Add("Inode Drops\n77 5\n", uint64(77))
	f.Fuzz(func(t *testing.T, text string, ino uint64) {
		_, _, _ = parseNetlinkDrops(strings.NewReader(text), ino)
	})
}
