package procs

import (
	"encoding/binary"
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

func FuzzParseDirents(f *testing.F) {
	f.Add(append(dirent(1, "."), dirent(2, "123")...))
	f.Add(dirent(7, "socket"))
	f.Add([]byte{})
	f.Add(make([]byte, direntHeader))
	f.Fuzz(func(t *testing.T, buf []byte) {
		total := 0
		_ = parseDirents(buf, func(_ uint64, name []byte) {
			total += direntHeader
			if len(name) > len(buf) {
				t.Fatalf("name longer than the buffer")
			}
		})
		if total > len(buf) {
			t.Fatalf("parsed %d bytes of records from %d", total, len(buf))
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

func FuzzParseCapEff(f *testing.F) {
	f.Add("CapEff:\t000001ffffffffff\n")
	f.Add("Name:\tx\nCapEff:\t0\n")
	f.Add("CapEff:")
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = parseCapEff(strings.NewReader(s))
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
