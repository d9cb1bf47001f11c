package dedup

import (
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/connbeat/connbeat/model"
)

// benchRecords is n loopback connections of 6 processes as classify
// reports them: for each, an outbound record (ephemeral local port) and an
// inbound one, plus the listeners.
func benchRecords(n int) []model.Record {
	lo4, lo6 := netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()
	ps := make([]*model.Process, 6)
	for i := range ps {
		ps[i] = &model.Process{PID: int32(100 + i)}
	}
	var recs []model.Record
	for p := range ps {
		recs = append(recs, model.Record{Kind: model.Listener, Direction: model.Listening, Process: ps[p], Owners: 1,
			Socket: model.Socket{LocalIP: lo4, LocalPort: uint16(8000 + p), RemoteIP: netip.IPv4Unspecified(), State: model.StateListen}})
	}
	for i := 0; i < n; i++ {
		p := i % len(ps)
		ip, lport := lo4, uint16(8000+p)
		if i%4 == 3 {
			ip, lport = lo6, uint16(9000+p)
		}
		eph := uint16(20000 + i%40000)
		recs = append(recs,
			model.Record{Kind: model.Connection, Direction: model.Outbound, Process: ps[p], Owners: 1,
				Socket: model.Socket{LocalIP: ip, LocalPort: eph, RemoteIP: ip, RemotePort: lport, State: model.StateEstablished}},
			model.Record{Kind: model.Connection, Direction: model.Inbound, Process: ps[p], Owners: 1,
				Socket: model.Socket{LocalIP: ip, LocalPort: lport, RemoteIP: ip, RemotePort: eph, State: model.StateEstablished}})
	}
	return recs
}

// BenchmarkFilterWarm filters 80,000 records that were all reported by the
// previous call: the steady state of a busy, unchanging host.
func BenchmarkFilterWarm(b *testing.B) {
	recs := benchRecords(40000)
	c := New(time.Minute)
	now := time.Now()
	first := c.Filter(recs, now, nil)
	if len(first) == 0 || len(first) > 100 {
		b.Fatalf("first call reported %d keys", len(first))
	}
	var dst []model.Report
	b.ReportAllocs()
	for b.Loop() {
		dst = c.Filter(recs, now, dst[:0])
	}
	if len(dst) != 0 {
		b.Fatalf("warm call reported %d keys", len(dst))
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(recs)), "ns/record")
}

// BenchmarkFilterChurn reports a window's worth of distinct keys, 50,000
// short connections each from its own address, five polls of 10,000: the
// cost of a host under churn, and the heap the cache holds per key.
func BenchmarkFilterChurn(b *testing.B) {
	const keys, perPoll = 50000, 10000
	recs := make([]model.Record, keys)
	p := &model.Process{PID: 100}
	for i := range recs {
		a := netip.AddrFrom4([4]byte{127, byte(i >> 16), byte(i >> 8), byte(i)})
		recs[i] = model.Record{Kind: model.Connection, Direction: model.Outbound, Process: p, Owners: 1,
			Socket: model.Socket{LocalIP: a, LocalPort: 40000, RemoteIP: netip.MustParseAddr("127.0.0.1"), RemotePort: 8080, State: model.StateEstablished}}
	}
	now := time.Now()
	var dst []model.Report
	var held uint64
	b.ReportAllocs()
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		c := New(time.Minute)
		for i := 0; i < keys; i += perPoll {
			dst = c.Filter(recs[i:i+perPoll], now, dst[:0])
			if len(dst) != perPoll {
				b.Fatalf("poll reported %d of %d new keys", len(dst), perPoll)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		held = after.HeapAlloc - before.HeapAlloc
		runtime.KeepAlive(c)
	}
	b.ReportMetric(float64(held)/keys, "heapB/key")
}
