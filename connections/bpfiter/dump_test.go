package bpfiter

import (
	"context"
	"io"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connbeat/connbeat/internal/testkit/sockettest"
	"github.com/connbeat/connbeat/model"
)

// countingReader counts the reads that returned data.
type countingReader struct {
	r     io.Reader
	reads int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.reads++
	}
	return n, err
}

// TestKernelLargeDump holds more sockets than one read hands over (the
// kernel's seq_file buffer is 32 KiB, the source reads 64 KiB at a time:
// 1,202 records are 67 KB) and checks that every one is listed with its
// full IPv6 address, both through Sockets and through the read loop over
// the live iterator with a buffer that splits records across reads.
func TestKernelLargeDump(t *testing.T) {
	src := openKernel(t)
	lb := sockettest.New(t)
	v6 := lb.Listen("tcp6", "[::1]:0")
	v4 := lb.Listen("tcp4", "127.0.0.1:0")
	lb.Connect(v6, "::1", 400)
	lb.Connect(v4, "127.0.0.1", 200)

	got, err := src.Sockets(context.Background(), nil)
	require.NoError(t, err)
	assert.Greater(t, len(got)*recLen, readSize, "more than one read")
	ours := lb.Ours(got)
	require.Len(t, ours, 2+2*600)
	six, four := 0, 0
	for _, s := range ours {
		if s.LocalIP.Is6() {
			assert.Equal(t, netip.IPv6Loopback(), s.LocalIP, "all 16 bytes")
			if s.State != model.StateListen {
				assert.Equal(t, netip.IPv6Loopback(), s.RemoteIP, "all 16 bytes")
			}
			six++
		} else {
			assert.Equal(t, netip.MustParseAddr("127.0.0.1"), s.LocalIP)
			four++
		}
	}
	assert.Equal(t, 1+800, six)
	assert.Equal(t, 1+400, four)
	ports := map[uint16]bool{}
	for _, c := range lb.Conns {
		ports[port(c.LocalAddr())] = true
	}
	for _, s := range ours {
		if s.State != model.StateListen {
			delete(ports, s.LocalPort)
		}
	}
	assert.Empty(t, ports, "connection ends not listed")

	// The same walk read 1,000 bytes at a time: 17 records and 48 bytes
	// of the next.
	r, err := src.tcp.Open()
	require.NoError(t, err)
	defer r.Close()
	cr := &countingReader{r: r}
	split, records, skipped, err := readRecords(context.Background(), cr, make([]byte, 17*recLen+48), nil)
	require.NoError(t, err)
	assert.Greater(t, cr.reads, 60)
	assert.Zero(t, skipped)
	assert.Equal(t, len(split), records)
	assert.Equal(t, ours, lb.Ours(split))
}

// TestKernelReuse polls many times into the same slice, checks that a
// cancelled poll says so and leaves the source usable, and that a closed
// source refuses to poll.
func TestKernelReuse(t *testing.T) {
	src := openKernel(t)
	assert.Equal(t, "bpf", src.Name())
	lb := sockettest.New(t)
	lb.Connect(lb.Listen("tcp4", "127.0.0.1:0"), "127.0.0.1", 5)

	lb.CheckReuse(src, 11, func(buf []model.Socket) {
		assert.Equal(t, len(buf), src.records)
	})

	require.NoError(t, src.Close())
	require.NoError(t, src.Close(), "second close")
	_, err := src.Sockets(context.Background(), nil)
	require.EqualError(t, err, "bpf source closed")
}
