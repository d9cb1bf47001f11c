package bpfiter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"testing/iotest"

	"github.com/connbeat/connbeat/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// records returns n valid records, alternating IPv4 and IPv6, and the
// sockets they stand for.
func records(n int) ([]byte, []model.Socket) {
	var buf []byte
	var want []model.Socket
	for i := range n {
		s := model.Socket{LocalIP: ip("127.0.0.1"), RemoteIP: ip("127.0.0.2"), LocalPort: uint16(1000 + i),
			RemotePort: 80, State: model.StateEstablished, UID: uint32(i), Inode: uint64(100 + i)}
		if i%2 == 1 {
			s.LocalIP, s.RemoteIP = ip(fmt.Sprintf("2001:db8::%x", i)), ip("::1")
		}
		buf = append(buf, recordOf(s)...)
		want = append(want, s)
	}
	return buf, want
}

var errBroken = errors.New("broken pipe to the kernel")

// TestReadRecords runs the chunk loop over readers that split records
// across reads, end early or fail.
func TestReadRecords(t *testing.T) {
	data, want := records(40) // 2,240 bytes
	bad := record{family: 99, state: 1}.bytes()
	withBad := append(append(append([]byte{}, data[:recLen*3]...), bad...), data[recLen*3:]...)

	tests := []struct {
		name             string
		r                io.Reader
		bufLen           int
		want             []model.Socket
		records, skipped int
		wantErr          string
		wantIs           error
	}{
		{name: "one read", r: bytes.NewReader(data), bufLen: readSize, want: want, records: 40},
		{name: "a byte a read", r: iotest.OneByteReader(bytes.NewReader(data)), bufLen: readSize, want: want, records: 40},
		{name: "half reads", r: iotest.HalfReader(bytes.NewReader(data)), bufLen: readSize, want: want, records: 40},
		{name: "odd chunks", r: &chunkReader{data: data, sizes: []byte{0, 54, 56, 100, 12}}, bufLen: readSize, want: want, records: 40},
		{name: "buffer of one record", r: bytes.NewReader(data), bufLen: recLen, want: want, records: 40},
		{name: "buffer not a multiple of records", r: &chunkReader{data: data, sizes: []byte{200}}, bufLen: 3*recLen + 13, want: want, records: 40},
		{name: "data with EOF", r: iotest.DataErrReader(bytes.NewReader(data)), bufLen: 1000, want: want, records: 40},
		{name: "empty", r: bytes.NewReader(nil), bufLen: readSize},
		{
			name: "undecodable record skipped", r: &chunkReader{data: withBad, sizes: []byte{70}}, bufLen: readSize,
			want: want, records: 41, skipped: 1,
		},
		{
			name: "every record undecodable", r: bytes.NewReader(bytes.Repeat(bad, 3)), bufLen: readSize,
			records: 3, skipped: 3, wantErr: "no record decoded: address family 99 unknown",
		},
		{
			name: "trailing partial record", r: iotest.OneByteReader(bytes.NewReader(data[:len(data)-1])), bufLen: readSize,
			want: want[:39], records: 39, wantErr: "ended inside a record (55 bytes over)",
		},
		{
			name: "read error after records", r: io.MultiReader(bytes.NewReader(data[:recLen*2+5]), iotest.ErrReader(errBroken)), bufLen: readSize,
			want: want[:2], records: 2, wantErr: "reading: broken pipe to the kernel", wantIs: errBroken,
		},
		{name: "buffer too small", r: bytes.NewReader(data), bufLen: recLen - 1, wantErr: "read buffer of 55 bytes, want at least 56"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := model.Socket{LocalPort: 1}
			got, n, skipped, err := readRecords(context.Background(), tt.r, make([]byte, tt.bufLen), []model.Socket{prefix})
			if tt.wantErr != "" {
				require.EqualError(t, err, tt.wantErr)
			} else {
				require.NoError(t, err)
			}
			if tt.wantIs != nil {
				assert.ErrorIs(t, err, tt.wantIs)
			}
			assert.Equal(t, append([]model.Socket{prefix}, tt.want...), got, "appended to dst")
			assert.Equal(t, tt.records, n, "records")
			assert.Equal(t, tt.skipped, skipped, "skipped")
		})
	}
}

// TestReadRecordsCancelled checks that a cancelled context stops the loop
// between reads with the context's error.
func TestReadRecordsCancelled(t *testing.T) {
	data, want := records(10)
	ctx, cancel := context.WithCancel(context.Background())
	r := &cancelAfter{r: iotest.OneByteReader(bytes.NewReader(data)), n: recLen * 2, cancel: cancel}
	got, n, _, err := readRecords(ctx, r, make([]byte, readSize), nil)
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, want[:2], got)
	assert.Equal(t, 2, n)
}

// cancelAfter cancels a context once n bytes have been read.
type cancelAfter struct {
	r      io.Reader
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.n -= n; c.n <= 0 {
		c.cancel()
	}
	return n, err
}
