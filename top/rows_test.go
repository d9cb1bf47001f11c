package top

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connbeat/connbeat/model"
)

var (
	lo1  = netip.MustParseAddr("127.0.0.1")
	lo2  = netip.MustParseAddr("127.0.0.2")
	any4 = netip.IPv4Unspecified()
	web  = &model.Process{PID: 10, Name: "nginx"}
	cli  = &model.Process{PID: 20, Name: "curl"}
)

// fixture is a host with a wildcard listener on 80 (nginx), a client (curl)
// holding three connections to it, one connection whose owner is unknown,
// and a second listener nobody uses.
func fixture() []model.Record {
	sock := func(l netip.Addr, lp uint16, r netip.Addr, rp uint16, inode uint64) model.Socket {
		return model.Socket{LocalIP: l, LocalPort: lp, RemoteIP: r, RemotePort: rp, Inode: inode, State: model.StateEstablished}
	}
	return []model.Record{
		{Kind: model.Listener, Direction: model.Listening, Socket: sock(any4, 80, any4, 0, 1), Process: web},
		{Kind: model.Listener, Direction: model.Listening, Socket: sock(lo1, 9000, any4, 0, 2), Process: web},
		{Kind: model.Connection, Direction: model.Outbound, Socket: sock(lo2, 40001, lo1, 80, 3), Process: cli},
		{Kind: model.Connection, Direction: model.Outbound, Socket: sock(lo2, 40002, lo1, 80, 4), Process: cli},
		{Kind: model.Connection, Direction: model.Outbound, Socket: sock(lo2, 40003, lo1, 80, 5), Process: cli},
		{Kind: model.Connection, Direction: model.Inbound, Socket: sock(lo1, 80, lo2, 40001, 6), Process: web},
		{Kind: model.Connection, Direction: model.Inbound, Socket: sock(lo1, 80, lo2, 40002, 7), Process: web},
		{Kind: model.Connection, Direction: model.Inbound, Socket: sock(lo1, 80, lo2, 40003, 8), Process: web},
		{Kind: model.Connection, Direction: model.Inbound, Socket: sock(lo1, 80, lo1, 50000, 0)}, // time_wait, no owner
	}
}

func TestAggregateEdgesAndListeners(t *testing.T) {
	var a Aggregator
	now := time.Unix(1000, 0)
	s := a.Add(fixture(), "netlink", now)
	view, err := NewView("", "process", false)
	require.NoError(t, err)
	edges, listeners := view.Rows(&s)

	unknown := Rate{}
	assert.Equal(t, []Row{
		{Process: Process{}, Direction: model.Inbound, Local: Endpoint{lo1, 80}, Remote: Endpoint{IP: lo1}, Sockets: 1},
		{Process: Process{20, "curl"}, Direction: model.Outbound, Local: Endpoint{IP: lo2}, Remote: Endpoint{lo1, 80}, Sockets: 3, BytesPerSec: unknown},
		{Process: Process{10, "nginx"}, Direction: model.Inbound, Local: Endpoint{lo1, 80}, Remote: Endpoint{IP: lo2}, Sockets: 3},
	}, edges, "ephemeral ports are left out: one row per process and peer")
	assert.Equal(t, []Row{
		{Process: Process{10, "nginx"}, Direction: model.Listening, Local: Endpoint{any4, 80}, Sockets: 1, Clients: 4},
		{Process: Process{10, "nginx"}, Direction: model.Listening, Local: Endpoint{lo1, 9000}, Sockets: 1},
	}, listeners, "the wildcard listener counts every inbound socket on its port")
	assert.Equal(t, Snapshot{Time: now, Source: "netlink", Sockets: 9, Edges: s.Edges, Listeners: s.Listeners}, s)
}

// TestByteRates: bytes per second come from the tcp_info counters of two
// polls; unknown on the first poll and without tcp_info.
func TestByteRates(t *testing.T) {
	withInfo := func(bytes ...uint64) []model.Record {
		rs := fixture()[2:5] // curl's three connections
		for i := range rs {
			rs[i].Socket.Info = &model.TCPInfo{BytesAcked: bytes[i], BytesReceived: bytes[i]}
		}
		return rs
	}
	var a Aggregator
	t0 := time.Unix(1000, 0)
	first := a.Add(withInfo(100, 100, 100), "netlink", t0)
	assert.Equal(t, Rate{}, first.Edges[0].BytesPerSec, "nothing to compare with yet")

	// Two seconds later: the first socket moved 2*1000 bytes, the second
	// none, the third closed and a new one (counted from zero) moved 2*500.
	second := withInfo(1100, 100, 500)
	second[2].Socket.Inode, second[2].Socket.LocalPort = 99, 40009
	s := a.Add(second, "netlink", t0.Add(2*time.Second))
	assert.Equal(t, Rate{PerSec: (2000 + 0 + 1000) / 2, Known: true}, s.Edges[0].BytesPerSec)
	assert.Equal(t, "1500", s.Edges[0].BytesPerSec.String())

	plain := a.Add(fixture()[2:5], "netlink", t0.Add(4*time.Second))
	assert.Equal(t, Rate{}, plain.Edges[0].BytesPerSec, "no tcp_info, no rate")
	assert.Equal(t, "-", plain.Edges[0].BytesPerSec.String())
}

func TestHumanize(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 0.25: "0.2", 12.5: "12.5", 999: "999", 12345: "12k", 2.5e6: "2.5M", 3e9: "3.0G"} {
		assert.Equal(t, want, humanize(in), "%v", in)
	}
}

func TestEndpointString(t *testing.T) {
	assert.Equal(t, "127.0.0.1:80", Endpoint{lo1, 80}.String())
	assert.Equal(t, "127.0.0.1", Endpoint{IP: lo1}.String())
	assert.Equal(t, "[::1]:443", Endpoint{netip.IPv6Loopback(), 443}.String())
	assert.Equal(t, "-", Endpoint{}.String())
}

// TestAggregateUDP: UDP rows say their transport, a UDP listener counts
// only UDP clients on its port (not TCP ones), and the PROTO column shows
// once a row is not TCP.
func TestAggregateUDP(t *testing.T) {
	sock := func(tr model.Transport, l netip.Addr, lp uint16, r netip.Addr, rp uint16, st model.State) model.Socket {
		return model.Socket{Transport: tr, LocalIP: l, LocalPort: lp, RemoteIP: r, RemotePort: rp, State: st, Inode: uint64(lp) + uint64(rp)}
	}
	records := []model.Record{
		{Kind: model.Listener, Direction: model.Listening, Socket: sock(model.UDP, any4, 53, any4, 0, model.StateClose), Process: web},
		{Kind: model.Listener, Direction: model.Listening, Socket: sock(model.TCP, any4, 53, any4, 0, model.StateListen), Process: web},
		{Kind: model.Connection, Direction: model.Inbound, Socket: sock(model.UDP, lo1, 53, lo2, 40001, model.StateEstablished), Process: web},
		{Kind: model.Connection, Direction: model.Outbound, Socket: sock(model.UDP, lo2, 40001, lo1, 53, model.StateEstablished), Process: cli},
	}
	var a Aggregator
	s := a.Add(records, "netlink", time.Unix(1000, 0))
	view, err := NewView("", "process", false)
	require.NoError(t, err)
	edges, listeners := view.Rows(&s)
	require.Len(t, listeners, 2)
	clients := map[model.Transport]int{}
	for _, l := range listeners {
		clients[l.Transport] = l.Clients
	}
	assert.Equal(t, map[model.Transport]int{model.UDP: 1, model.TCP: 0}, clients)
	for _, e := range edges {
		assert.Equal(t, model.UDP, e.Transport, "%+v", e)
		assert.Equal(t, "-", e.BytesPerSec.String(), "no byte rate without tcp_info")
	}
	assert.Equal(t, "udp", colTransport.cell(&edges[0]))
}

// TestAggregateNamespaces: rows of connbeat's own namespace show no
// namespace; the same listener address in another namespace is a row of
// its own that names it.
func TestAggregateNamespaces(t *testing.T) {
	recs := fixture()[:2]
	other := recs[0]
	other.Socket.NetNS = 4026532999
	for i := range recs {
		recs[i].Socket.NetNS = 4026531840
	}
	a := Aggregator{Own: 4026531840}
	s := a.Add(append(recs, other), "netlink", time.Unix(1000, 0))
	require.Len(t, s.Listeners, 3)
	var where []string
	for i := range s.Listeners {
		where = append(where, s.Listeners[i].Where())
	}
	assert.ElementsMatch(t, []string{"-", "-", "4026532999"}, where)
}
