package zeromq

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFrameRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    int
		more bool
		hdr  []byte
	}{
		{"empty", 0, false, []byte{0, 0}},
		{"short more", 5, true, []byte{1, 5}},
		{"255", 255, false, []byte{0, 255}},
		{"long", 256, false, []byte{2, 0, 0, 0, 0, 0, 0, 1, 0}},
		{"long more", 70000, true, []byte{3, 0, 0, 0, 0, 0, 1, 0x11, 0x70}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := bytes.Repeat([]byte{'b'}, tc.n)
			hdr := appendFrameHeader(nil, tc.n, tc.more)
			assert.Equal(t, tc.hdr, hdr)
			f, err := readFrame(bytes.NewReader(append(hdr, body...)), 1<<20)
			require.NoError(t, err)
			assert.Equal(t, frame{more: tc.more, body: body}, f)
		})
	}
}

func TestReadFrameErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want error
		text string
	}{
		{"clean end", nil, io.EOF, ""},
		{"end in header", []byte{0}, io.ErrUnexpectedEOF, ""},
		{"end in long size", []byte{2, 0, 0}, io.ErrUnexpectedEOF, ""},
		{"end in body", []byte{0, 3, 'a'}, io.ErrUnexpectedEOF, ""},
		{"reserved flags", []byte{0x80, 0}, nil, "reserved bits"},
		{"huge", []byte{2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, errFrameTooLong, ""},
		{"over limit", []byte{2, 0, 0, 0, 0, 0, 1, 0, 1}, errFrameTooLong, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readFrame(bytes.NewReader(tc.in), maxPeerFrame)
			require.Error(t, err)
			if tc.want != nil {
				assert.True(t, errors.Is(err, tc.want), "%v", err)
			}
			assert.Contains(t, err.Error(), tc.text)
		})
	}
}

func TestSubscription(t *testing.T) {
	for _, tc := range []struct {
		body          []byte
		prefix        string
		subscribe, ok bool
	}{
		{[]byte{1}, "", true, true},
		{[]byte("\x01listener."), "listener.", true, true},
		{[]byte("\x00listener."), "listener.", false, true},
		{nil, "", false, false},
		{[]byte("\x02x"), "", false, false},
	} {
		prefix, on, ok := subscription(tc.body)
		assert.Equal(t, tc.prefix, prefix)
		assert.Equal(t, tc.subscribe, on)
		assert.Equal(t, tc.ok, ok)
	}
}

// FuzzReadFrame: any bytes from a peer give a frame within the limit or an
// error, never a panic or an allocation beyond the limit; a frame that was
// read encodes back to the bytes it came from (up to the short/long size
// form).
func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{0, 1, 1})
	f.Add([]byte{1, 3, 'a', 'b', 'c', 0, 0})
	f.Add([]byte{2, 0, 0, 0, 0, 0, 0, 1, 0})
	f.Add([]byte{4, 5, 'R', 'E', 'A', 'D', 'Y'})
	f.Add([]byte{2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	const limit = 1024
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		for {
			before := r.Len()
			fr, err := readFrame(r, limit)
			if err != nil {
				return
			}
			require.LessOrEqual(t, len(fr.body), limit)
			used := in[len(in)-before : len(in)-r.Len()]
			if fr.command {
				continue
			}
			hdr := appendFrameHeader(nil, len(fr.body), fr.more)
			if used[0]&flagLong == 0 || len(fr.body) > 255 {
				require.Equal(t, used, append(hdr, fr.body...))
			}
		}
	})
}
