package main

// A mutant is one deliberate break of the agent, and the test that must
// catch it. Each edit replaces text that occurs exactly once in File; a
// mutant of a .c file is compiled again with go generate.
type mutant struct {
	Name  string
	File  string
	Edits []edit
	// Pkg and Run are the package and the -run pattern of the test that
	// must fail.
	Pkg, Run string
	// Slow mutants' tests build and run the agent or start
	// rabbitmq-server: minutes each. -fast leaves them out.
	Slow bool
}

type edit struct{ From, To string }

func one(from, to string) []edit { return []edit{{from, to}} }

var mutants = []mutant{
	// Socket sources.
	{
		Name: "netlink-family-protocol", File: "connections/netlink/wire.go",
		Edits: []edit{
			{"b = append(b, r.Family, r.Protocol, r.Ext, 0)", "b = append(b, r.Protocol, r.Family, r.Ext, 0)"},
			{"r.Family, r.Protocol, r.Ext = b[0], b[1], b[2]", "r.Protocol, r.Family, r.Ext = b[0], b[1], b[2]"},
		},
		Pkg: "./connections/netlink", Run: "TestRequestBytesAsKernelLayout|TestKernelSameSocketsAsProcFS",
	},
	{
		Name: "netlink-states-mask", File: "connections/netlink/source.go",
		Edits: one("const allStates = 0x1ffe", "const allStates = 0x0ffe"),
		Pkg:   "./connections/netlink", Run: "TestRequestBytesAsKernelLayout",
	},
	{
		Name: "netlink-rtt-offset", File: "connections/netlink/wire.go",
		Edits: one("tiRTT              = 68", "tiRTT              = 64"),
		Pkg:   "./connections/netlink", Run: "TestWireLayout",
	},
	{
		Name: "procfs-mapped-address", File: "connections/procfs/procfs.go",
		Edits: one("return a.Unmap()", "return a"),
		Pkg:   "./connections/procfs", Run: "TestProcFSFixture",
	},
	{
		Name: "bpf-record-remote-address", File: "connections/bpfiter/decode.go",
		Edits: one("s.RemoteIP = netip.AddrFrom4([4]byte(rec[recRemote:]))", "s.RemoteIP = netip.AddrFrom4([4]byte(rec[recLocal:]))"),
		Pkg:   "./connections/bpfiter", Run: "TestDecodeRecord",
	},

	{
		Name: "netlink-udp-as-tcp", File: "connections/netlink/source.go",
		Edits: one("s.dec.transport = r.transport()", "s.dec.transport = model.TCP"),
		Pkg:   "./connections/netlink", Run: "TestKernelUDP",
	},
	{
		Name: "procfs-udp-as-tcp", File: "connections/procfs/procfs.go",
		Edits: one("dst = appendLines(dst, procfs.NetTCP(lines), model.UDP)", "dst = appendLines(dst, procfs.NetTCP(lines), model.TCP)"),
		Pkg:   "./connections/procfs", Run: "TestProcFSFixture",
	},

	// The bpf program (C, compiled again by go generate).
	{
		Name: "bpf-udp-as-tcp", File: "connections/bpfiter/iter.bpf.c",
		Edits: one("rec.transport = TRANSPORT_UDP;", "rec.transport = TRANSPORT_TCP;"),
		Pkg:   "./connections/bpfiter", Run: "TestKernelUDP",
	},
	{
		Name: "bpf-cache-never-hits", File: "connections/bpfiter/iter.bpf.c",
		Edits: one("if (slot && slot->key == key) {", "if (slot && slot->key == key + 1) {"),
		Pkg:   "./connections/bpfiter", Run: "TestKernelInodeCacheHits",
	},
	{
		Name: "bpf-cache-fin-wait2", File: "connections/bpfiter/iter.bpf.c",
		Edits: one("state == TCP_CLOSE_WAIT || state == TCP_LISTEN;", "state == TCP_CLOSE_WAIT || state == TCP_LISTEN || state == 5 /* FIN_WAIT2 */;"),
		Pkg:   "./connections/bpfiter", Run: "TestKernelInodeCacheNeverStale",
	},
	{
		Name: "bpf-ipv6-remote-address", File: "connections/bpfiter/iter.bpf.c",
		Edits: one("rec->remote[i] = sk->skc_v6_daddr.in6_u.u6_addr32[i];", "rec->remote[i] = sk->skc_v6_rcv_saddr.in6_u.u6_addr32[i];"),
		Pkg:   "./connections/bpfiter", Run: "TestKernelSameSocketsAsNetlink",
	},
	{
		Name: "bpf-verifier-refuses", File: "connections/bpfiter/iter.bpf.c",
		Edits: one("\t * end of the walk.\n\t */\n\tif (!sk)\n\t\treturn 0;\n", "\t * end of the walk.\n\t */\n"),
		Pkg:   "./connections", Run: "TestSelectSource$|TestAutoSourceSwitches",
	},

	// The event capture (its C compiled again by go generate).
	{
		Name: "capture-fin-in-bytes", File: "capture/capture.bpf.c",
		Edits: one("if (sock_flags(sk) & (1UL << SOCK_DONE) && r->bytes_received)", "if (sock_flags(sk) & 0UL && r->bytes_received)"),
		Pkg:   "./capture", Run: "TestKernelShortConnections",
	},
	{
		Name: "capture-passive-unowned", File: "capture/capture.bpf.c",
		Edits: one("\t\t\tfresh.owner = *o;\n\t\t\tfresh.flags |= F_OWNER;", "\t\t\tfresh.owner = *o;"),
		Pkg:   "./capture", Run: "TestKernelShortConnections",
	},
	{
		Name: "capture-destroy-not-attached", File: "capture/program.go",
		Edits: one(`range []string{"inet_sock_set_state", "tcp_destroy_sock"} {`, `range []string{"inet_sock_set_state"} {`),
		Pkg:   "./capture", Run: "TestKernelDestroyRecoversClose",
	},
	{
		Name: "capture-never-ready", File: "capture/capture.go",
		Edits: one("	if some {\n		select {\n		case c.ready <- struct{}{}:", "	if some && false {\n		select {\n		case c.ready <- struct{}{}:"),
		Pkg:   "./capture", Run: "TestKernelReady",
	},
	{
		Name: "capture-refused-as-failed", File: "capture/record.go",
		Edits: one("case oldState == model.StateSynSent && skErr == econnrefused:", "case oldState == model.StateSynSent && skErr == 0:"),
		Pkg:   "./capture", Run: "TestKernelRefused",
	},
	{
		Name: "pipeline-delta-without-listeners", File: "pipeline/capture.go",
		Edits: one("for _, l := range e.listeners {", "for _, l := range map[listenerKey]capture.Conn{} {"),
		Pkg:   "./pipeline", Run: "TestEventsConnectionBetweenPolls",
	},
	{
		Name: "pipeline-timewait-unowned", File: "pipeline/capture.go",
		Edits: one("if o, ok := e.c.Owner(s); ok {", "if o, ok := e.c.Owner(s); ok && false {"),
		Pkg:   "./pipeline", Run: "TestEventsTimeWaitKeepsProcess",
	},

	// Joining sockets to processes.
	{
		Name: "join-shared-owner", File: "procs/resolver.go",
		Edits: one("if best == nil || p.PID < best.PID {", "if best == nil || p.PID > best.PID {"),
		Pkg:   "./procs", Run: "TestResolverSharedOwnerTie",
	},
	{
		Name: "join-keeps-exited-owner", File: "procs/resolver.go",
		Edits: one("\tfor _, ino := range p.sockets {\n\t\tr.removeOwner(ino, pid)\n\t}\n", ""),
		Pkg:   "./procs", Run: "TestResolverKernelChurn",
	},

	// Network namespaces.
	{
		Name: "netns-netlink-not-entered", File: "connections/nsreaders.go",
		Edits: one("func (r *netlinkReader) enter(ns netns.Namespace) bool { return !ns.Own }", "func (r *netlinkReader) enter(ns netns.Namespace) bool { return false }"),
		Pkg:   "./connections", Run: "TestKernelEveryNamespace",
	},
	{
		Name: "netns-gone-kept-open", File: "connections/nsreaders.go",
		Edits: one("\t\tif _, ok := live[ino]; !ok {\n\t\t\tsrc.Close()", "\t\tif _, ok := live[ino]; !ok {\n\t\t\t_ = src"),
		Pkg:   "./connections", Run: "TestKernelNamespaceComesAndGoes",
	},
	{
		Name: "netns-reuse-ignores-counters", File: "connections/namespaces.go",
		Edits: one("last != nil && last.countersOK && last.counters == counters && now.Before(last.until)", "last != nil && last.countersOK && now.Before(last.until)"),
		Pkg:   "./connections", Run: "TestKernelNamespaceReadReused",
	},
	{
		Name: "netns-same-read-not-unchanged", File: "connections/namespaces.go",
		Edits: one("same := last != nil && slices.Equal(last.sockets, out[n:])", "same := last != nil && slices.Equal(last.sockets, out[:0])"),
		Pkg:   "./connections", Run: "TestKernelSameReadUnchanged",
	},
	{
		Name: "netns-auto-keeps-both-reads", File: "connections/auto.go",
		Edits: one("\t\tforget(a.netlink)", "\t\t_ = a.netlink"),
		Pkg:   "./connections", Run: "TestAutoSourceSwitches",
	},
	{
		Name: "dedup-groups-ignore-window", File: "dedup/dedup.go",
		Edits: one("\t\tif c.seen(c.hash(&groups[i].Record), now) {", "\t\tif c.seen(c.hash(&groups[i].Record), now) && false {"),
		Pkg:   "./dedup", Run: "TestGroupedThenFilterGroups",
	},
	{
		Name: "pipeline-delta-without-peers", File: "pipeline/pipeline.go",
		Edits: one("\t\t\tp.deltaPeers.LinkReports(p.reports, p.polled)", "\t\t\t_ = p.deltaPeers"),
		Pkg:   "./pipeline", Run: "TestEventsConnectionBetweenPolls",
	},
	{
		Name: "pipeline-no-early-poll", File: "pipeline/pipeline.go",
		Edits: one("p.capture.c.Pending() < earlyPollAt {", "p.capture.c.Pending() >= 0 {"),
		Pkg:   "./pipeline", Run: "TestPublishCaptured",
	},
	{
		Name: "pipeline-unchanged-filters-nothing", File: "pipeline/pipeline.go",
		Edits: one("\t\tp.reports = p.dedup.FilterGroups(p.groups, window, p.reports[:0])", "\t\tp.reports = p.dedup.Filter(p.polled, window, p.reports[:0])"),
		Pkg:   "./pipeline", Run: "TestFullReadUnchangedReusesRecords",
	},
	{
		Name: "netns-thread-not-returned", File: "connections/netns/enter.go",
		Edits: one("if err := unix.Setns(back, unix.CLONE_NEWNET); err != nil {", "if err := error(nil); err != nil {"),
		Pkg:   "./connections/netns", Run: "TestKernelEach",
	},

	// Classification.
	{
		Name: "classify-inbound", File: "classify/classify.go",
		Edits: one("if c.isListening(s.Transport, s.NetNS, s.LocalIP, s.LocalPort) {", "if !c.isListening(s.Transport, s.NetNS, s.LocalIP, s.LocalPort) {"),
		Pkg:   "./classify", Run: "TestClassifyDirections",
	},
	{
		Name: "classify-listener-of-any-transport", File: "classify/classify.go",
		Edits: one("if l.transport != t || l.netns != netns {", "if l.netns != netns {"),
		Pkg:   "./classify", Run: "TestClassifyUDP",
	},
	{
		Name: "classify-udp-bound-not-listener", File: "classify/classify.go",
		Edits: one("return s.State == model.StateClose && s.RemotePort == 0", "return s.State == model.StateListen"),
		Pkg:   "./classify", Run: "TestClassifyUDP",
	},
	{
		Name: "classify-listener-any-namespace", File: "classify/classify.go",
		Edits: one("if l.transport != t || l.netns != netns {", "if l.transport != t {"),
		Pkg:   "./classify", Run: "TestClassifyWithinNamespace",
	},
	{
		Name: "classify-dual-stack-listener", File: "classify/classify.go",
		Edits: one("if l.ip == ip || l.ip == anyV6 || (is4 && l.ip == anyV4) {", "if l.ip == ip || (is4 && l.ip == anyV4) {"),
		Pkg:   "./classify", Run: "TestClassifyDirections",
	},
	{
		Name: "classify-local-connections", File: "classify/classify.go",
		Edits: one("if !c.opts.LocalConnections && s.RemoteIP.IsLoopback() {", "if c.opts.LocalConnections && s.RemoteIP.IsLoopback() {"),
		Pkg:   "./classify", Run: "TestClassifyLocalConnectionsOff",
	},

	// Dedup.
	{
		Name: "dedup-transport-left-out", File: "dedup/dedup.go",
		Edits: one("k := Key{dir: r.Direction, transport: r.Socket.Transport, localIP: r.Socket.LocalIP, netns: r.Socket.NetNS}", "k := Key{dir: r.Direction, localIP: r.Socket.LocalIP, netns: r.Socket.NetNS}"),
		Pkg:   "./dedup", Run: "TestFilterTransportInKey",
	},
	{
		Name: "dedup-window-never-ends", File: "dedup/dedup.go",
		Edits: one("oldest := now.Add(-c.window).UnixNano()", "oldest := now.Add(-2 * c.window).UnixNano()"),
		Pkg:   "./dedup", Run: "TestFilterWindow",
	},
	{
		Name: "dedup-key-ephemeral-port", File: "dedup/dedup.go",
		Edits: one("k.pid, k.remoteIP, k.remotePort = pid, r.Socket.RemoteIP, r.Socket.RemotePort", "k.pid, k.remoteIP, k.remotePort, k.localPort = pid, r.Socket.RemoteIP, r.Socket.RemotePort, r.Socket.LocalPort"),
		Pkg:   "./dedup", Run: "TestKeyIgnoresEphemeralPorts",
	},
	{
		Name: "dedup-key-without-namespace", File: "dedup/dedup.go",
		Edits: one("localIP: r.Socket.LocalIP, netns: r.Socket.NetNS}", "localIP: r.Socket.LocalIP}"),
		Pkg:   "./dedup", Run: "TestKeyHoldsNamespace",
	},
	{
		Name: "dedup-socket-count", File: "dedup/dedup.go",
		Edits: one("c.groups[g].n++", "_ = g"),
		Pkg:   "./dedup", Run: "TestFilterGroupsByKey",
	},

	// Event formats.
	{
		Name: "event-ecs-transport-always-tcp", File: "event/event.go",
		Edits: one(`network := mapstr.M{"transport": s.Transport.String(),`, `network := mapstr.M{"transport": "tcp",`),
		Pkg:   "./event", Run: "TestUDPEvents",
	},
	{
		Name: "event-classic-ppid", File: "event/event.go",
		Edits: one(`lp["ppid"] = p.PPID`, `lp["ppid"] = p.PID`),
		Pkg:   "./event", Run: "TestClassic",
	},
	{
		Name: "event-ecs-inbound-direction", File: "event/event.go",
		Edits: one(`network["direction"] = "ingress"`, `network["direction"] = "egress"`),
		Pkg:   "./event", Run: "TestECSInbound",
	},
	{
		Name: "event-ecs-inbound-source", File: "event/event.go",
		Edits: one(`f["source"], f["client"] = remote, remote.Clone()`, `f["source"], f["client"] = local, local.Clone()`),
		Pkg:   "./event", Run: "TestECSInbound",
	},
	{
		Name: "event-process-uid-delivered", File: "event/event.go",
		Edits: one(`lp["uid"] = p.UID`, `lp["uid"] = p.UID + 1`),
		Pkg:   "./tests", Run: "TestRedisOutput", Slow: true,
	},

	// Outputs: retries and acknowledgements.
	{
		Name: "http-5xx-dropped", File: "outputs/http/client.go",
		Edits: one("\t\tbatch.Retry()\n\t\tif status/100 == 3 {", "\t\tbatch.Drop()\n\t\tif status/100 == 3 {"),
		Pkg:   "./outputs/http", Run: "TestRetriesUntilAccepted",
	},
	{
		Name: "http-connection-error-dropped", File: "outputs/http/client.go",
		Edits: one("\t\tc.observer.RetryableErrors(n)\n\t\tbatch.Retry()\n\t\treturn fmt.Errorf(\"sending", "\t\tc.observer.RetryableErrors(n)\n\t\tbatch.Drop()\n\t\treturn fmt.Errorf(\"sending"),
		Pkg:   "./outputs/http", Run: "TestConnectionErrorRetried",
	},
	{
		Name: "amqp-nack-acked", File: "outputs/amqp/client.go",
		Edits: one("if p.confirm.Acked() {", "if true || p.confirm.Acked() {"),
		Pkg:   "./outputs/amqp", Run: "TestNackedEventsRetried", Slow: true,
	},
	{
		Name: "amqp-unconfirmed-acked", File: "outputs/amqp/client.go",
		Edits: one("\tif len(retry) == 0 {\n\t\tbatch.ACK()", "\tif true {\n\t\tbatch.ACK()"),
		Pkg:   "./outputs/amqp", Run: "TestUnconfirmedNotAcked", Slow: true,
	},
	{
		Name: "zeromq-pub-publish-waits", File: "outputs/zeromq/client.go",
		Edits: one("if !p.offer(e.msg) {", "if _, err := p.write([]message{e.msg}); err != nil {"),
		Pkg:   "./outputs/zeromq", Run: "TestPubStalledSubscriber/publish_does_not_wait",
	},
	{
		Name: "zeromq-push-no-peer-dropped", File: "outputs/zeromq/client.go",
		Edits: one("\t\t\tbatch.RetryEvents(rest)\n", "\t\t\tbatch.Drop()\n"),
		Pkg:   "./outputs/zeromq", Run: "TestPushHoldsWithoutPeer",
	},
	{
		Name: "handoff-waits-while-stalled", File: "beater/handoff.go",
		Edits: one("\tif h.stalled {\n", "\tif false && h.stalled {\n"),
		Pkg:   "./beater", Run: "TestHandoffDropsWhileStalled",
	},
	{
		Name: "shutdown-skips-flush", File: "beater/shutdown.go",
		Edits: one("\tif !ok {\n\t\treturn nil\n\t}\n\tdone := make(chan error, 1)", "\tif !ok || true {\n\t\treturn nil\n\t}\n\tdone := make(chan error, 1)"),
		Pkg:   "./tests", Run: "TestShutdownFlushes", Slow: true,
	},

	// Redaction of command lines.
	{
		Name: "redact-flag-value", File: "procs/redact/redact.go",
		Edits: one("mask(idx, from, to)", "_, _ = from, to"),
		Pkg:   "./procs/redact", Run: "TestCredentials",
	},
	{
		Name: "redact-url-password", File: "procs/redact/text.go",
		Edits: one("`[A-Za-z][A-Za-z0-9+.-]*://[^\\s/?#@:]*:`", "`NEVER://[^\\s/?#@:]*:`"),
		Pkg:   "./procs/redact", Run: "TestCredentials",
	},

	// Container identity and local peers.
	{
		Name: "container-last-component-only", File: "procs/container/container.go",
		Edits: one("\t\tpath = parents\n", "\t\tpath = \"\"\n"),
		Pkg:   "./procs/container", Run: "TestParse",
	},
	{
		Name: "container-not-read", File: "procs/process.go",
		Edits: one("\tp.Container = m.container(key.pid)\n", "\n"),
		Pkg:   "./procs", Run: "TestContainerFromCgroup|TestContainerKernelCgroups",
	},
	{
		Name: "peers-same-end", File: "peers/peers.go",
		Edits: one("k := keyOf(&r.Socket).swap()\n\t\tif j, ok := l.same[k]; ok {", "k := keyOf(&r.Socket)\n\t\tif j, ok := l.same[k]; ok {"),
		Pkg:   "./peers", Run: "TestLink",
	},
	{
		Name: "peers-reports-same-end", File: "peers/peers.go",
		Edits: one("k := keyOf(&r.Socket).swap()\n\t\twanted[i].same", "k := keyOf(&r.Socket)\n\t\twanted[i].same"),
		Pkg:   "./peers", Run: "TestLinkReportsAsLink",
	},
	{
		Name: "peers-loopback-crosses-namespaces", File: "peers/peers.go",
		Edits: one("return !s.LocalIP.IsLoopback() && !s.RemoteIP.IsLoopback()", "return true"),
		Pkg:   "./peers", Run: "TestLink",
	},
}
