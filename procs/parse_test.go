package procs

import (
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// dirent encodes one linux_dirent64 record, padded to 8 bytes as the kernel does.
func dirent(ino uint64, name string) []byte {
	reclen := (direntHeader + len(name) + 1 + 7) &^ 7
	b := make([]byte, reclen)
	binary.NativeEndian.PutUint64(b[0:8], ino)
	binary.NativeEndian.PutUint64(b[8:16], 1)
	binary.NativeEndian.PutUint16(b[16:18], uint16(reclen))
	b[18] = 4
	copy(b[direntHeader:], name)
	return b
}

func TestParseDirents(t *testing.T) {
	var buf []byte
	for i, name := range []string{".", "..", "1", "self", "4242"} {
		buf = append(buf, dirent(uint64(100+i), name)...)
	}
	type entry struct {
		Ino  uint64
		Name string
	}
	var got []entry
	require.NoError(t, parseDirents(buf, func(ino uint64, name []byte) { got = append(got, entry{ino, string(name)}) }))
	assert.Equal(t, []entry{{100, "."}, {101, ".."}, {102, "1"}, {103, "self"}, {104, "4242"}}, got)

	for name, bad := range map[string][]byte{
		"short header":     buf[:10],
		"reclen past end":  buf[:len(buf)-1],
		"reclen too small": append(append([]byte{}, buf[:8]...), make([]byte, 16)...),
	} {
		t.Run(name, func(t *testing.T) {
			require.ErrorIs(t, parseDirents(bad, func(uint64, []byte) {}), errShortDirent)
		})
	}
}

func TestParsePID(t *testing.T) {
	for name, want := range map[string]int32{"1": 1, "4242": 4242, "2147483647": 2147483647} {
		got, ok := parsePID([]byte(name))
		assert.True(t, ok, name)
		assert.Equal(t, want, got, name)
	}
	for _, name := range []string{"", "0", "self", "-1", "12a", "2147483648", "99999999999", "net"} {
		_, ok := parsePID([]byte(name))
		assert.False(t, ok, name)
	}
}

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

// FuzzParseDirents: records encoded as the kernel writes them (names from
// names, split at '/', inodes counting up from ino) are read back exactly,
// followed by arbitrary bytes that may only add records or an error; and
// no buffer yields more records than it has room for.
func FuzzParseDirents(f *testing.F) {
	f.Add(uint64(1), ".//..//123/self", []byte{})
	f.Add(uint64(7), "socket", make([]byte, direntHeader))
	f.Add(uint64(1<<63), "", dirent(9, "x"))
	f.Add(uint64(0), "a/b", []byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, ino uint64, names string, tail []byte) {
		type entry struct {
			Ino  uint64
			Name string
		}
		var buf []byte
		var want []entry
		for i, name := range strings.Split(strings.ReplaceAll(names, "\x00", ""), "/") {
			if len(name) > 255 {
				name = name[:255] // NAME_MAX
			}
			buf = append(buf, dirent(ino+uint64(i), name)...)
			want = append(want, entry{ino + uint64(i), name})
		}
		var got []entry
		require.NoError(t, parseDirents(buf, func(ino uint64, name []byte) { got = append(got, entry{ino, string(name)}) }))
		require.Equal(t, want, got)

		got = got[:0]
		err := parseDirents(append(buf, tail...), func(ino uint64, name []byte) { got = append(got, entry{ino, string(name)}) })
		require.GreaterOrEqual(t, len(got), len(want), "%v", err)
		require.Equal(t, want, got[:len(want)], "the records before the tail")
		if extra := len(got) - len(want); extra > len(tail)/direntHeader {
			t.Fatalf("%d records from a tail of %d bytes", extra, len(tail))
		}
		if err == nil && len(tail) > 0 && len(tail) < direntHeader {
			t.Fatalf("a tail of %d bytes read without an error", len(tail))
		}
	})
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
		if pid, ok := parsePID(b); ok && pid <= 0 {
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
