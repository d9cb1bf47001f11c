package bpfiter

import (
	"bytes"
	"context"
	"testing"

	"github.com/connbeat/connbeat/internal/testkit/sockettest"
	"github.com/connbeat/connbeat/model"
)

// BenchmarkDecode runs the read loop over 10,000 records of IPv4, IPv6,
// mapped and TIME_WAIT sockets held in memory, read 64 KiB at a time as
// from the kernel.
func BenchmarkDecode(b *testing.B) {
	const n = 10000
	seeds := seedRecords()[:6] // the valid ones
	var data []byte
	for i := range n {
		data = append(data, seeds[i%len(seeds)]...)
	}
	buf := make([]byte, readSize)
	var dst []model.Socket
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		var err error
		dst, _, _, err = readRecords(context.Background(), bytes.NewReader(data), buf, dst[:0])
		if err != nil || len(dst) != n {
			b.Fatalf("%d sockets, %v", len(dst), err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/socket")
}

// BenchmarkKernelSockets polls the live host, with 2,000 loopback
// connections of its own on top of what the host holds, through the bpf
// source and through netlink for comparison.
func BenchmarkKernelSockets(b *testing.B) {
	src := openKernel(b)
	lb := sockettest.New(b)
	lb.Connect(lb.Listen("tcp4", "127.0.0.1:0"), "127.0.0.1", 1000)
	lb.Connect(lb.Listen("tcp6", "[::1]:0"), "::1", 1000)
	nl := openNetlink(b)
	for _, s := range []interface {
		Name() string
		Sockets(context.Context, []model.Socket) ([]model.Socket, error)
	}{src, nl} {
		b.Run(s.Name(), func(b *testing.B) {
			var dst []model.Socket
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if dst, err = s.Sockets(context.Background(), dst[:0]); err != nil {
					b.Fatal(err)
				}
			}
			if len(lb.Ours(dst)) != 2+4000 {
				b.Fatalf("%d of the benchmark's sockets listed", len(lb.Ours(dst)))
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(dst)), "ns/socket")
			b.ReportMetric(float64(len(dst)), "sockets")
		})
	}
}
