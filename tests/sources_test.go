package tests

import (
	"fmt"
	"os"
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connbeat/connbeat/connections/bpfiter"
	"github.com/connbeat/connbeat/internal/testkit/kerneltest"
)

// TestSocketSourcesAgree runs the built agent once per socket source on the
// same loopback scenario (TCP, and a UDP socket bound on ::1 with a client
// connected to it) and checks that each one reports the same events
// for it (directions, addresses, owning processes, states, socket counts),
// and that the agent really read through the source it was given: libbeat's
// seccomp allowlist has to let bpf(2) through for the bpf source to load.
func TestSocketSourcesAgree(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the bpf source needs CAP_BPF and CAP_PERFMON")
	}
	src, err := bpfiter.Open()
	kerneltest.RequireBPF(t, err)
	require.NoError(t, src.Close())
	s := startScenario(t, "127.0.0.1", "127.0.0.2")
	// The agent reads every namespace; other suites' namespaces may use
	// the same port numbers. Classic TCP events have no transport field.
	host := float64(hostNetns(t))
	ours := func(e Event) bool {
		return e.Str("transport") == "" && (e.Get("local_port") == s.port || e.Get("remote_port") == s.port) && e.Get("connbeat.netns") == host
	}
	// A UDP socket bound on ::1 and a client holding two UDP sockets
	// connected to it.
	udpSrv := StartPeer(t, nil, "serve", "udp", "[::1]:0", "1", "1")
	_, udpPort := splitAddr(t, udpSrv.Addr)
	udpCl := StartPeer(t, nil, "dial", "udp", udpSrv.Addr, "2")
	oursUDP := func(e Event) bool {
		return e.Str("transport") == "udp" && (e.Get("local_port") == udpPort || e.Get("remote_port") == udpPort) && e.Get("connbeat.netns") == host
	}

	got := map[string][]string{}
	for _, source := range []string{"bpf", "netlink", "procfs"} {
		a := RunAgent(t, AgentOptions{Connbeat: "  poll_interval: 200ms\n  aggregation: 10m\n  socket_source: " + source})
		// The listener, each client's outbound event and the inbound
		// event from each client address.
		a.WaitFor(source+": listener", func(e Event) bool { return ours(e) && e.Str("direction") == "listening" })
		for _, pid := range []any{s.client.PID(), s.client2.PID()} {
			a.WaitFor(fmt.Sprintf("%s: outbound from %v", source, pid), func(e Event) bool {
				return ours(e) && e.Str("direction") == "outbound" && e.Get("local_process.pid") == pid
			})
		}
		for _, ip := range []string{s.ip, s.ip2} {
			a.WaitFor(source+": inbound from "+ip, func(e Event) bool {
				return ours(e) && e.Str("direction") == "inbound" && e.Str("remote_ip") == ip
			})
		}
		a.WaitFor(source+": udp listener", func(e Event) bool {
			return oursUDP(e) && e.Str("direction") == "listening" && e.Get("local_process.pid") == udpSrv.PID()
		})
		a.WaitFor(source+": udp outbound", func(e Event) bool {
			return oursUDP(e) && e.Str("direction") == "outbound" && e.Get("local_process.pid") == udpCl.PID()
		})
		require.Zero(t, a.Stop(os.Interrupt))
		assert.Contains(t, a.Stderr(), "connbeat started: source="+source+" ")
		for _, e := range a.Matching(func(e Event) bool { return ours(e) || oursUDP(e) }) {
			// An outbound key leaves the local port out: which of a
			// client's sockets names the event depends on the source's order.
			localPort := e.Get("local_port")
			if e.Str("direction") == "outbound" && e.Get("connbeat.sockets") != float64(1) {
				localPort = "*"
			}
			got[source] = append(got[source], fmt.Sprintf("%s %s %s:%v -> %s:%v state=%s sockets=%v pid=%v binary=%s",
				e.Str("transport"), e.Str("direction"), e.Str("local_ip"), localPort, e.Str("remote_ip"), e.Get("remote_port"),
				e.Str("connbeat.tcp_state"), e.Get("connbeat.sockets"), e.Get("local_process.pid"), e.Str("local_process.binary")))
		}
		sort.Strings(got[source])
	}
	t.Logf("bpf: %q", got["bpf"])
	require.Len(t, got["bpf"], 5+2, "listener, 2 outbound, 2 inbound; udp listener and outbound: %v", got["bpf"])
	assert.Equal(t, got["netlink"], got["bpf"])
	assert.Equal(t, got["procfs"], got["bpf"])
}
