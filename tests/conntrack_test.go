package tests

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/connbeat/connbeat/internal/testkit"
	"github.com/connbeat/connbeat/internal/testkit/certs"
	"github.com/mdlayher/netlink"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	ct "github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"
)

// conntrackAgent runs the agent inside ns with the conntrack input on and
// polls practically off, and waits until it listens.
func conntrackAgent(t *testing.T, ns *ctNetns, conntrack, extra string) *Agent {
	t.Helper()
	dir := writeConfig(t, AgentOptions{
		Connbeat: "  poll_interval: 1h\n  aggregation: 1h\n  conntrack:\n    enabled: true\n" + conntrack,
		Extra:    extra,
	})
	a := runAgentCmd(t, dir, ns.cmd(bins.connbeat, "-e", "-c", dir+"/connbeat.yml", "--strict.perms=false"))
	waitLog(t, a, "conntrack: listening to")
	return a
}

// addrPort returns the port of a host:port string.
func addrPort(t *testing.T, addr string) float64 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	n, err := strconv.Atoi(p)
	require.NoError(t, err)
	return float64(n)
}

// classicFlow matches the classic conntrack event of type typ whose
// original source port is sport.
func classicFlow(typ string, sport float64) func(Event) bool {
	return func(e Event) bool {
		return e.Str("connbeat.kind") == "conntrack" && e.Str("Type") == typ && e.Get("Original.Layer4.Sport") == sport
	}
}

// checkHeaders checks a direction's counter against the payload sent that
// way: every packet adds its IP and TCP headers, 40 to 80 bytes, and on a
// loaded machine TCP may send some of the payload twice.
func checkHeaders(t *testing.T, e Event, dir string, payload float64) {
	t.Helper()
	packets, bytes := e.num(t, dir+".Counter.Packets"), e.num(t, dir+".Counter.Bytes")
	assert.GreaterOrEqual(t, bytes-payload, 40*packets, "%s: %v bytes in %v packets for %v bytes of payload", dir, bytes, packets, payload)
	assert.LessOrEqual(t, bytes-payload, payload+80*packets, "%s: %v bytes in %v packets for %v bytes of payload", dir, bytes, packets, payload)
}

// TestConntrackLoopback runs the agent with the conntrack input in a
// namespace where an nft rule uses ct and timeouts are short. A TCP and a
// UDP exchange with known payloads each give a NEW joined to the client
// process and, after the client closed and exited, a DESTROY with the same
// id, that process still, per-direction counters that match the payloads
// (UDP to the byte) and the flow's start and end. The agent turned the
// counters and timestamps on itself and logged it.
func TestConntrackLoopback(t *testing.T) {
	ns := newCTNetns(t)
	require.Equal(t, "0", ns.sysctl(t, "net.netfilter.nf_conntrack_acct"), "a new namespace starts with counters off")
	// What the agent turns on, put back as the namespace had it.
	ns.restoreSysctl(t, "net.netfilter.nf_conntrack_acct")
	ns.restoreSysctl(t, "net.netfilter.nf_conntrack_timestamp")
	const (
		tcpSend, tcpRecv = 2000, 70000
		udpSend, udpRecv = 100, 300
	)
	tcpSrv := startCmdPeer(t, ns.cmd(bins.peer, "serve", "tcp", "127.0.0.1:0", strconv.Itoa(tcpSend), strconv.Itoa(tcpRecv)))
	udpSrv := startCmdPeer(t, ns.cmd(bins.peer, "serve", "udp", "127.0.0.1:0", strconv.Itoa(udpSend), strconv.Itoa(udpRecv)))

	a := conntrackAgent(t, ns, "", "")
	log := a.Stderr()
	assert.Contains(t, log, "conntrack: net.netfilter.nf_conntrack_acct: 0 -> 1")
	assert.Contains(t, log, "conntrack: net.netfilter.nf_conntrack_timestamp: 0 -> 1")
	assert.Equal(t, "1", ns.sysctl(t, "net.netfilter.nf_conntrack_acct"))

	for _, tc := range []struct {
		proto, server  string
		send, recv, l4 float64
		exactBytes     bool
		wantState      string
	}{
		{"tcp", tcpSrv.Addr, tcpSend, tcpRecv, 6, false, "time_wait"},
		{"udp", udpSrv.Addr, udpSend, udpRecv, 17, true, ""},
	} {
		func() {
			client := startExchange(t, ns.cmd(bins.peer, "exchange", tc.proto, tc.server, strconv.Itoa(int(tc.send)), strconv.Itoa(int(tc.recv)))...)
			sport, dport := addrPort(t, client.Local), addrPort(t, tc.server)
			pid := client.PID()

			n := a.WaitFor(tc.proto+" NEW", classicFlow("NEW", sport))
			assert.Equal(t, "127.0.0.1", n.Str("Original.Layer3.Src"))
			assert.Equal(t, "127.0.0.1", n.Str("Original.Layer3.Dst"))
			assert.Equal(t, 2.0, n.Get("Original.Layer3.Protonum"))
			assert.Equal(t, "ipv4", n.Str("Original.Layer3.Protoname"))
			assert.Equal(t, tc.l4, n.Get("Original.Layer4.Protonum"))
			assert.Equal(t, tc.proto, n.Str("Original.Layer4.Protoname"))
			assert.Equal(t, dport, n.Get("Original.Layer4.Dport"))
			assert.Equal(t, dport, n.Get("Reply.Layer4.Sport"))
			assert.Equal(t, sport, n.Get("Reply.Layer4.Dport"))
			assert.Equal(t, true, n.Get("UNREPLIED"), "nothing answered the first packet yet")
			assert.NotZero(t, n.Get("Id"))
			assert.Equal(t, "outbound", n.Str("connbeat.direction"))
			assert.Equal(t, pid, n.Get("local_process.pid"), "the client process: %v", n)
			assert.Equal(t, "cbpeer", n.Str("local_process.name"))

			client.Close(t) // the flow ends, the process exits
			d := ns.waitDestroy(t, a, tc.proto+" DESTROY", classicFlow("DESTROY", sport))
			assert.Equal(t, n.Get("Id"), d.Get("Id"), "one id for NEW and DESTROY")
			assert.Equal(t, pid, d.Get("local_process.pid"), "the join made at NEW, the process gone since")
			assert.Equal(t, false, d.Get("UNREPLIED"))
			if tc.exactBytes {
				// One datagram each way: payload, 8 bytes of UDP, 20 of IP.
				assert.Equal(t, map[string]interface{}{"Packets": 1.0, "Bytes": tc.send + 28}, d.Get("Original.Counter"))
				assert.Equal(t, map[string]interface{}{"Packets": 1.0, "Bytes": tc.recv + 28}, d.Get("Reply.Counter"))
			} else {
				checkHeaders(t, d, "Original", tc.send)
				checkHeaders(t, d, "Reply", tc.recv)
				assert.Equal(t, true, d.Get("ASSURED"))
			}
			assert.NotEmpty(t, d.Str("connbeat.conntrack.start"))
			assert.NotEmpty(t, d.Str("connbeat.conntrack.end"))
			assert.Equal(t, tc.wantState, d.Str("connbeat.conntrack.tcp_state"))

			var order []string
			for _, e := range a.Matching(func(e Event) bool { return e.Get("Original.Layer4.Sport") == sport }) {
				order = append(order, e.Str("Type"))
			}
			assert.Equal(t, []string{"NEW", "DESTROY"}, order, "in the kernel's order, once each")
		}()
	}
	assert.Equal(t, 0, a.Stop(syscall.SIGTERM))
}

// TestConntrackDNAT: an nft dnat rule on output sends connections to
// 127.0.0.2:PORT to the server's real port. In the ECS format the flow's
// destination is the address the client asked for and destination.nat the
// one it reached (the reply tuple's source); the client process is joined
// through the socket's own view (connected to the address before DNAT);
// community_id works on the event; the DESTROY carries per-direction
// counters, start, end and duration.
func TestConntrackDNAT(t *testing.T) {
	ns := newCTNetns(t)
	const send, recv = 1000, 5000
	srv := startCmdPeer(t, ns.cmd(bins.peer, "serve", "tcp", "127.0.0.1:0", strconv.Itoa(send), strconv.Itoa(recv)))
	real := addrPort(t, srv.Addr)
	const front = 9000
	ns.nft(t, fmt.Sprintf("table ip %s_nat {\n chain out {\n  type nat hook output priority -100;\n  ip daddr 127.0.0.2 tcp dport %d dnat to 127.0.0.1:%d\n }\n}\n", ns.table, front, int(real)))

	a := conntrackAgent(t, ns, "", "connbeat.event_format: ecs\nprocessors:\n  - community_id: ~\n")
	client := startExchange(t, ns.cmd(bins.peer, "exchange", "tcp", fmt.Sprintf("127.0.0.2:%d", front), strconv.Itoa(send), strconv.Itoa(recv))...)
	sport := addrPort(t, client.Local)
	isFlow := func(action string) func(Event) bool {
		return func(e Event) bool {
			return e.Str("connbeat.kind") == "conntrack" && e.Str("event.action") == action && e.Get("source.port") == sport
		}
	}
	n := a.WaitFor("NEW of the translated flow", isFlow("new"))
	assert.Equal(t, "127.0.0.2", n.Str("destination.ip"), "what the client asked for")
	assert.Equal(t, float64(front), n.Get("destination.port"))
	assert.Equal(t, map[string]interface{}{"ip": "127.0.0.1", "port": real}, n.Get("destination.nat"), "where DNAT sent it")
	assert.Nil(t, n.Get("source.nat"), "no SNAT")
	assert.Equal(t, "127.0.0.1", n.Str("source.ip"))
	assert.Equal(t, "tcp", n.Str("network.transport"))
	assert.Equal(t, "egress", n.Str("network.direction"))
	assert.Equal(t, []interface{}{"connection", "start"}, n.Get("event.type"))
	assert.Equal(t, client.PID(), n.Get("process.pid"), "joined through the client socket's own addresses: %v", n)
	assert.Equal(t, "cbpeer", n.Str("process.name"))
	assert.NotEmpty(t, n.Str("network.community_id"))

	client.Close(t)
	d := ns.waitDestroy(t, a, "DESTROY of the translated flow", isFlow("destroy"))
	assert.Equal(t, n.Get("network.community_id"), d.Get("network.community_id"))
	assert.Equal(t, client.PID(), d.Get("process.pid"))
	assert.Equal(t, map[string]interface{}{"ip": "127.0.0.1", "port": real}, d.Get("destination.nat"))
	assert.GreaterOrEqual(t, d.num(t, "source.bytes"), float64(send))
	assert.Less(t, d.num(t, "source.bytes"), float64(send+80*d.num(t, "source.packets")))
	assert.GreaterOrEqual(t, d.num(t, "destination.bytes"), float64(recv))
	assert.Less(t, d.num(t, "destination.bytes"), float64(recv+80*d.num(t, "destination.packets")))
	assert.Equal(t, d.num(t, "source.bytes")+d.num(t, "destination.bytes"), d.num(t, "network.bytes"))
	assert.NotEmpty(t, d.Str("event.start"))
	assert.NotEmpty(t, d.Str("event.end"))
	assert.Positive(t, d.num(t, "event.duration"))
	assert.Equal(t, 0, a.Stop(syscall.SIGTERM))
}

// ctConn opens a ctnetlink connection inside the namespace, to create and
// delete entries there without packets.
func (n *ctNetns) ctConn(t *testing.T) *ct.Conn {
	t.Helper()
	f, err := os.Open("/var/run/netns/" + n.name)
	require.NoError(t, err)
	defer f.Close()
	c, err := ct.Dial(&netlink.Config{NetNS: int(f.Fd())})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// unixStats reads libbeat's GET /stats from a monitoring endpoint on a
// unix socket (the agent's namespace has no route to the test's).
func unixStats(t *testing.T, path string) Event {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	}}}
	return getStats(t, client, "http://agent/stats")
}

// TestConntrackOverrun gives the agent a 4 KiB receive buffer and creates
// then deletes thousands of entries through ctnetlink as fast as the test
// can: the kernel drops events, and the agent counts it (ENOBUFS, the
// socket's Drops) in connbeat.conntrack, logs it, and re-syncs from a dump,
// so that every entry still comes out with exactly one NEW and one
// DESTROY, the made-up ones marked connbeat.conntrack.resync; afterwards
// events flow as before.
func TestConntrackOverrun(t *testing.T) {
	ns := newCTNetns(t)
	mon := filepath.Join(t.TempDir(), "mon.sock")
	a := conntrackAgent(t, ns, "    receive_buffer: 4KiB\n    set_sysctls: false\n",
		fmt.Sprintf("http.enabled: true\nhttp.host: unix://%s\n", mon))
	c := ns.ctConn(t)

	const n = 3000
	key := func(sport int) float64 { return float64(sport) }
	var flows []ct.Flow
	for i := 0; i < n; i++ {
		flows = append(flows, ct.NewFlow(unix.IPPROTO_TCP, 0, netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("203.0.113.1"), uint16(20000+i), 443, 300, 0))
	}
	for _, f := range flows {
		require.NoError(t, c.Create(f))
	}
	// Counts each entry's events of one type, by original source port.
	counts := func(typ string) (map[float64]int, int) {
		m, resync := map[float64]int{}, 0
		for _, e := range a.Matching(func(e Event) bool { return e.Str("Type") == typ }) {
			m[e.Get("Original.Layer4.Sport").(float64)]++
			if e.Get("connbeat.conntrack.resync") == true {
				resync++
			}
		}
		return m, resync
	}
	complete := func(typ string) func() bool {
		return func() bool { m, _ := counts(typ); return len(m) >= n }
	}
	eventually(t, a, 60*time.Second, "a NEW for every entry", complete("NEW"))
	news, resyncNew := counts("NEW")
	for i := 0; i < n; i++ {
		assert.Equal(t, 1, news[key(20000+i)], "NEW of entry %d", i)
	}
	for _, f := range flows {
		require.NoError(t, c.Delete(f))
	}
	eventually(t, a, 60*time.Second, "a DESTROY for every entry", complete("DESTROY"))
	destroys, resyncDestroy := counts("DESTROY")
	for i := 0; i < n; i++ {
		assert.Equal(t, 1, destroys[key(20000+i)], "DESTROY of entry %d", i)
	}

	// Every entry's NEW was handled before the deletes began, so each
	// dropped event was made up: the namespace has only these entries.
	// The agent reads the kernel's drop count again once idle.
	// NEWs of entries a dump reported first (created while it ran) were
	// not reported again and stand for no lost event.
	var st Event
	eventually(t, a, 10*time.Second, "connbeat.conntrack.lost to count every made-up event", func() bool {
		st = unixStats(t, mon)
		return st.Get("connbeat.conntrack.lost") == float64(resyncNew+resyncDestroy)-st.num(t, "connbeat.conntrack.resync.superseded")
	})
	t.Logf("NEW: %d re-synced; DESTROY: %d re-synced; overruns %v, lost %v, re-syncs %v",
		resyncNew, resyncDestroy, st.Get("connbeat.conntrack.enobufs"), st.Get("connbeat.conntrack.lost"), st.Get("connbeat.conntrack.resyncs"))
	require.Positive(t, st.num(t, "connbeat.conntrack.enobufs"), "a 4 KiB buffer overflows under this burst")
	assert.Positive(t, resyncNew+resyncDestroy, "lost events were made up from the table")
	assert.Equal(t, float64(resyncNew), st.num(t, "connbeat.conntrack.resync.new"))
	assert.Equal(t, float64(resyncDestroy), st.num(t, "connbeat.conntrack.resync.destroy"))
	assert.Positive(t, st.num(t, "connbeat.conntrack.resyncs"))
	assert.Contains(t, a.Stderr(), "-byte receive buffer overflowed")

	// Recovered: the next entry's NEW is the kernel's.
	next := ct.NewFlow(unix.IPPROTO_TCP, 0, netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("203.0.113.1"), 19999, 443, 300, 0)
	require.NoError(t, c.Create(next))
	e := a.WaitFor("the NEW after the overruns", classicFlow("NEW", 19999))
	assert.Nil(t, e.Get("connbeat.conntrack.resync"))
	assert.Equal(t, 0, a.Stop(syscall.SIGTERM))
}

// needDocker skips the test when no Docker Engine answers (in CI, where
// the machines run one, it fails instead).
func needDocker(t *testing.T) {
	t.Helper()
	needTool(t, "docker", "docker.io")
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		// The project's machines run one: in strict mode (CI,
		// CONNBEAT_REQUIRE_TOOLS=1) its absence is a failure.
		testkit.Missing(t, "no Docker Engine answers: %v: %s", err, out)
	}
}

// hostAddr returns an IPv4 address of this host that is not loopback, one
// of a physical interface if there is one, else the Docker bridge's.
func hostAddr(t *testing.T) string {
	t.Helper()
	ifaces, err := net.Interfaces()
	require.NoError(t, err)
	var bridge string
	for _, iface := range ifaces {
		addrs, err := iface.Addrs()
		require.NoError(t, err)
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok || ipn.IP.To4() == nil || ipn.IP.IsLoopback() {
				continue
			}
			if strings.HasPrefix(iface.Name, "docker") || strings.HasPrefix(iface.Name, "br-") || strings.HasPrefix(iface.Name, "veth") {
				bridge = ipn.IP.String()
				continue
			}
			return ipn.IP.String()
		}
	}
	require.NotEmpty(t, bridge, "no IPv4 address but loopback on this host")
	return bridge
}

// docker runs the docker CLI and returns its trimmed output.
func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	require.NoError(t, err, "docker %v: %s", args, out)
	return strings.TrimSpace(string(out))
}

// TestConntrackDocker publishes a container's port with `docker run -p`
// (the image built FROM scratch around a static cbpeer, as no registry is
// reachable) and connects to it from the host: Docker's DNAT rule makes
// the flow's reply tuple name the container's address and port while the
// original tuple has the host's address and published port, and the
// client on the host is joined to the flow.
func TestConntrackDocker(t *testing.T) {
	needRoot(t, "conntrack events (CAP_NET_ADMIN) in the host's namespace")
	needDocker(t)
	name := strings.ToLower(uniqueName(t, "connbeat-test"))
	ctx := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(ctx, "cbpeer"), "./testdata/peer")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "static cbpeer: %s", out)
	require.NoError(t, os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM scratch\nCOPY cbpeer /cbpeer\nENTRYPOINT [\"/cbpeer\"]\n"), 0o644))
	image := name + ":test"
	docker(t, "build", "-q", "-t", image, ctx)
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", image).Run() })

	const send, recv = 300, 700
	hostPort := freePort(t)
	docker(t, "run", "-d", "--name", name, "-p", fmt.Sprintf("%d:8080", hostPort), image,
		"serve", "tcp", "0.0.0.0:8080", strconv.Itoa(send), strconv.Itoa(recv))
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", name).Run() })
	containerIP := docker(t, "inspect", "-f", "{{.NetworkSettings.IPAddress}}", name)
	require.NotEmpty(t, containerIP)
	eventually(t, nil, 30*time.Second, "the container's server ready", func() bool {
		return strings.Contains(docker(t, "logs", name), "ready")
	})

	// The host's namespace has Docker's NAT rules, so conntrack tracks
	// the host's traffic; the test changes no host setting.
	a := RunAgent(t, AgentOptions{Connbeat: "  poll_interval: 1h\n  aggregation: 1h\n  conntrack:\n    enabled: true\n    set_sysctls: false\n"})
	waitLog(t, a, "conntrack: listening to")
	host := hostAddr(t)
	client := startExchange(t, bins.peer, "exchange", "tcp", fmt.Sprintf("%s:%d", host, hostPort), strconv.Itoa(send), strconv.Itoa(recv))
	sport := addrPort(t, client.Local)

	n := a.WaitFor("NEW of the connection to the published port", classicFlow("NEW", sport))
	assert.Equal(t, host, n.Str("Original.Layer3.Dst"), "the address the client connected to")
	assert.Equal(t, float64(hostPort), n.Get("Original.Layer4.Dport"), "the published port")
	assert.Equal(t, containerIP, n.Str("Reply.Layer3.Src"), "Docker's DNAT: the container's address")
	assert.Equal(t, 8080.0, n.Get("Reply.Layer4.Sport"), "the container's port")
	assert.Equal(t, "outbound", n.Str("connbeat.direction"))
	assert.Equal(t, client.PID(), n.Get("local_process.pid"))
	client.Close(t)
	assert.Equal(t, 0, a.Stop(syscall.SIGTERM))
}

// unitCapabilities reads the capabilities a packaged unit file or drop-in
// grants (AmbientCapabilities=, an empty one resetting the list) in
// setpriv's spelling: "+sys_ptrace,+dac_read_search".
func unitCapabilities(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var caps []string
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "AmbientCapabilities="); ok {
			if strings.TrimSpace(v) == "" {
				caps = nil
			}
			for _, c := range strings.Fields(v) {
				caps = append(caps, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
			}
		}
	}
	require.NotEmpty(t, caps)
	return caps
}

// TestConntrackCapability runs the agent as nobody with exactly the
// capabilities of the packaged unit with its poll-only drop-in: with the
// conntrack input enabled it does not start, and says CAP_NET_ADMIN is
// missing; with the unit's own (CAP_NET_ADMIN among them, for the event
// capture) it starts, turns the counters on in its namespace, and joins a
// root process's flow.
func TestConntrackCapability(t *testing.T) {
	ns := newCTNetns(t)
	needTool(t, "setpriv", "util-linux")
	pollOnly := unitCapabilities(t, "../packaging/poll-only.conf")
	unit := unitCapabilities(t, "../packaging/connbeat.service")
	require.NotContains(t, pollOnly, "+net_admin")
	require.Contains(t, unit, "+net_admin")
	ns.restoreSysctl(t, "net.netfilter.nf_conntrack_acct")
	ns.restoreSysctl(t, "net.netfilter.nf_conntrack_timestamp")
	srv := startCmdPeer(t, ns.cmd(bins.peer, "serve", "tcp", "127.0.0.1:0", "10", "10"))

	asNobody := func(caps []string) *Agent {
		dir := writeConfig(t, AgentOptions{
			Connbeat:   "  poll_interval: 1h\n  aggregation: 1h\n  conntrack:\n    enabled: true\n",
			Credential: nobody,
		})
		list := strings.Join(caps, ",")
		return runAgentCmd(t, dir, ns.cmd("setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
			"--inh-caps", list, "--ambient-caps", list, "--bounding-set", "-all,"+list,
			bins.connbeat, "-e", "-c", dir+"/connbeat.yml", "--strict.perms=false"))
	}

	a := asNobody(pollOnly)
	select {
	case <-a.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the agent kept running without CAP_NET_ADMIN")
	}
	assert.NotZero(t, a.cmd.ProcessState.ExitCode())
	assert.Contains(t, a.Stderr(), "subscribing to conntrack events needs CAP_NET_ADMIN: operation not permitted (connbeat.conntrack.enabled is true)")

	a = asNobody(unit)
	waitLog(t, a, "conntrack: listening to")
	assert.Contains(t, a.Stderr(), "conntrack: net.netfilter.nf_conntrack_acct: 0 -> 1", "CAP_NET_ADMIN lets it set its namespace's sysctls")
	client := startExchange(t, ns.cmd(bins.peer, "exchange", "tcp", srv.Addr, "10", "10")...)
	n := a.WaitFor("NEW of root's connection", classicFlow("NEW", addrPort(t, client.Local)))
	assert.Equal(t, client.PID(), n.Get("local_process.pid"), "the unit's capabilities join other users' processes")
	assert.Equal(t, "root", n.Str("local_process.user"))
	assert.Equal(t, 0, a.Stop(syscall.SIGTERM))
}

// TestConntrackAMQPRouting ships conntrack events to RabbitMQ as the
// conntrack event collector did (exchange conntrack, direct, TLS with a
// client certificate), routed by type with routing_key conntrack.%{[Type]}:
// an entry created and deleted through ctnetlink lands as NEW in the queue
// bound to conntrack.NEW and as DESTROY in the one bound to
// conntrack.DESTROY, with one id.
func TestConntrackAMQPRouting(t *testing.T) {
	needRoot(t, "conntrack events and entries (CAP_NET_ADMIN) in the host's namespace")
	pki, err := certs.Write(t.TempDir())
	require.NoError(t, err)
	b := startRabbit(t, &pki)
	newQ := bindQueueTo(t, b, "conntrack", "direct", "ct_new", "conntrack.NEW")
	destroyQ := bindQueueTo(t, b, "conntrack", "direct", "ct_destroy", "conntrack.DESTROY")

	// One flow of the host's: the others are dropped before the output.
	const sport = 45678
	a := outputAgent(t, "  poll_interval: 1h\n  aggregation: 1h\n  conntrack:\n    enabled: true\n    set_sysctls: false",
		amqpOutput(b.TLSURL(), fmt.Sprintf("  exchange: conntrack\n  exchange_type: direct\n  routing_key: \"conntrack.%%{[Type]}\"\n"+
			"  ssl.certificate_authorities: [%q]\n  ssl.certificate: %q\n  ssl.key: %q\n", pki.CA, pki.ClientCert, pki.ClientKey)),
		"queue.mem.flush.min_events: 1",
		fmt.Sprintf("processors:\n  - drop_event.when.not.equals.Original.Layer4.Sport: %d\n", sport))
	waitLog(t, a, "conntrack: listening to")

	c, err := ct.Dial(nil)
	require.NoError(t, err)
	defer c.Close()
	f := ct.NewFlow(unix.IPPROTO_TCP, 0, netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("203.0.113.7"), sport, 443, 60, 0)
	require.NoError(t, c.Create(f))
	t.Cleanup(func() { _ = c.Delete(f) })
	eventually(t, a, 60*time.Second, "the NEW in the conntrack.NEW queue", func() bool { return len(newQ.read()) > 0 })
	require.NoError(t, c.Delete(f))
	eventually(t, a, 60*time.Second, "the DESTROY in the conntrack.DESTROY queue", func() bool { return len(destroyQ.read()) > 0 })

	n, d := newQ.read(), destroyQ.read()
	require.Len(t, n, 1)
	require.Len(t, d, 1)
	assert.Equal(t, "NEW", n[0].Str("Type"))
	assert.Equal(t, "DESTROY", d[0].Str("Type"))
	assert.Equal(t, n[0].Get("Id"), d[0].Get("Id"))
	assert.Equal(t, "198.51.100.7", n[0].Str("Original.Layer3.Src"))
	assert.Equal(t, "forwarded", n[0].Str("connbeat.direction"))
	assert.Equal(t, []string{"conntrack.NEW"}, newQ.keys)
	assert.Equal(t, 0, a.Stop(syscall.SIGTERM))
}
