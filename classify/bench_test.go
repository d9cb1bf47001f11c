package classify

import (
	"net/netip"
	"testing"

	"github.com/connbeat/connbeat/model"
)

// benchSockets is a busy host's socket list: n loopback connections to
// listeners of a few processes (each has both ends: an inbound and an
// outbound socket), a quarter over IPv6, plus idle listeners.
func benchSockets(n int) []model.Socket {
	lo4, lo6 := netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()
	var s []model.Socket
	ino := uint64(1000)
	add := func(local netip.Addr, lport uint16, remote netip.Addr, rport uint16, st model.State) {
		s = append(s, model.Socket{LocalIP: local, LocalPort: lport, RemoteIP: remote, RemotePort: rport, State: st, Inode: ino})
		ino++
	}
	const procsN = 6
	for p := 0; p < procsN; p++ {
		add(lo4, uint16(8000+p), netip.IPv4Unspecified(), 0, model.StateListen)
		add(lo6, uint16(9000+p), netip.IPv6Unspecified(), 0, model.StateListen)
		for l := 0; l < 8; l++ {
			add(lo4, uint16(10000+p*10+l), netip.IPv4Unspecified(), 0, model.StateListen)
		}
	}
	for i := 0; i < n; i++ {
		p := uint16(i % procsN)
		eph := uint16(20000 + i%40000)
		if i%4 == 3 {
			add(lo6, eph, lo6, 9000+p, model.StateEstablished)
			add(lo6, 9000+p, lo6, eph, model.StateEstablished)
		} else {
			add(lo4, eph, lo4, 8000+p, model.StateEstablished)
			add(lo4, 8000+p, lo4, eph, model.StateEstablished)
		}
	}
	return s
}

// benchOwner attributes inodes to 6 processes, as a resolver would.
func benchOwner() OwnerFunc {
	ps := make([]*model.Process, 6)
	for i := range ps {
		ps[i] = &model.Process{PID: int32(100 + i), Name: "worker"}
	}
	return func(ino uint64) (*model.Process, int) { return ps[ino%6], 1 }
}

// BenchmarkClassifyBusyHost classifies 40,000 connections (80,000 sockets).
func BenchmarkClassifyBusyHost(b *testing.B) {
	sockets := benchSockets(40000)
	owner := benchOwner()
	c := New(Options{LocalConnections: true})
	var dst []model.Record
	b.ReportAllocs()
	for b.Loop() {
		dst = c.Classify(sockets, owner, dst[:0])
	}
	if len(dst) != len(sockets) {
		b.Fatalf("%d records from %d sockets", len(dst), len(sockets))
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(sockets)), "ns/socket")
}
