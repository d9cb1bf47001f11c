package peers

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connbeat/connbeat/model"
)

func proc(pid int32) *model.Process { return &model.Process{PID: pid, Name: fmt.Sprint("p", pid)} }

// conn is a connection record local -> remote ("ip:port") in netns, held
// by p.
func conn(local, remote string, netns uint64, p *model.Process) model.Record {
	l, r := netip.MustParseAddrPort(local), netip.MustParseAddrPort(remote)
	return model.Record{
		Kind: model.Connection, Direction: model.Outbound, Process: p, Owners: 1,
		Socket: model.Socket{
			LocalIP: l.Addr(), LocalPort: l.Port(), RemoteIP: r.Addr(), RemotePort: r.Port(),
			State: model.StateEstablished, NetNS: netns,
		},
	}
}

func listener(local string, netns uint64, p *model.Process) model.Record {
	l := netip.MustParseAddrPort(local)
	return model.Record{
		Kind: model.Listener, Direction: model.Listening, Process: p,
		Socket: model.Socket{LocalIP: l.Addr(), LocalPort: l.Port(), State: model.StateListen, NetNS: netns},
	}
}

// peerPIDs returns each record's peer pid, 0 for none.
func peerPIDs(records []model.Record) []int32 {
	out := make([]int32, len(records))
	for i, r := range records {
		if r.Peer != nil {
			out[i] = r.Peer.PID
		}
	}
	return out
}

func TestLink(t *testing.T) {
	udp := func(r model.Record) model.Record { r.Socket.Transport = model.UDP; return r }
	for _, tc := range []struct {
		name    string
		records []model.Record
		want    []int32
	}{
		{"loopback, both ends", []model.Record{
			listener("127.0.0.1:80", 1, proc(1)),
			conn("127.0.0.1:80", "127.0.0.1:40000", 1, proc(1)),
			conn("127.0.0.1:40000", "127.0.0.1:80", 1, proc(2)),
		}, []int32{0, 2, 1}},
		{"ipv6 loopback", []model.Record{
			conn("[::1]:80", "[::1]:40000", 0, proc(1)),
			conn("[::1]:40000", "[::1]:80", 0, proc(2)),
		}, []int32{2, 1}},
		{"remote peer: none", []model.Record{
			conn("10.0.0.1:40000", "93.184.216.34:443", 0, proc(1)),
		}, []int32{0}},
		{"loopback does not cross namespaces", []model.Record{
			conn("127.0.0.1:80", "127.0.0.1:40000", 1, proc(1)),
			conn("127.0.0.1:40000", "127.0.0.1:80", 2, proc(2)),
		}, []int32{0, 0}},
		{"across a bridge between namespaces", []model.Record{
			conn("172.17.0.2:80", "172.17.0.3:40000", 1, proc(1)),
			conn("172.17.0.3:40000", "172.17.0.2:80", 2, proc(2)),
		}, []int32{2, 1}},
		{"same namespace wins over another", []model.Record{
			conn("10.0.0.1:80", "10.0.0.2:40000", 1, proc(1)),
			conn("10.0.0.2:40000", "10.0.0.1:80", 1, proc(2)),
			conn("10.0.0.2:40000", "10.0.0.1:80", 3, proc(3)),
		}, []int32{2, 1, 0}},
		{"two candidates in other namespaces: not guessed", []model.Record{
			conn("10.0.0.1:80", "10.0.0.2:40000", 1, proc(1)),
			conn("10.0.0.2:40000", "10.0.0.1:80", 2, proc(2)),
			conn("10.0.0.2:40000", "10.0.0.1:80", 3, proc(3)),
		}, []int32{0, 1, 1}},
		{"the transport must match", []model.Record{
			conn("127.0.0.1:53", "127.0.0.1:40000", 0, proc(1)),
			udp(conn("127.0.0.1:40000", "127.0.0.1:53", 0, proc(2))),
		}, []int32{0, 0}},
		{"udp both ends", []model.Record{
			udp(conn("127.0.0.1:53", "127.0.0.1:40000", 0, proc(1))),
			udp(conn("127.0.0.1:40000", "127.0.0.1:53", 0, proc(2))),
		}, []int32{2, 1}},
		{"peer without owner", []model.Record{
			conn("127.0.0.1:80", "127.0.0.1:40000", 0, proc(1)),
			conn("127.0.0.1:40000", "127.0.0.1:80", 0, nil),
		}, []int32{0, 1}},
		{"ports must match", []model.Record{
			conn("127.0.0.1:80", "127.0.0.1:40000", 0, proc(1)),
			conn("127.0.0.1:40001", "127.0.0.1:80", 0, proc(2)),
		}, []int32{0, 0}},
		{"a listener is nobody's peer", []model.Record{
			listener("127.0.0.1:80", 0, proc(1)),
			conn("127.0.0.1:40000", "127.0.0.1:80", 0, proc(2)),
		}, []int32{0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := New()
			assert.Equal(t, tc.want, peerPIDs(link(l, tc.records)))
		})
	}
}

func link(l *Linker, records []model.Record) []model.Record {
	l.Link(records)
	return records
}

// TestLinkReuse: a second call forgets the first call's records and any
// Peer they had, and the maps shrink after a large poll.
func TestLinkReuse(t *testing.T) {
	l := New()
	var big []model.Record
	for i := range 5000 {
		big = append(big, conn(fmt.Sprintf("127.0.0.1:%d", 10000+i), "127.0.0.1:80", 0, proc(2)))
	}
	big = append(big, conn("127.0.0.1:80", "127.0.0.1:10000", 0, proc(1)))
	l.Link(big)
	assert.Equal(t, int32(1), big[0].Peer.PID)

	small := []model.Record{conn("127.0.0.1:10000", "127.0.0.1:80", 0, proc(2))}
	small[0].Peer = proc(9) // left over from a previous poll
	l.Link(small)
	assert.Nil(t, small[0].Peer, "its peer is gone")
	assert.Less(t, l.size, 5000, "the large poll's maps were dropped")
}

// TestLinkRelease: after Release the Linker holds nothing of its last
// call, and the next call links in full, peers as they are now.
func TestLinkRelease(t *testing.T) {
	records := pairs(3000)
	l := New()
	l.Link(records)
	l.Release()
	assert.Nil(t, l.same)
	assert.Nil(t, l.last)
	records[1].Process = proc(7) // the server's end held by another process now
	records[0].Peer = nil
	l.Link(records)
	assert.Equal(t, int32(7), records[0].Peer.PID)
	assert.Equal(t, int32(2), records[1].Peer.PID)
	assert.Equal(t, int32(1), records[len(records)-2].Peer.PID)
}

// TestLinkSteady: a poll with the previous poll's sockets in the same
// order takes the peers found then, with each peer record's process as it
// is now; any change of a socket makes the peers found anew.
func TestLinkSteady(t *testing.T) {
	records := []model.Record{
		conn("127.0.0.1:80", "127.0.0.1:40000", 0, proc(1)),
		conn("127.0.0.1:40000", "127.0.0.1:80", 0, proc(2)),
		conn("127.0.0.1:40001", "127.0.0.1:80", 0, proc(3)),
	}
	l := New()
	assert.Equal(t, []int32{2, 1, 0}, peerPIDs(link(l, records)))
	records[1].Process = proc(5) // another process image, same socket
	records[0].Peer = nil
	assert.Equal(t, []int32{5, 1, 0}, peerPIDs(link(l, records)), "unchanged sockets")
	records[0].Socket.RemotePort = 40001 // the server's end now faces the third client
	assert.Equal(t, []int32{3, 0, 1}, peerPIDs(link(l, records)), "a changed socket")
	records[2].Kind = model.Listener
	assert.Equal(t, []int32{0, 0, 0}, peerPIDs(link(l, records)), "a changed kind")
}

// pairs returns 2n loopback connection records, both ends of n
// connections.
func pairs(n int) []model.Record {
	var records []model.Record
	for i := range n {
		a := fmt.Sprintf("127.0.%d.%d:%d", i/250, i%250+1, 10000+i%50000)
		records = append(records, conn(a, "127.0.0.1:80", 0, proc(2)), conn("127.0.0.1:80", a, 0, proc(1)))
	}
	return records
}

// BenchmarkLink: 20,000 loopback connections, both ends on this host,
// one socket changed every poll.
func BenchmarkLink(b *testing.B) {
	records := pairs(20000)
	l := New()
	b.ReportAllocs()
	for b.Loop() {
		records[0].Socket.LocalPort ^= 1
		l.Link(records)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(records)), "ns/record")
}

// BenchmarkLinkSteady: the same connections, nothing changed between polls.
func BenchmarkLinkSteady(b *testing.B) {
	records := pairs(20000)
	l := New()
	b.ReportAllocs()
	for b.Loop() {
		l.Link(records)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(records)), "ns/record")
}

// TestLinkReportsAsLink: LinkReports sets on each report the peer Link
// sets on the report's record, for records drawn at random from a few
// addresses, ports and namespaces (loopback and not, ambiguous keys, ends
// in two namespaces), whichever records are reported.
func TestLinkReportsAsLink(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	addrs := []string{"127.0.0.1", "10.0.0.1", "10.0.0.2", "::1", "fd00::1"}
	for round := range 300 {
		n := 1 + rnd.IntN(40)
		records := make([]model.Record, n)
		for i := range records {
			fam := rnd.IntN(2) * 3 // v4 pool or v6 pool
			la := addrs[min(fam+rnd.IntN(3), len(addrs)-1)]
			ra := addrs[min(fam+rnd.IntN(3), len(addrs)-1)]
			if netip.MustParseAddr(la).Is4() != netip.MustParseAddr(ra).Is4() {
				ra = la
			}
			l := netip.AddrPortFrom(netip.MustParseAddr(la), uint16(80+rnd.IntN(3)))
			r := netip.AddrPortFrom(netip.MustParseAddr(ra), uint16(80+rnd.IntN(3)))
			rec := conn(l.String(), r.String(), uint64(rnd.IntN(3)), proc(int32(i+1)))
			if rnd.IntN(8) == 0 {
				rec = listener(l.String(), rec.Socket.NetNS, proc(int32(i+1)))
			}
			records[i] = rec
		}
		want := slices.Clone(records)
		New().Link(want)
		var reports []model.Report
		var of []int
		for i := range records {
			if rnd.IntN(3) > 0 {
				reports = append(reports, model.Report{Record: records[i], Sockets: 1})
				reports[len(reports)-1].Peer = proc(999) // left over
				of = append(of, i)
			}
		}
		l := New()
		for range 2 { // the Linker's maps reused
			l.LinkReports(reports, records)
			for j, i := range of {
				require.Same(t, want[i].Peer, reports[j].Peer, "round %d: report of record %d %+v in %+v", round, i, records[i].Socket, records)
			}
		}
	}
}

// BenchmarkLinkReports: the same connections as BenchmarkLink, of which
// ten are reported (a poll between two full reads, after dedup).
func BenchmarkLinkReports(b *testing.B) {
	records := pairs(20000)
	var reports []model.Report
	for i := 0; i < len(records); i += len(records) / 10 {
		reports = append(reports, model.Report{Record: records[i], Sockets: 1})
	}
	l := New()
	b.ReportAllocs()
	for b.Loop() {
		l.LinkReports(reports, records)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(records)), "ns/record")
}
