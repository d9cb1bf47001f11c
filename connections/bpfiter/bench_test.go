package bpfiter

import (
	"bytes"
	"context"
	"net"
	"testing"

	"github.com/connbeat/connbeat/connections/netlink"
	"github.com/connbeat/connbeat/connections/procfs"
	"github.com/connbeat/connbeat/internal/testkit/kerneltest"

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

// BenchmarkKernelSockets polls the live host's TCP sockets, with 2,000
// loopback connections of its own on top of what the host holds, through
// the bpf source and through netlink for comparison.
func BenchmarkKernelSockets(b *testing.B) {
	lb := sockettest.New(b)
	lb.Connect(lb.Listen("tcp4", "127.0.0.1:0"), "127.0.0.1", 1000)
	lb.Connect(lb.Listen("tcp6", "[::1]:0"), "::1", 1000)
	benchSources(b, model.TCP, lb, 2+4000)
}

// BenchmarkKernelSocketsUDP polls the live host's UDP sockets, with 4,000
// connected UDP sockets and 2 bound ones of its own, through the bpf
// source, netlink and procfs, each listing UDP alone: the UDP dump beside
// BenchmarkKernelSockets' TCP one.
func BenchmarkKernelSocketsUDP(b *testing.B) {
	lb := sockettest.New(b)
	for _, host := range []string{"127.0.0.1", "::1"} {
		ln := lb.ListenUDP("udp", net.JoinHostPort(host, "0"))
		for range 2000 {
			c, err := net.DialUDP("udp", nil, ln.LocalAddr().(*net.UDPAddr))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { c.Close() })
		}
	}
	benchSources(b, model.UDP, lb, 2+4000)
}

// benchSources polls the sockets of one transport through each source
// that lists it; ours is how many of lb's sockets each poll must list.
func benchSources(b *testing.B, transport model.Transport, lb *sockettest.Loopback, ours int) {
	openKernel(b) // skips where the programs cannot be loaded
	only := model.TransportsOf(transport)
	src, err := OpenWith(Options{Transports: only})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { src.Close() })
	nl, err := netlink.Open(netlink.Options{Transports: only})
	kerneltest.RequireNetlink(b, err)
	b.Cleanup(func() { nl.Close() })
	pf, err := procfs.OpenWith("/proc", procfs.Options{Transports: only})
	if err != nil {
		b.Fatal(err)
	}
	for _, s := range []interface {
		Name() string
		Sockets(context.Context, []model.Socket) ([]model.Socket, error)
	}{src, nl, pf} {
		b.Run(s.Name(), func(b *testing.B) {
			var dst []model.Socket
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if dst, err = s.Sockets(context.Background(), dst[:0]); err != nil {
					b.Fatal(err)
				}
			}
			if len(lb.Ours(dst)) != ours {
				b.Fatalf("%d of the benchmark's sockets listed", len(lb.Ours(dst)))
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(dst)), "ns/socket")
			b.ReportMetric(float64(len(dst)), "sockets")
		})
	}
}

// BenchmarkKernelProtocols polls the live host as it is (the benchmark
// adds 100 TCP connections and 2 UDP sockets) through each source with
// protocols [tcp] and [tcp, udp]: what listing UDP adds to a poll where
// UDP sockets are few, the walk of the kernel's UDP tables above all.
func BenchmarkKernelProtocols(b *testing.B) {
	openKernel(b) // skips where the programs cannot be loaded
	lb := sockettest.New(b)
	lb.Connect(lb.Listen("tcp4", "127.0.0.1:0"), "127.0.0.1", 100)
	ln := lb.ListenUDP("udp4", "127.0.0.1:0")
	c, err := net.DialUDP("udp4", nil, ln.LocalAddr().(*net.UDPAddr))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	for _, set := range []model.Transports{model.TransportsOf(model.TCP), model.AllTransports} {
		src, err := OpenWith(Options{Transports: set})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { src.Close() })
		nl, err := netlink.Open(netlink.Options{Transports: set})
		kerneltest.RequireNetlink(b, err)
		b.Cleanup(func() { nl.Close() })
		pf, err := procfs.OpenWith("/proc", procfs.Options{Transports: set})
		if err != nil {
			b.Fatal(err)
		}
		for _, s := range []interface {
			Name() string
			Sockets(context.Context, []model.Socket) ([]model.Socket, error)
		}{src, nl, pf} {
			b.Run(s.Name()+"/"+set.String(), func(b *testing.B) {
				var dst []model.Socket
				for b.Loop() {
					var err error
					if dst, err = s.Sockets(context.Background(), dst[:0]); err != nil {
						b.Fatal(err)
					}
				}
				want := 201
				if set.Has(model.UDP) {
					want += 2
				}
				if len(lb.Ours(dst)) != want {
					b.Fatalf("%d of the benchmark's sockets listed, want %d", len(lb.Ours(dst)), want)
				}
				b.ReportMetric(float64(len(dst)), "sockets")
			})
		}
	}
}
