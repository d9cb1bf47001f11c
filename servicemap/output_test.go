package servicemap

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connbeat/connbeat/internal/testkit"
)

func TestWriteDOT(t *testing.T) {
	g := *recorded
	g.Edges = append([]Edge(nil), recorded.Edges...)
	g.Edges[1].Bytes = 3 << 20
	var b bytes.Buffer
	require.NoError(t, WriteDOT(&b, &g, `a "map"`))
	assert.Equal(t, `digraph connbeat {
  graph [rankdir=LR, fontname="Helvetica", fontsize=12, labelloc=t, label="a \"map\""];
  node [shape=box, style="rounded,filled", fillcolor="#e8f0fe", color="#4a6fa5", fontname="Helvetica", fontsize=10];
  edge [fontname="Helvetica", fontsize=9, color="#555555", arrowsize=0.7];
  subgraph cluster_0 {
    label="host app"; style="rounded"; color="#888888"; fontsize=11;
    n0 [label="api\n:8080"];
    n1 [label="db\n:5432"];
    n2 [label="worker"];
  }
  subgraph cluster_1 {
    label="host edge"; style="rounded"; color="#888888"; fontsize=11;
    n3 [label="client"];
  }
  n4 [label="192.0.2.30", shape=ellipse, fillcolor="#f4f4f4", color="#999999"];
  n2 -> n1 [label=":5432\n2 conns", penwidth=2.0, weight=2];
  n3 -> n0 [label=":8080\n3 conns, 3.0 MiB", penwidth=2.6, weight=3];
  n3 -> n4 [label=":443\n1 conn", penwidth=1.0, weight=1, style=dashed];
}
`, b.String())
}

// TestDOTContainersAndHostileNames: containers are clusters inside their
// host; quotes, backslashes and control characters in names cannot break
// out of a DOT string.
func TestDOTContainersAndHostileNames(t *testing.T) {
	m := New(DefaultLimits)
	m.Add([]byte(`{"host":{"name":"h\"}"},"container":{"name":"web"},"connbeat":{"direction":"outbound"},` +
		`"local_ip":"127.0.0.1","local_port":1,"remote_ip":"127.0.0.1","remote_port":80,"local_process":{"name":"a\\\"b\n}c"}}`))
	var b bytes.Buffer
	require.NoError(t, WriteDOT(&b, m.Graph(), "t"))
	assert.Contains(t, b.String(), `label="host h\"}"; style="rounded"`)
	assert.Contains(t, b.String(), `label="container web"; style="dashed"`)
	assert.Contains(t, b.String(), `[label="a\\\"b}c"]`)

	if _, err := exec.LookPath("dot"); err == nil {
		out, err := RenderSVG(context.Background(), b.Bytes())
		require.NoError(t, err, "dot parses it")
		assert.True(t, bytes.HasPrefix(out, []byte("<svg")))
	}
}

// TestHTMLWithGraphviz: the page holds the map as inline SVG, laid out by
// Graphviz, and the edges as a table.
func TestHTMLWithGraphviz(t *testing.T) {
	testkit.RequireTool(t, "dot")
	var b bytes.Buffer
	require.NoError(t, WriteHTML(context.Background(), &b, recorded, "the map", "read 3 events"))
	page := b.String()
	assert.True(t, strings.HasPrefix(page, "<!DOCTYPE html>"))
	assert.NotContains(t, page, "<?xml", "inline SVG, no prolog")
	assert.Contains(t, page, "<svg")
	assert.Contains(t, page, ">client</text>")
	assert.Contains(t, page, "<td>edge / client</td><td>app / api</td><td>:8080</td><td class=\"n\">3</td>")
	assert.NotContains(t, page, "<script", "self-contained and static")
	for _, ref := range []string{"src=", "href=", "<link", "@import"} {
		assert.NotContains(t, page, ref, "no outside resources")
	}
}

// TestHTMLWithoutGraphviz: without dot(1) the page carries the DOT source.
func TestHTMLWithoutGraphviz(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	var b bytes.Buffer
	require.NoError(t, WriteHTML(context.Background(), &b, recorded, "the map", "read 3 events"))
	page := b.String()
	assert.NotContains(t, page, "<svg")
	assert.Contains(t, page, "apt-get install graphviz")
	assert.Contains(t, page, "<pre>digraph connbeat {")
	assert.Contains(t, page, `n3 -&gt; n0 [label=&#34;:8080\n3 conns&#34;`, "the DOT is escaped into the page")
}
