package procs

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connbeat/connbeat/internal/dirent"
)

func TestParseSocketLink(t *testing.T) {
	for target, want := range map[string]uint64{"socket:[1]": 1, "socket:[123456789]": 123456789, "socket:[18446744073709551615]": 1<<64 - 1} {
		got, ok := parseSocketLink([]byte(target))
		assert.True(t, ok, target)
		assert.Equal(t, want, got, target)
	}
	for _, target := range []string{"", "socket:[]", "socket:[12", "pipe:[12]", "/dev/null", "socket:[1a]",
		"socket:[18446744073709551616]", "socket:[123456789012345678901]", "anon_inode:[eventpoll]"} {
		_, ok := parseSocketLink([]byte(target))
		assert.False(t, ok, target)
	}
}

func TestParseCapEff(t *testing.T) {
	v, err := parseCapEff(strings.NewReader("Name:\tx\nCapInh:\t0\nCapEff:\t000001ffffffffff\nCapBnd:\t0\n"))
	require.NoError(t, err)
	assert.Equal(t, uint64(0x1ffffffffff), v)

	_, err = parseCapEff(strings.NewReader("Name:\tx\n"))
	require.ErrorContains(t, err, "no CapEff line")
	_, err = parseCapEff(strings.NewReader("CapEff:\tzz\n"))
	require.ErrorContains(t, err, "malformed CapEff line")
}

func TestAccessExplain(t *testing.T) {
	assert.Empty(t, Access{UID: 0, SysPtrace: true, DacReadSearch: true}.Explain())
	assert.Empty(t, Access{UID: 999, SysPtrace: true, DacReadSearch: true}.Explain())
	msg := Access{UID: 65534}.Explain()
	assert.Contains(t, msg, "uid 65534")
	assert.Contains(t, msg, "CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH")
	assert.Contains(t, Access{UID: 5, SysPtrace: true}.Explain(), "without CAP_DAC_READ_SEARCH")
}

func FuzzParseSocketLink(f *testing.F) {
	for _, s := range []string{"socket:[1]", "socket:[18446744073709551615]", "pipe:[3]", "socket:[", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ino, ok := parseSocketLink(b)
		if ok && string(b) != "socket:["+uitoa(ino)+"]" && !strings.HasPrefix(string(b), "socket:[0") {
			t.Fatalf("%q parsed as %d", b, ino)
		}
		if pid, ok := dirent.PID(b); ok && pid <= 0 {
			t.Fatalf("%q parsed as pid %d", b, pid)
		}
	})
}

// FuzzParseCapEff: a CapEff line with any value, after arbitrary lines
// that are not CapEff lines, reads back as that value; any input that
// parses has a CapEff line.
func FuzzParseCapEff(f *testing.F) {
	f.Add("Name:\tx\nCapInh:\t0\n", uint64(0x1ffffffffff))
	f.Add("", uint64(0))
	f.Add("CapEff:", uint64(1<<63))
	f.Add("CapEff:\tzz\nCapBnd:\t0", uint64(5))
	f.Fuzz(func(t *testing.T, before string, v uint64) {
		if _, err := parseCapEff(strings.NewReader(before)); err == nil && !strings.Contains(before, "CapEff:") {
			t.Fatalf("%q parsed without a CapEff line", before)
		}
		if len(before) > 4096 {
			return // lines longer than bufio.Scanner's buffer are an error
		}
		status := strings.ReplaceAll(before, "CapEff:", "CapXff:") + fmt.Sprintf("\nCapEff:\t%016x\nCapEff:\tffff\n", v)
		got, err := parseCapEff(strings.NewReader(status))
		require.NoError(t, err, "%q", status)
		require.Equal(t, v, got, "%q", status)
	})
}

func uitoa(v uint64) string {
	if v == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for v > 0 {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
	}
	return string(b[i:])
}
