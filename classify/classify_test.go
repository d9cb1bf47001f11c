package classify

import (
	"net/netip"
	"testing"

	"github.com/connbeat/connbeat/model"
	"github.com/stretchr/testify/assert"
)

func sock(local string, lport uint16, remote string, rport uint16, st model.State, inode uint64) model.Socket {
	return model.Socket{
		LocalIP: netip.MustParseAddr(local), LocalPort: lport,
		RemoteIP: netip.MustParseAddr(remote), RemotePort: rport,
		State: st, Inode: inode,
	}
}

const (
	est    = model.StateEstablished
	listen = model.StateListen
)

func TestClassifyDirections(t *testing.T) {
	sockets := []model.Socket{
		sock("0.0.0.0", 80, "0.0.0.0", 0, listen, 1),       // wildcard v4 listener
		sock("10.0.0.1", 443, "0.0.0.0", 0, listen, 2),     // listener on one address
		sock("::", 22, "::", 0, listen, 3),                 // dual-stack listener
		sock("::1", 8080, "::", 0, listen, 4),              // v6 loopback listener
		sock("10.0.0.1", 80, "10.0.0.9", 50000, est, 10),   // inbound via 0.0.0.0:80
		sock("10.0.0.1", 443, "10.0.0.8", 50001, est, 11),  // inbound via 10.0.0.1:443
		sock("10.0.0.2", 443, "10.0.0.8", 50002, est, 12),  // 443 listener is on another address: outbound
		sock("10.0.0.1", 22, "10.0.0.7", 50003, est, 13),   // IPv4 (unmapped) into the :: listener
		sock("2001:db8::1", 22, "2001:db8::2", 1, est, 14), // IPv6 into the :: listener
		sock("::1", 8080, "::1", 40000, est, 15),           // inbound to the ::1 listener
		sock("::1", 40000, "::1", 8080, est, 16),           // its client end: outbound
		sock("10.0.0.1", 51000, "93.184.216.34", 443, est, 17),
		sock("2001:db8::1", 8080, "2001:db8::3", 1, est, 18), // 8080 listens on ::1 only: outbound
		sock("0.0.0.0", 0, "0.0.0.0", 0, model.StateClose, 19),
		sock("10.0.0.1", 51001, "10.0.0.5", 80, model.StateTimeWait, 0),
	}
	got := New(Options{LocalConnections: true}).Classify(sockets, nil, nil)

	type row struct {
		Kind  model.Kind
		Dir   model.Direction
		Inode uint64
	}
	var rows []row
	for _, r := range got {
		rows = append(rows, row{r.Kind, r.Direction, r.Socket.Inode})
	}
	assert.Equal(t, []row{
		{model.Listener, model.Listening, 1},
		{model.Listener, model.Listening, 2},
		{model.Listener, model.Listening, 3},
		{model.Listener, model.Listening, 4},
		{model.Connection, model.Inbound, 10},
		{model.Connection, model.Inbound, 11},
		{model.Connection, model.Outbound, 12},
		{model.Connection, model.Inbound, 13},
		{model.Connection, model.Inbound, 14},
		{model.Connection, model.Inbound, 15},
		{model.Connection, model.Outbound, 16},
		{model.Connection, model.Outbound, 17},
		{model.Connection, model.Outbound, 18},
		// the CLOSE socket is skipped; TIME_WAIT has a peer and is reported
		{model.Connection, model.Outbound, 0},
	}, rows)
}

func TestClassifyLocalConnectionsOff(t *testing.T) {
	sockets := []model.Socket{
		sock("127.0.0.1", 80, "0.0.0.0", 0, listen, 1),
		sock("127.0.0.1", 80, "127.0.0.2", 4000, est, 2),
		sock("::1", 4001, "::1", 80, est, 3),
		sock("10.0.0.1", 4002, "10.0.0.2", 80, est, 4),
	}
	got := New(Options{LocalConnections: false}).Classify(sockets, nil, nil)
	var inodes []uint64
	for _, r := range got {
		inodes = append(inodes, r.Socket.Inode)
	}
	assert.Equal(t, []uint64{1, 4}, inodes, "loopback peers are left out; listeners stay")
}

func TestClassifyOwner(t *testing.T) {
	p := &model.Process{PID: 42, Binary: "nginx"}
	owner := func(inode uint64) (*model.Process, int) {
		if inode == 7 {
			return p, 3
		}
		return nil, 0
	}
	sockets := []model.Socket{
		sock("0.0.0.0", 80, "0.0.0.0", 0, listen, 7),
		sock("10.0.0.1", 80, "10.0.0.2", 1000, est, 8),
		sock("10.0.0.1", 80, "10.0.0.3", 1000, model.StateTimeWait, 0),
	}
	got := New(Options{}).Classify(sockets, owner, nil)
	assert.Equal(t, []model.Record{
		{Kind: model.Listener, Direction: model.Listening, Socket: sockets[0], Process: p, Owners: 3},
		{Kind: model.Connection, Direction: model.Inbound, Socket: sockets[1]},
		{Kind: model.Connection, Direction: model.Inbound, Socket: sockets[2]},
	}, got)
}

// TestClassifyForgetsClosedListeners: the classifier reuses its listener
// set's storage between calls, but a listener gone from the next call's
// sockets no longer makes a connection inbound.
func TestClassifyForgetsClosedListeners(t *testing.T) {
	c := New(Options{LocalConnections: true})
	first := []model.Socket{
		sock("0.0.0.0", 80, "0.0.0.0", 0, listen, 1),
		sock("10.0.0.1", 80, "10.0.0.2", 1, est, 2),
	}
	assert.Equal(t, model.Inbound, c.Classify(first, nil, nil)[1].Direction)
	// The listener closed: the same connection is no longer inbound.
	second := first[1:]
	assert.Equal(t, model.Outbound, c.Classify(second, nil, nil)[0].Direction)
}

func BenchmarkClassify(b *testing.B) {
	var sockets []model.Socket
	for i := 0; i < 10000; i++ {
		sockets = append(sockets, sock("127.0.0.1", uint16(20000+i), "127.0.0.1", 80, est, uint64(i+1)))
	}
	sockets = append(sockets, sock("0.0.0.0", 80, "0.0.0.0", 0, listen, 99999))
	c := New(Options{LocalConnections: true})
	var dst []model.Record
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dst = c.Classify(sockets, nil, dst[:0])
	}
}

// TestClassifyWithinNamespace: a listener makes connections inbound only in
// its own network namespace; the same address and port listening in two
// namespaces are two listeners.
func TestClassifyWithinNamespace(t *testing.T) {
	inNS := func(s model.Socket, ns uint64) model.Socket { s.NetNS = ns; return s }
	sockets := []model.Socket{
		inNS(sock("0.0.0.0", 80, "0.0.0.0", 0, listen, 1), 100),        // ns A listens on :80
		inNS(sock("10.0.0.1", 80, "10.0.0.9", 50000, est, 2), 100),     // A: inbound
		inNS(sock("10.0.0.1", 80, "10.0.0.9", 50000, est, 3), 200),     // B, same addresses: outbound
		inNS(sock("127.0.0.1", 8080, "0.0.0.0", 0, listen, 4), 200),    // B listens on 127.0.0.1:8080
		inNS(sock("127.0.0.1", 8080, "0.0.0.0", 0, listen, 5), 300),    // C too, same address
		inNS(sock("127.0.0.1", 8080, "127.0.0.1", 40000, est, 6), 300), // C: inbound
		inNS(sock("127.0.0.1", 8080, "127.0.0.1", 40000, est, 7), 100), // A: no listener there
		inNS(sock("127.0.0.1", 40000, "127.0.0.1", 8080, est, 8), 300), // C's client: outbound
	}
	got := New(Options{LocalConnections: true}).Classify(sockets, nil, nil)
	type row struct {
		Dir   model.Direction
		NetNS uint64
		Inode uint64
	}
	var rows []row
	for _, r := range got {
		rows = append(rows, row{r.Direction, r.Socket.NetNS, r.Socket.Inode})
	}
	assert.Equal(t, []row{
		{model.Listening, 100, 1},
		{model.Inbound, 100, 2},
		{model.Outbound, 200, 3},
		{model.Listening, 200, 4},
		{model.Listening, 300, 5},
		{model.Inbound, 300, 6},
		{model.Outbound, 100, 7},
		{model.Outbound, 300, 8},
	}, rows)
}
