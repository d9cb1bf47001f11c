package dirent

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// record encodes one linux_dirent64 record, padded to 8 bytes as the kernel does.
func record(ino uint64, name string) []byte {
	reclen := (Header + len(name) + 1 + 7) &^ 7
	b := make([]byte, reclen)
	binary.NativeEndian.PutUint64(b[0:8], ino)
	binary.NativeEndian.PutUint64(b[8:16], 1)
	binary.NativeEndian.PutUint16(b[16:18], uint16(reclen))
	b[18] = 4
	copy(b[Header:], name)
	return b
}

func TestParse(t *testing.T) {
	var buf []byte
	for i, name := range []string{".", "..", "1", "self", "4242"} {
		buf = append(buf, record(uint64(100+i), name)...)
	}
	type entry struct {
		Ino  uint64
		Name string
	}
	var got []entry
	require.NoError(t, Parse(buf, func(ino uint64, name []byte) { got = append(got, entry{ino, string(name)}) }))
	assert.Equal(t, []entry{{100, "."}, {101, ".."}, {102, "1"}, {103, "self"}, {104, "4242"}}, got)

	for name, bad := range map[string][]byte{
		"short header":     buf[:10],
		"reclen past end":  buf[:len(buf)-1],
		"reclen too small": append(append([]byte{}, buf[:8]...), make([]byte, 16)...),
	} {
		t.Run(name, func(t *testing.T) {
			require.ErrorIs(t, Parse(bad, func(uint64, []byte) {}), ErrShort)
		})
	}
}

func TestPID(t *testing.T) {
	for name, want := range map[string]int32{"1": 1, "4242": 4242, "2147483647": 2147483647} {
		got, ok := PID([]byte(name))
		assert.True(t, ok, name)
		assert.Equal(t, want, got, name)
	}
	for _, name := range []string{"", "0", "self", "-1", "12a", "2147483648", "99999999999", "net"} {
		_, ok := PID([]byte(name))
		assert.False(t, ok, name)
	}
}

// FuzzParse: records encoded as the kernel writes them (names from
// names, split at '/', inodes counting up from ino) are read back exactly,
// followed by arbitrary bytes that may only add records or an error; and
// no buffer yields more records than it has room for.
func FuzzParse(f *testing.F) {
	f.Add(uint64(1), ".//..//123/self", []byte{})
	f.Add(uint64(7), "socket", make([]byte, Header))
	f.Add(uint64(1<<63), "", record(9, "x"))
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
			buf = append(buf, record(ino+uint64(i), name)...)
			want = append(want, entry{ino + uint64(i), name})
		}
		var got []entry
		require.NoError(t, Parse(buf, func(ino uint64, name []byte) { got = append(got, entry{ino, string(name)}) }))
		require.Equal(t, want, got)

		got = got[:0]
		err := Parse(append(buf, tail...), func(ino uint64, name []byte) { got = append(got, entry{ino, string(name)}) })
		require.GreaterOrEqual(t, len(got), len(want), "%v", err)
		require.Equal(t, want, got[:len(want)], "the records before the tail")
		if extra := len(got) - len(want); extra > len(tail)/Header {
			t.Fatalf("%d records from a tail of %d bytes", extra, len(tail))
		}
		if err == nil && len(tail) > 0 && len(tail) < Header {
			t.Fatalf("a tail of %d bytes read without an error", len(tail))
		}
	})
}
