package tests

import (
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func splitAddr(t *testing.T, addr string) (string, float64) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	p, err := strconv.Atoi(port)
	require.NoError(t, err)
	return host, float64(p)
}

// loopbackScenario starts a listener on host and two clients of it, one from
// a second source address, and returns them.
type loopbackScenario struct {
	listener, client, client2 *Peer
	ip, ip2                   string
	port                      float64
}

func startScenario(t *testing.T, host, second string) loopbackScenario {
	ln := StartPeer(t, nil, "listen", net.JoinHostPort(host, "0"))
	ip, port := splitAddr(t, ln.Addr)
	s := loopbackScenario{listener: ln, ip: ip, port: port, ip2: second}
	s.client = StartPeer(t, nil, "connect", ln.Addr, "", "3")
	s.client2 = StartPeer(t, nil, "connect", ln.Addr, second)
	return s
}

// TestClassicEvents runs the agent with the default (classic) format and
// checks the listener, outbound and inbound events of real loopback
// connections over IPv4 and IPv6, then the dedup window.
func TestClassicEvents(t *testing.T) {
	v4 := startScenario(t, "127.0.0.1", "127.0.0.2")
	var v6 *loopbackScenario
	if ln, err := net.Listen("tcp6", "[::1]:0"); err == nil {
		ln.Close()
		s := startScenario(t, "::1", "::1")
		v6 = &s
	} else {
		t.Logf("no IPv6 loopback here (%v): IPv6 part not run", err)
	}

	const aggregation = 3 * time.Second
	a := RunAgent(t, AgentOptions{Connbeat: "  poll_interval: 200ms\n  aggregation: 3s"})

	for _, s := range []*loopbackScenario{&v4, v6} {
		if s == nil {
			continue
		}
		t.Run(s.ip, func(t *testing.T) {
			ln := a.WaitFor("listener "+s.listener.Addr, func(e Event) bool {
				return e.Str("direction") == "listening" && e.Get("local_port") == s.port
			})
			assert.Equal(t, "connbeat", ln.Str("type"))
			assert.Equal(t, s.ip, ln.Str("local_ip"))
			assert.Equal(t, s.listener.PID(), ln.Get("local_process.pid"))
			assert.Equal(t, "cbpeer", ln.Str("local_process.binary"), "the old connbeat left binary empty")
			assert.Equal(t, bins.peer, ln.Str("local_process.exe"))
			assert.Equal(t, "listener", ln.Str("connbeat.kind"))
			assert.Equal(t, "listen", ln.Str("connbeat.tcp_state"))
			assert.Nil(t, ln.Get("remote_port"))
			assert.NotEmpty(t, ln.Str("beat.hostname"))
			for _, ip := range ln.Get("beat.local_ips").([]interface{}) {
				assert.False(t, net.ParseIP(ip.(string)).IsLoopback(), "local_ips excludes loopback: %v", ip)
			}

			out := a.WaitFor("outbound from "+s.client.Addr, func(e Event) bool {
				return e.Str("direction") == "outbound" && e.Get("remote_port") == s.port && e.Get("local_process.pid") == s.client.PID()
			})
			assert.Equal(t, "cbpeer", out.Str("local_process.binary"))
			assert.Equal(t, bins.peer+" connect "+s.listener.Addr+"  3", out.Str("local_process.cmdline"))
			assert.Equal(t, s.ip, out.Str("remote_ip"))
			assert.Equal(t, float64(3), out.Get("connbeat.sockets"), "three connections, one event")
			assert.Equal(t, "established", out.Str("connbeat.tcp_state"))

			in := a.WaitFor("inbound to "+s.listener.Addr, func(e Event) bool {
				return e.Str("direction") == "inbound" && e.Get("local_port") == s.port && e.Str("remote_ip") == s.ip
			})
			assert.Equal(t, s.listener.PID(), in.Get("local_process.pid"))
			assert.Equal(t, s.ip, in.Str("local_ip"))

			if s.ip2 != s.ip {
				in2 := a.WaitFor("inbound from second peer", func(e Event) bool {
					return e.Str("direction") == "inbound" && e.Get("local_port") == s.port && e.Str("remote_ip") == s.ip2
				})
				assert.Equal(t, s.listener.PID(), in2.Get("local_process.pid"))
				assert.Equal(t, float64(1), in2.Get("connbeat.sockets"))
			}
		})
	}

	// Dedup: the listener is reported again once the window has passed, and
	// never twice inside one window (by the agent's own timestamps).
	isListener := func(e Event) bool {
		return e.Str("direction") == "listening" && e.Get("local_port") == v4.port
	}
	evs := a.WaitForN("listener re-sent after the window", 2, isListener)
	for i := 1; i < len(evs); i++ {
		gap := evs[i].Time(t).Sub(evs[i-1].Time(t))
		assert.GreaterOrEqual(t, gap, aggregation, "listener reported twice within the window")
	}
	isInbound := func(e Event) bool {
		return e.Str("direction") == "inbound" && e.Get("local_port") == v4.port && e.Str("remote_ip") == v4.ip
	}
	ins := a.Matching(isInbound)
	for i := 1; i < len(ins); i++ {
		assert.GreaterOrEqual(t, ins[i].Time(t).Sub(ins[i-1].Time(t)), aggregation)
	}

	assert.Equal(t, 0, a.Stop(syscall.SIGTERM))
	log := a.Stderr()
	assert.NotContains(t, log, "poll failed")
	assert.Contains(t, log, "first poll:")
}

// TestECSEvents checks the ECS format end to end, with libbeat's
// community_id processor configured in the agent.
func TestECSEvents(t *testing.T) {
	s := startScenario(t, "127.0.0.1", "127.0.0.2")
	a := RunAgent(t, AgentOptions{
		Connbeat: "  poll_interval: 200ms\n  event_format: ecs",
		Extra:    "processors:\n  - community_id: ~\n",
	})
	out := a.WaitFor("ecs outbound", func(e Event) bool {
		return e.Str("network.direction") == "egress" && e.Get("destination.port") == s.port && e.Get("process.pid") == s.client.PID()
	})
	assert.Equal(t, "cbpeer", out.Str("process.name"))
	assert.Equal(t, bins.peer, out.Str("process.executable"))
	assert.Equal(t, float64(5), out.Get("process.args_count"), "cbpeer connect ADDR \"\" 3")
	assert.Equal(t, "tcp", out.Str("network.transport"))
	assert.Equal(t, "ipv4", out.Str("network.type"))
	assert.Equal(t, "6", out.Str("network.iana_number"))
	assert.Equal(t, "127.0.0.1", out.Str("source.ip"))
	assert.Equal(t, out.Get("source"), out.Get("client"))
	assert.Equal(t, out.Get("destination"), out.Get("server"))
	assert.True(t, strings.HasPrefix(out.Str("network.community_id"), "1:"), "community_id processor ran: %v", out.Get("network"))
	assert.NotEmpty(t, out.Str("user.id"))
	assert.Nil(t, out.Get("local_process"), "no classic fields in ecs format")

	in := a.WaitFor("ecs inbound from 127.0.0.2", func(e Event) bool {
		return e.Str("network.direction") == "ingress" && e.Get("destination.port") == s.port && e.Str("source.ip") == "127.0.0.2"
	})
	assert.Equal(t, s.listener.PID(), in.Get("process.pid"))
	assert.ElementsMatch(t, []interface{}{"127.0.0.1", "127.0.0.2"}, in.Get("related.ip"))

	ln := a.WaitFor("ecs listener", func(e Event) bool {
		return e.Str("network.direction") == "listening" && e.Get("server.port") == s.port
	})
	assert.Equal(t, s.listener.PID(), ln.Get("process.pid"))
	assert.Nil(t, ln.Get("network.community_id"), "a listener is not a flow")
	assert.Equal(t, 0, a.Stop(syscall.SIGINT))
}

// TestProcessInfoOff checks that expose_process_info: false ships addresses
// only.
func TestProcessInfoOff(t *testing.T) {
	s := startScenario(t, "127.0.0.1", "127.0.0.2")
	a := RunAgent(t, AgentOptions{Connbeat: "  poll_interval: 100ms\n  expose_process_info: false"})
	ev := a.WaitFor("listener", func(e Event) bool {
		return e.Str("direction") == "listening" && e.Get("local_port") == s.port
	})
	assert.Nil(t, ev.Get("local_process"))
	ev = a.WaitFor("outbound", func(e Event) bool {
		return e.Str("direction") == "outbound" && e.Get("remote_port") == s.port
	})
	assert.Nil(t, ev.Get("local_process"))
	assert.Equal(t, 0, a.Stop(syscall.SIGTERM))
}
