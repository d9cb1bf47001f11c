package sockettest

import (
	"net"
	"net/netip"
	"os"
	"strconv"
	"testing"

	"github.com/connbeat/connbeat/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sock(local string, lport uint16, remote string, rport uint16, st model.State) model.Socket {
	return model.Socket{
		LocalIP: netip.MustParseAddr(local), LocalPort: lport,
		RemoteIP: netip.MustParseAddr(remote), RemotePort: rport, State: st,
	}
}

// TestOurs checks that only sockets with an end at one of the test's
// endpoints are kept, a wildcard listener standing for both loopbacks, and
// that they come out sorted.
func TestOurs(t *testing.T) {
	l := New(t)
	l.Mark(netip.MustParseAddrPort("[::ffff:127.0.0.1]:1000")) // unmapped when marked
	l.Mark(netip.MustParseAddrPort("[::]:2000"))
	listen := model.StateListen
	est := model.StateEstablished
	got := l.Ours([]model.Socket{
		sock("::1", 2000, "::1", 40001, est),
		sock("127.0.0.1", 40000, "127.0.0.1", 1000, est),
		sock("127.0.0.1", 1000, "0.0.0.0", 0, listen),
		sock("10.0.0.1", 2000, "10.0.0.2", 40002, est), // not a loopback end
		sock("127.0.0.1", 3000, "0.0.0.0", 0, listen),  // not the test's port
		sock("::", 2000, "::", 0, listen),
		sock("127.0.0.1", 2000, "127.0.0.1", 40003, model.StateTimeWait),
	})
	assert.Equal(t, []model.Socket{
		sock("127.0.0.1", 1000, "0.0.0.0", 0, listen),
		sock("127.0.0.1", 2000, "127.0.0.1", 40003, model.StateTimeWait),
		sock("127.0.0.1", 40000, "127.0.0.1", 1000, est),
		sock("::", 2000, "::", 0, listen),
		sock("::1", 2000, "::1", 40001, est),
	}, got)
}

// TestOursStrayTimeWait: a listener's port may have been another test's
// a moment ago; the TIME_WAIT sockets of that test's connections are not
// this test's, those of its own closed connections are.
func TestOursStrayTimeWait(t *testing.T) {
	l := New(t)
	ln := l.Listen("tcp4", "127.0.0.1:0")
	l.Connect(ln, "127.0.0.1", 1)
	own := netip.MustParseAddrPort(l.Conns[0].LocalAddr().String())
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	tw := model.StateTimeWait
	got := l.Ours([]model.Socket{
		sock("127.0.0.1", port, "127.0.0.1", 40000, tw),      // an earlier test's
		sock("127.0.0.1", port, "127.0.0.1", own.Port(), tw), // this test's, closed
	})
	assert.Equal(t, []model.Socket{sock("127.0.0.1", port, "127.0.0.1", own.Port(), tw)}, got)
}

// TestSortTotal checks that sockets equal but for state, uid or inode
// still get one order.
func TestSortTotal(t *testing.T) {
	a := sock("::1", 1, "::1", 2, model.StateEstablished)
	b, c, d := a, a, a
	b.UID = 7
	c.UID, c.Inode = 7, 9
	d.State = model.StateCloseWait
	s := []model.Socket{d, c, b, a}
	Sort(s)
	assert.Equal(t, []model.Socket{a, b, c, d}, s)
}

// TestConnect checks the pairs Connect keeps: the dialled end, then the
// accepted end, joined to each other.
func TestConnect(t *testing.T) {
	l := New(t)
	ln := l.Listen("tcp4", "127.0.0.1:0")
	l.Connect(ln, "127.0.0.1", 2)
	require.Len(t, l.Conns, 4)
	for i := 0; i < 4; i += 2 {
		assert.Equal(t, l.Conns[i].LocalAddr().String(), l.Conns[i+1].RemoteAddr().String())
		assert.Equal(t, ln.Addr().String(), l.Conns[i+1].LocalAddr().String())
	}
}

// TestInNewNetns checks that the function runs in another network
// namespace than the test's, with a working loopback, and that the error
// it returns is delivered.
func TestInNewNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("unshare(CLONE_NEWNET) needs root")
	}
	host, err := os.Readlink("/proc/thread-self/ns/net")
	require.NoError(t, err)
	var inside string
	err = <-InNewNetns(func() error {
		var err error
		if inside, err = os.Readlink("/proc/thread-self/ns/net"); err != nil {
			return err
		}
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer ln.Close()
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			return err
		}
		return c.Close()
	})
	require.NoError(t, err)
	assert.NotEqual(t, host, inside)

	want := strconv.ErrRange
	assert.ErrorIs(t, <-InNewNetns(func() error { return want }), want)
}
