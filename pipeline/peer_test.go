package pipeline

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/elastic/beats/v7/libbeat/beat"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connbeat/connbeat/config"
	"github.com/connbeat/connbeat/connections"
	"github.com/connbeat/connbeat/event"
	"github.com/connbeat/connbeat/internal/testkit/netnstest"
	"github.com/connbeat/connbeat/model"
)

// holdIn starts `sleep` holding the given sockets, then closes the test's
// own descriptors of them, so that the child is their only owner.
func holdIn(t *testing.T, socks ...syscall.Conn) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "120")
	for _, s := range socks {
		f, err := s.(interface{ File() (*os.File, error) }).File()
		require.NoError(t, err)
		cmd.ExtraFiles = append(cmd.ExtraFiles, f)
	}
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for i, s := range socks {
		cmd.ExtraFiles[i].Close()
		s.(interface{ Close() error }).Close()
	}
	return cmd
}

// TestPollLoopbackPeers: a server process and a client process connected
// over loopback, each the only holder of its end. Through each socket
// source, each end's event names the other end's process, in both
// formats, and Records carries the same peers.
func TestPollLoopbackPeers(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	c, err := net.Dial("tcp4", ln.Addr().String())
	require.NoError(t, err)
	s, err := ln.Accept()
	require.NoError(t, err)
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	cport := uint16(c.LocalAddr().(*net.TCPAddr).Port)
	server := holdIn(t, ln.(*net.TCPListener), s.(*net.TCPConn))
	client := holdIn(t, c.(*net.TCPConn))
	serverPID, clientPID := server.Process.Pid, client.Process.Pid

	for _, source := range []string{connections.Netlink, connections.ProcFS} {
		for _, format := range event.Formats() {
			t.Run(source+"/"+format, func(t *testing.T) {
				cfg := config.Default()
				cfg.SocketSource, cfg.EventFormat = source, format
				p, err := New(Options{Config: cfg})
				require.NoError(t, err)
				defer p.Close()

				peerPID := "remote_process.pid"
				if format == event.ECS {
					peerPID = "connbeat.peer.process.pid"
				}
				got := map[string][2]any{}
				_, err = p.Poll(context.Background(), time.Now(), func(e beat.Event) {
					dir, _ := e.Fields.GetValue("connbeat.direction")
					kind, _ := e.Fields.GetValue("connbeat.kind")
					if kind != "connection" || !ours(e, format, port, cport) {
						return
					}
					pid := pidAt(e, "local_process.pid", "process.pid", format)
					peer, _ := e.Fields.GetValue(peerPID)
					got[dir.(string)] = [2]any{pid, peer}
				})
				require.NoError(t, err)
				assert.Equal(t, map[string][2]any{
					"inbound":  {int32(serverPID), int32(clientPID)},
					"outbound": {int32(clientPID), int32(serverPID)},
				}, got, "each end names the other's process")
			})
		}
	}

	cfg := config.Default()
	p, err := New(Options{Config: cfg})
	require.NoError(t, err)
	defer p.Close()
	records, _, err := p.Records(context.Background())
	require.NoError(t, err)
	peers := map[model.Direction]int32{}
	for _, r := range records {
		ports := [2]uint16{r.Socket.LocalPort, r.Socket.RemotePort}
		if r.Kind == model.Connection && (ports == [2]uint16{port, cport} || ports == [2]uint16{cport, port}) {
			require.NotNil(t, r.Peer, "%+v", r.Socket)
			peers[r.Direction] = r.Peer.PID
		}
	}
	assert.Equal(t, map[model.Direction]int32{model.Inbound: int32(clientPID), model.Outbound: int32(serverPID)}, peers)
}

// ours reports whether an event is about the test's connection, between
// port and cport: both, since a TIME_WAIT socket of an earlier
// connection may have either.
func ours(e beat.Event, format string, port, cport uint16) bool {
	keys := []string{"local_port", "remote_port"}
	if format == event.ECS {
		keys = []string{"source.port", "destination.port"}
	}
	a, _ := e.Fields.GetValue(keys[0])
	b, _ := e.Fields.GetValue(keys[1])
	return (a == port && b == cport) || (a == cport && b == port)
}

func pidAt(e beat.Event, classic, ecs, format string) any {
	k := classic
	if format == event.ECS {
		k = ecs
	}
	v, _ := e.Fields.GetValue(k)
	return v
}

// TestPollVethPeers: a listener in namespace A and a client in namespace
// B connected across a veth pair, each end held by its own process. The
// pipeline, reading every namespace, gives A's inbound end B's client as
// its peer and B's outbound end A's server.
func TestPollVethPeers(t *testing.T) {
	a, b := netnstest.Add(t), netnstest.Add(t)
	var r [1]byte
	_, _ = rand.Read(r[:])
	aIP, bIP := fmt.Sprintf("10.79.%d.1", r[0]), fmt.Sprintf("10.79.%d.2", r[0])
	netnstest.Veth(t, a, b, aIP+"/24", bIP+"/24")

	var ln net.Listener
	require.NoError(t, a.Do(func() (err error) {
		ln, err = net.Listen("tcp4", aIP+":0")
		return err
	}))
	var c net.Conn
	require.NoError(t, b.Do(func() (err error) {
		c, err = net.Dial("tcp4", ln.Addr().String())
		return err
	}))
	s, err := ln.Accept()
	require.NoError(t, err)
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	server := holdIn(t, ln.(*net.TCPListener), s.(*net.TCPConn))
	client := holdIn(t, c.(*net.TCPConn))

	cfg := config.Default()
	cfg.NetworkNamespaces = config.NamespacesAll
	p, err := New(Options{Config: cfg})
	require.NoError(t, err)
	defer p.Close()
	records, _, err := p.Records(context.Background())
	require.NoError(t, err)
	type end struct {
		netns     uint64
		pid, peer int32
	}
	got := map[model.Direction]end{}
	for _, r := range records {
		// A TIME_WAIT socket at the port is another test's closed
		// connection, at a port reused: this test's are open.
		if r.Kind != model.Connection || r.Socket.State == model.StateTimeWait || (r.Socket.LocalPort != port && r.Socket.RemotePort != port) {
			continue
		}
		e := end{netns: r.Socket.NetNS}
		if r.Process != nil {
			e.pid = r.Process.PID
		}
		if r.Peer != nil {
			e.peer = r.Peer.PID
		}
		got[r.Direction] = e
	}
	assert.Equal(t, map[model.Direction]end{
		model.Inbound:  {netns: a.Inode, pid: int32(server.Process.Pid), peer: int32(client.Process.Pid)},
		model.Outbound: {netns: b.Inode, pid: int32(client.Process.Pid), peer: int32(server.Process.Pid)},
	}, got, "each end, in its own namespace, names the other's process")
}
