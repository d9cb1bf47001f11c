package servicemap

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
)

// scopedIP is an address as the map tells hosts apart by it: loopback,
// link-local and unspecified addresses mean something only on their own
// host, so they carry the host's name; every other address is global.
type scopedIP struct {
	host string
	ip   netip.Addr
}

func scope(host string, ip netip.Addr) scopedIP {
	if ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsUnspecified() {
		return scopedIP{host, ip}
	}
	return scopedIP{ip: ip}
}

// Node is a process (or container) on a host, a host whose process is not
// known, or an address outside every host that reported.
type Node struct {
	Host      string // "" for an outside address
	Container string
	Process   string // "" for a host's unknown processes
	Addr      string // an outside node's address
}

// Label is how the node shows on the map.
func (n Node) Label() string {
	switch {
	case n.Addr != "":
		return n.Addr
	case n.Process == "":
		return "(unknown process)"
	}
	return n.Process
}

// Port is a server port and its transport.
type Port struct {
	Transport string
	Number    uint16
}

// String is ":80" for TCP, "udp:53" for another transport.
func (p Port) String() string {
	if p.Transport == "tcp" {
		return fmt.Sprintf(":%d", p.Number)
	}
	return fmt.Sprintf("%s:%d", p.Transport, p.Number)
}

func comparePorts(a, b Port) int {
	return cmp.Or(cmp.Compare(a.Transport, b.Transport), cmp.Compare(a.Number, b.Number))
}

// Edge is a client node's connections to a server node.
type Edge struct {
	From, To Node
	Ports    []Port // the server ports, by transport then number
	// Connections is the sum, over the reports merged into the edge, of
	// the most sockets one report carried: the peak of concurrent
	// connections, not a count of connections ever opened.
	Connections int
	Bytes       uint64 // 0 when no event carried byte counts
	Reports     int    // events that gave the edge its weight
	// BothEnds is set when the server's host reported the connections
	// too (inbound): the edge is the two hosts' reports merged.
	BothEnds bool
}

// Graph is a service map.
type Graph struct {
	Nodes []Node // by host, container, process, address
	Edges []Edge // by From, To
	// Listens lists each node's listening ports.
	Listens map[Node][]Port
}

// convKey is one client address talking to one server address and port:
// the outbound report on the client's host and the inbound report on the
// server's describe the same connections.
type convKey struct {
	client, server scopedIP
	port           Port
}

// side is what the reports of one end of a conversation, from one node,
// add up to.
type side struct {
	node    Node
	sockets int // the most one report carried
	bytes   uint64
	reports int
}

func (s *side) add(r *report) {
	s.sockets = max(s.sockets, r.sockets)
	s.bytes = max(s.bytes, r.bytes)
	s.reports++
}

type listenKey struct {
	at   scopedIP
	port Port
}

// builder accumulates reports; Graph resolves them into nodes and edges.
type builder struct {
	maxKeys   int
	keys      int
	clients   map[convKey]map[Node]*side // outbound reports
	servers   map[convKey]map[Node]*side // inbound reports
	listeners map[listenKey]Node
	wildcard  map[string]map[Port]Node // host -> port -> listener on any address
	hostOf    map[netip.Addr]string    // global addresses of the reporting hosts
}

func newBuilder(maxKeys int) *builder {
	return &builder{
		maxKeys:   maxKeys,
		clients:   map[convKey]map[Node]*side{},
		servers:   map[convKey]map[Node]*side{},
		listeners: map[listenKey]Node{},
		wildcard:  map[string]map[Port]Node{},
		hostOf:    map[netip.Addr]string{},
	}
}

// add takes one report; it returns false, and drops the report, when the
// report would make a new key past maxKeys.
func (b *builder) add(r *report) bool {
	full := b.keys >= b.maxKeys
	for _, ip := range append(r.hostIPs, r.local.Addr()) {
		if _, known := b.hostOf[ip]; !known && scope(r.host, ip).host == "" && !full {
			b.hostOf[ip] = r.host
			b.keys++
		}
	}
	n := Node{Host: r.host, Container: r.container, Process: r.process}
	if r.dir == "listening" {
		port := Port{r.transport, r.local.Port()}
		if r.local.Addr().IsUnspecified() {
			ports := b.wildcard[r.host]
			if ports == nil {
				ports = map[Port]Node{}
				b.wildcard[r.host] = ports
			}
			return put(b, ports, port, n)
		}
		return put(b, b.listeners, listenKey{scope(r.host, r.local.Addr()), port}, n)
	}
	k := convKey{client: scope(r.host, r.local.Addr()), server: scope(r.host, r.remote.Addr()), port: Port{r.transport, r.remote.Port()}}
	sides := b.clients
	if r.dir == "inbound" {
		k = convKey{client: scope(r.host, r.remote.Addr()), server: scope(r.host, r.local.Addr()), port: Port{r.transport, r.local.Port()}}
		sides = b.servers
	}
	nodes := sides[k]
	if nodes == nil {
		if full {
			return false
		}
		nodes = map[Node]*side{}
		sides[k] = nodes
	}
	s := nodes[n]
	if s == nil {
		if full {
			return false
		}
		s = &side{node: n}
		nodes[n] = s
		b.keys++
	}
	s.add(r)
	return true
}

// put sets m[k] = n, unless k is new and the builder is full.
func put[K comparable](b *builder, m map[K]Node, k K, n Node) bool {
	if _, ok := m[k]; !ok {
		if b.keys >= b.maxKeys {
			return false
		}
		b.keys++
	}
	m[k] = n
	return true
}

// graph resolves every conversation into an edge between two nodes. A
// conversation seen from both hosts is one edge, weighed from the client's
// reports; a server seen only as an address is found among the listeners
// and the reporting hosts' addresses before it is drawn as outside.
func (b *builder) graph() *Graph {
	type edgeKey struct{ from, to Node }
	edges := map[edgeKey]*Edge{}
	connect := func(from, to Node, port Port, s *side, both bool) {
		e := edges[edgeKey{from, to}]
		if e == nil {
			e = &Edge{From: from, To: to}
			edges[edgeKey{from, to}] = e
		}
		if !slices.Contains(e.Ports, port) {
			e.Ports = append(e.Ports, port)
		}
		e.Connections += s.sockets
		e.Bytes += s.bytes
		e.Reports += s.reports
		e.BothEnds = e.BothEnds || both
	}
	for k, clients := range b.clients {
		server := b.serverNode(k)
		_, both := b.servers[k]
		for _, c := range clients {
			connect(c.node, server, k.port, c, both)
		}
	}
	for k, servers := range b.servers {
		if _, both := b.clients[k]; both {
			continue // weighed from the client's reports above
		}
		client := b.clientNode(k)
		for _, s := range servers {
			node := s.node
			if node.Process == "" {
				// A socket no process holds (TIME_WAIT) is the
				// listener's.
				node = b.listenerNode(k.server, k.port)
			}
			connect(client, node, k.port, s, false)
		}
	}

	g := &Graph{Listens: map[Node][]Port{}}
	nodes := map[Node]bool{}
	for _, e := range edges {
		slices.SortFunc(e.Ports, comparePorts)
		g.Edges = append(g.Edges, *e)
		nodes[e.From], nodes[e.To] = true, true
	}
	listen := func(n Node, port Port) {
		nodes[n] = true
		if !slices.Contains(g.Listens[n], port) {
			g.Listens[n] = append(g.Listens[n], port)
		}
	}
	for k, n := range b.listeners {
		listen(n, k.port)
	}
	for _, ports := range b.wildcard {
		for port, n := range ports {
			listen(n, port)
		}
	}
	for n := range g.Listens {
		slices.SortFunc(g.Listens[n], comparePorts)
	}
	for n := range nodes {
		g.Nodes = append(g.Nodes, n)
	}
	slices.SortFunc(g.Nodes, compareNodes)
	slices.SortFunc(g.Edges, func(a, b Edge) int {
		return cmp.Or(compareNodes(a.From, b.From), compareNodes(a.To, b.To))
	})
	return g
}

// serverNode is the process that accepted the conversation's connections:
// the one whose host reported them inbound (the busiest, if several did),
// else the listener on that address and port, else the host that has the
// address, else the address.
func (b *builder) serverNode(k convKey) Node {
	var best *side
	for _, s := range b.servers[k] {
		if s.node.Process != "" && (best == nil || s.sockets > best.sockets ||
			(s.sockets == best.sockets && compareNodes(s.node, best.node) < 0)) {
			best = s
		}
	}
	if best != nil {
		return best.node
	}
	return b.listenerNode(k.server, k.port)
}

// listenerNode is the process listening on at:port, else the host that
// has the address, else the address.
func (b *builder) listenerNode(at scopedIP, port Port) Node {
	if n, ok := b.listeners[listenKey{at, port}]; ok {
		return n
	}
	host := b.hostFor(at)
	if host == "" {
		return Node{Addr: at.ip.String()}
	}
	if n, ok := b.wildcard[host][port]; ok {
		return n
	}
	return Node{Host: host}
}

// clientNode is the client of a conversation that only the server's host
// reported: that host's unknown process when the address is a reporting
// host's, else the address.
func (b *builder) clientNode(k convKey) Node {
	if host := b.hostFor(k.client); host != "" {
		return Node{Host: host}
	}
	return Node{Addr: k.client.ip.String()}
}

// hostFor names the reporting host that has the address, or "".
func (b *builder) hostFor(a scopedIP) string {
	if a.host != "" {
		return a.host
	}
	return b.hostOf[a.ip]
}

func compareNodes(a, b Node) int {
	// Outside addresses last.
	if (a.Host == "") != (b.Host == "") {
		if a.Host == "" {
			return 1
		}
		return -1
	}
	return cmp.Or(cmp.Compare(a.Host, b.Host), cmp.Compare(a.Container, b.Container),
		cmp.Compare(a.Process, b.Process), cmp.Compare(a.Addr, b.Addr))
}

// Hosts is how many reporting hosts the map shows.
func (g *Graph) Hosts() int {
	hosts := map[string]bool{}
	for _, n := range g.Nodes {
		if n.Host != "" {
			hosts[n.Host] = true
		}
	}
	return len(hosts)
}
