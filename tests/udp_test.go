package tests

import (
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestUDPEvents runs the agent beside a cbpeer bound to a UDP port
// (unconnected) and another holding two UDP sockets connected to it: in
// ECS the listener and the client's outbound connection come out with
// network.transport udp and each peer's process; in classic with
// transport: udp and no tcp_state. With protocols [tcp] neither is
// reported while the TCP listener of the same run is.
func TestUDPEvents(t *testing.T) {
	srv := StartPeer(t, nil, "serve", "udp", "127.0.0.1:0", "1", "1")
	_, port := splitAddr(t, srv.Addr)
	cl := StartPeer(t, nil, "dial", "udp", srv.Addr, "2")
	tcp := StartPeer(t, nil, "listen", "127.0.0.1:0")
	_, tcpPort := splitAddr(t, tcp.Addr)

	t.Run("ecs", func(t *testing.T) {
		a := RunAgent(t, AgentOptions{Connbeat: "  poll_interval: 200ms\n  event_format: ecs"})
		ln := a.WaitFor("udp listener", func(e Event) bool {
			return e.Str("network.direction") == "listening" && e.Get("server.port") == port && e.Str("network.transport") == "udp"
		})
		assert.Equal(t, srv.PID(), ln.Get("process.pid"))
		assert.Equal(t, "cbpeer", ln.Str("process.name"))
		assert.Equal(t, "17", ln.Str("network.iana_number"))
		assert.Equal(t, "127.0.0.1", ln.Str("server.ip"))
		assert.Nil(t, ln.Get("connbeat.tcp_state"))

		out := a.WaitFor("udp outbound", func(e Event) bool {
			return e.Str("network.direction") == "egress" && e.Get("destination.port") == port && e.Str("network.transport") == "udp"
		})
		assert.Equal(t, cl.PID(), out.Get("process.pid"))
		assert.Equal(t, float64(2), out.Get("connbeat.sockets"), "two connected sockets, one event")
		assert.Equal(t, "connection", out.Str("connbeat.kind"))
		assert.Equal(t, "17", out.Str("network.iana_number"))
		assert.Nil(t, out.Get("connbeat.tcp_state"))

		tl := a.WaitFor("tcp listener", func(e Event) bool {
			return e.Str("network.direction") == "listening" && e.Get("server.port") == tcpPort && e.Str("network.transport") == "tcp"
		})
		assert.Equal(t, tcp.PID(), tl.Get("process.pid"))
		assert.Equal(t, 0, a.Stop(syscall.SIGTERM))
	})

	t.Run("classic", func(t *testing.T) {
		a := RunAgent(t, AgentOptions{Connbeat: "  poll_interval: 200ms"})
		ln := a.WaitFor("udp listener", func(e Event) bool {
			return e.Str("direction") == "listening" && e.Get("local_port") == port && e.Str("transport") == "udp"
		})
		assert.Equal(t, srv.PID(), ln.Get("local_process.pid"))
		assert.Nil(t, ln.Get("connbeat.tcp_state"))
		out := a.WaitFor("udp outbound", func(e Event) bool {
			return e.Str("direction") == "outbound" && e.Get("remote_port") == port && e.Str("transport") == "udp"
		})
		assert.Equal(t, cl.PID(), out.Get("local_process.pid"))
		assert.Equal(t, "127.0.0.1", out.Str("remote_ip"))
		tl := a.WaitFor("tcp listener", func(e Event) bool {
			return e.Str("direction") == "listening" && e.Get("local_port") == tcpPort
		})
		assert.Nil(t, tl.Get("transport"), "TCP events stay as they were")
		assert.Equal(t, "listen", tl.Str("connbeat.tcp_state"))
		assert.Equal(t, 0, a.Stop(syscall.SIGTERM))
	})

	t.Run("protocols tcp", func(t *testing.T) {
		a := RunAgent(t, AgentOptions{Connbeat: "  poll_interval: 100ms\n  protocols: [tcp]"})
		a.WaitFor("tcp listener", func(e Event) bool {
			return e.Str("direction") == "listening" && e.Get("local_port") == tcpPort
		})
		// Several polls more: none of them may have read a UDP socket.
		time.Sleep(500 * time.Millisecond)
		assert.Equal(t, 0, a.Stop(syscall.SIGTERM))
		for _, e := range a.Events() {
			require.NotEqual(t, "udp", e.Str("transport"), "UDP event with protocols [tcp]: %v", e)
		}
	})
}
