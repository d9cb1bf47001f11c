package servicemap

import (
	"bytes"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The recorded run (tools/record-map-events.sh): on host edge, client holds
// 3 connections to api on host app and 1 to 192.0.2.30:443, where no agent
// runs; on app, worker holds 2 to db on 127.0.0.1.
var (
	api    = Node{Host: "app", Process: "api"}
	db     = Node{Host: "app", Process: "db"}
	worker = Node{Host: "app", Process: "worker"}
	client = Node{Host: "edge", Process: "client"}
	ext    = Node{Addr: "192.0.2.30"}

	recorded = &Graph{
		Nodes: []Node{api, db, worker, client, ext},
		Edges: []Edge{
			{From: worker, To: db, Ports: tcp(5432), Connections: 2, BothEnds: true},
			{From: client, To: api, Ports: tcp(8080), Connections: 3, BothEnds: true},
			{From: client, To: ext, Ports: tcp(443), Connections: 1},
		},
		Listens: map[Node][]Port{api: tcp(8080), db: tcp(5432)},
	}
)

func tcp(port uint16) []Port { return []Port{{"tcp", port}} }

func readFiles(t *testing.T, files ...string) *Map {
	t.Helper()
	m := New(DefaultLimits)
	for _, f := range files {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		require.NoError(t, m.ReadLines(bytes.NewReader(data)))
	}
	return m
}

// withoutReports drops the report counts, which depend on how long the
// agents ran.
func withoutReports(t *testing.T, g *Graph) *Graph {
	t.Helper()
	for i := range g.Edges {
		require.Positive(t, g.Edges[i].Reports)
		g.Edges[i].Reports = 0
	}
	return g
}

// TestRecordedRun reads the events of a real two-host run in each format,
// and both at once: the same map, where the outbound events of edge and the
// inbound events of app make one edge each, and loopback on app stays on app.
func TestRecordedRun(t *testing.T) {
	for name, files := range map[string][]string{
		"classic": {"testdata/classic.ndjson"},
		"ecs":     {"testdata/ecs.ndjson"},
		"both":    {"testdata/classic.ndjson", "testdata/ecs.ndjson"},
	} {
		t.Run(name, func(t *testing.T) {
			m := readFiles(t, files...)
			assert.Zero(t, m.Skipped(), m.Summary())
			assert.Positive(t, m.Events())
			assert.Equal(t, recorded, withoutReports(t, m.Graph()))
		})
	}
}

// TestMergeNeedsBothEnds: each host's events alone give its own view; the
// edge between them is the same edge once both are read.
func TestMergeNeedsBothEnds(t *testing.T) {
	edgeOnly, appOnly := New(DefaultLimits), New(DefaultLimits)
	data, err := os.ReadFile("testdata/classic.ndjson")
	require.NoError(t, err)
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		if bytes.Contains(line, []byte(`"host":{"name":"edge"}`)) {
			edgeOnly.Add(line)
		} else {
			appOnly.Add(line)
		}
	}
	require.Positive(t, edgeOnly.Events())
	require.Positive(t, appOnly.Events())

	// From edge alone, api is only an address and port.
	g := withoutReports(t, edgeOnly.Graph())
	assert.Equal(t, []Edge{
		{From: client, To: Node{Addr: "192.0.2.20"}, Ports: tcp(8080), Connections: 3},
		{From: client, To: ext, Ports: tcp(443), Connections: 1},
	}, g.Edges)
	// From app alone, its client is only an address.
	g = withoutReports(t, appOnly.Graph())
	assert.Contains(t, g.Edges, Edge{From: Node{Addr: "192.0.2.10"}, To: api, Ports: tcp(8080), Connections: 3})
}

func TestUnownedInboundGoesToListener(t *testing.T) {
	m := New(DefaultLimits)
	m.Add([]byte(`{"host":{"name":"h"},"connbeat":{"direction":"listening","sockets":1},"local_ip":"0.0.0.0","local_port":80,"local_process":{"name":"nginx"}}`))
	// A TIME_WAIT socket: no process.
	m.Add([]byte(`{"host":{"name":"h"},"connbeat":{"direction":"inbound","sockets":4},"local_ip":"198.51.100.1","local_port":80,"remote_ip":"203.0.113.9","remote_port":5000}`))
	nginx := Node{Host: "h", Process: "nginx"}
	assert.Equal(t, []Edge{{From: Node{Addr: "203.0.113.9"}, To: nginx, Ports: tcp(80), Connections: 4, Reports: 1}}, m.Graph().Edges)
}

// TestTransportsApart: a UDP conversation on a port is not the TCP one on
// the same port; the edge carries both, labelled apart.
func TestTransportsApart(t *testing.T) {
	m := New(DefaultLimits)
	for _, transport := range []string{"tcp", "udp"} {
		m.Add([]byte(`{"host":{"name":"h"},"connbeat":{"direction":"outbound","sockets":2},"network":{"transport":"` + transport +
			`"},"source":{"ip":"198.51.100.1","port":5000},"destination":{"ip":"198.51.100.2","port":53},"process":{"name":"resolver"}}`))
	}
	g := m.Graph()
	require.Len(t, g.Edges, 1)
	assert.Equal(t, []Port{{"tcp", 53}, {"udp", 53}}, g.Edges[0].Ports)
	assert.Equal(t, 4, g.Edges[0].Connections)
	assert.Equal(t, ":53 udp:53", portList(g.Edges[0].Ports, " "))
}

// TestTransportsApartClassic: classic events say udp in their transport
// field (and nothing on TCP ones).
func TestTransportsApartClassic(t *testing.T) {
	m := New(DefaultLimits)
	for _, transport := range []string{``, `"transport":"udp",`} {
		m.Add([]byte(`{"host":{"name":"h"},"connbeat":{"direction":"outbound","sockets":2},` + transport +
			`"local_ip":"198.51.100.1","local_port":5000,"remote_ip":"198.51.100.2","remote_port":53,"local_process":{"name":"resolver"}}`))
	}
	g := m.Graph()
	require.Len(t, g.Edges, 1)
	assert.Equal(t, []Port{{"tcp", 53}, {"udp", 53}}, g.Edges[0].Ports)
}
