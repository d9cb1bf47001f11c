package procs

import (
	"context"
	"fmt"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/connbeat/connbeat/connections/netlink"
	"github.com/connbeat/connbeat/internal/testkit/kerneltest"
	"github.com/connbeat/connbeat/model"
)

// benchConns opens n loopback connections held by this process (2n socket
// fds) and returns the host's sockets as the netlink source lists them.
func benchConns(b *testing.B, n int) []model.Socket {
	b.Helper()
	ln, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	fds := []int{ln}
	b.Cleanup(func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	})
	if err := unix.Bind(ln, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		b.Fatal(err)
	}
	if err := unix.Listen(ln, 1024); err != nil {
		b.Fatal(err)
	}
	to, err := unix.Getsockname(ln)
	if err != nil {
		b.Fatal(err)
	}
	for range n {
		c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			b.Skipf("socket: %v (open-file limit?)", err)
		}
		fds = append(fds, c)
		if err := unix.Connect(c, to); err != nil {
			b.Fatal(err)
		}
		a, _, err := unix.Accept4(ln, unix.SOCK_CLOEXEC)
		if err != nil {
			b.Fatal(err)
		}
		fds = append(fds, a)
		_ = unix.SetsockoptLinger(c, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1})
	}
	src, err := netlink.Open(netlink.Options{})
	kerneltest.RequireNetlink(b, err)
	defer src.Close()
	sockets, err := src.Sockets(context.Background(), nil)
	if err != nil {
		b.Fatal(err)
	}
	return sockets
}

func benchResolver(b *testing.B) *Resolver {
	b.Helper()
	r, err := New(Options{Root: "/proc", Metadata: MetadataOptions{Cmdline: true, RedactCmdline: true}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	return r
}

// BenchmarkRefreshWarm refreshes the join of the host's sockets (5,000
// loopback connections of this process among them) when nothing changed:
// the cost of every poll of a quiet host.
func BenchmarkRefreshWarm(b *testing.B) {
	sockets := benchConns(b, 5000)
	r := benchResolver(b)
	if _, err := r.Refresh(context.Background(), sockets); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	var stats Stats
	for b.Loop() {
		var err error
		if stats, err = r.Refresh(context.Background(), sockets); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(stats.Processes), "procs")
	b.ReportMetric(float64(stats.Rescanned), "rescanned/op")
}

// BenchmarkRefreshCold joins the same sockets with a fresh resolver: every
// fd table is read (10,000 socket fds in this process alone).
func BenchmarkRefreshCold(b *testing.B) {
	sockets := benchConns(b, 5000)
	b.ReportAllocs()
	for b.Loop() {
		r := benchResolver(b)
		if _, err := r.Refresh(context.Background(), sockets); err != nil {
			b.Fatal(err)
		}
		r.Close()
	}
}

// BenchmarkOwner looks up the owner of every socket, as classify does each
// poll.
func BenchmarkOwner(b *testing.B) {
	sockets := benchConns(b, 5000)
	r := benchResolver(b)
	if _, err := r.Refresh(context.Background(), sockets); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	found := 0
	for b.Loop() {
		found = 0
		for i := range sockets {
			if p, _ := r.Owner(sockets[i].Inode); p != nil {
				found++
			}
		}
	}
	if found < 10000 {
		b.Fatalf("only %d sockets have an owner", found)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(sockets)), "ns/socket")
}

// BenchmarkJoinSteady is the whole join of a warm poll on an unchanged
// host: Refresh, then Owner for every socket in the source's order, which
// the resolver answers from the previous poll's answers.
func BenchmarkJoinSteady(b *testing.B) {
	sockets := benchConns(b, 5000)
	r := benchResolver(b)
	ctx := context.Background()
	join := func() int {
		if _, err := r.Refresh(ctx, sockets); err != nil {
			b.Fatal(err)
		}
		found := 0
		for i := range sockets {
			if p, _ := r.Owner(sockets[i].Inode); p != nil {
				found++
			}
		}
		return found
	}
	join()
	b.ReportAllocs()
	found := 0
	for b.Loop() {
		found = join()
	}
	if found < 10000 {
		b.Fatalf("only %d sockets have an owner", found)
	}
	if !r.steady {
		b.Fatal("the host changed during the benchmark: the memo was not used")
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(sockets)), "ns/socket")
}

// BenchmarkSharedSocket attributes one socket held by a master and n-1
// forked workers (whose details are read already): adding every holder,
// then finding the topmost. Linear in the holders; it was quadratic.
func BenchmarkSharedSocket(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("holders=%d", n), func(b *testing.B) {
			r := &Resolver{procs: map[int32]*proc{}, owner: map[uint64]int32{}, shared: map[uint64]map[int32]struct{}{}}
			for i := 0; i < n; i++ {
				pid, ppid := int32(1000+i), int32(1000)
				if i == 0 {
					ppid = 1
				}
				r.procs[pid] = &proc{hasMeta: true, meta: &model.Process{PID: pid, PPID: ppid}}
			}
			b.ResetTimer()
			for range b.N {
				for i := 0; i < n; i++ {
					r.addOwner(7, int32(1000+i))
				}
				if p, holders := r.lookupOwner(7); p.PID != 1000 || holders != n {
					b.Fatalf("got %d of %d holders", p.PID, holders)
				}
				for i := 0; i < n; i++ {
					r.removeOwner(7, int32(1000+i))
				}
			}
		})
	}
}
