package conntrack

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestQueueKeepsOrderAndBounds: datagrams and overrun marks come out in
// the order they went in, across chunks, and no more chunks exist than
// the queue holds plus the two in hand.
func TestQueueKeepsOrderAndBounds(t *testing.T) {
	r := newReader(nil, 4*chunkSize)
	var want [][]byte
	go func() {
		for i := 0; i < 3000; i++ {
			if i%1000 == 999 {
				r.append(nil)
				want = append(want, nil)
				continue
			}
			d := bytes.Repeat([]byte{byte(i)}, 1+i%700)
			r.append(d)
			want = append(want, d)
		}
		r.handOver(context.Background(), true)
		close(r.full)
	}()
	var got [][]byte
	var last *chunk
	for c := range r.full {
		c.records(func(b []byte) { got = append(got, append([]byte(nil), b...)) })
		last = c
		r.recycle(c)
	}
	assert.LessOrEqual(t, r.alloc, cap(r.full)+2, "chunks allocated")
	require.Len(t, got, len(want))
	for i := range want {
		if want[i] == nil {
			assert.Empty(t, got[i], "overrun mark %d", i)
			continue
		}
		assert.Equal(t, want[i], got[i], "datagram %d", i)
	}
	assert.True(t, last.drained)
	assert.Greater(t, last.seq, uint64(1), "several chunks were handed over")
}
