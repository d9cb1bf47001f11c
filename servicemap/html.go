package servicemap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html/template"
	"io"
	"os/exec"
	"time"
)

// renderTimeout bounds Graphviz's layout of a very large map.
const renderTimeout = 2 * time.Minute

// RenderSVG lays the DOT out with Graphviz's dot(1). It returns
// exec.ErrNotFound (wrapped) when Graphviz is not installed.
func RenderSVG(ctx context.Context, dot []byte) ([]byte, error) {
	bin, err := exec.LookPath("dot")
	if err != nil {
		return nil, fmt.Errorf("graphviz (Debian package graphviz): %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, renderTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "-Tsvg")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(dot), &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("dot -Tsvg: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	svg := stdout.Bytes()
	// Inline SVG needs no XML prolog or doctype.
	if i := bytes.Index(svg, []byte("<svg")); i >= 0 {
		svg = svg[i:]
	}
	return svg, nil
}

// WriteHTML writes a self-contained page: the map as inline SVG when
// Graphviz is installed (the DOT source otherwise, with a word on how to
// render it), then the edges as a table. It fails only when writing does,
// or when dot is installed and fails.
func WriteHTML(ctx context.Context, w io.Writer, g *Graph, title, summary string) error {
	var dot bytes.Buffer
	if err := WriteDOT(&dot, g, title); err != nil {
		return err
	}
	page := htmlPage{Title: title, Summary: summary, Graph: g}
	svg, err := RenderSVG(ctx, dot.Bytes())
	switch {
	case err == nil:
		page.SVG = template.HTML(svg) // dot's output of labels quote() escaped
	case errors.Is(err, exec.ErrNotFound):
		page.DOT = dot.String()
	default:
		return err
	}
	return pageTemplate.Execute(w, page)
}

type htmlPage struct {
	Title, Summary string
	SVG            template.HTML
	DOT            string
	Graph          *Graph
}

var pageTemplate = template.Must(template.New("map").Funcs(template.FuncMap{
	"node": func(n Node) string {
		if n.Host == "" {
			return n.Label()
		}
		s := n.Host + " / "
		if n.Container != "" {
			s += n.Container + " / "
		}
		return s + n.Label()
	},
	"ports": func(p []Port) string { return portList(p, " ") },
	"bytes": func(n uint64) string {
		if n == 0 {
			return "-"
		}
		return bytesLabel(n)
	},
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{.Title}}</title>
<style>
body { font-family: Helvetica, Arial, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; margin: 0 0 .2em; }
p.summary { color: #555; margin: 0 0 1em; }
.map { overflow: auto; border: 1px solid #ddd; padding: .5em; background: #fff; }
.map svg { max-width: 100%; height: auto; }
pre { background: #f6f6f6; padding: 1em; overflow: auto; }
table { border-collapse: collapse; margin-top: 1em; font-size: .9em; }
th, td { border-bottom: 1px solid #e4e4e4; padding: .25em .8em; text-align: left; }
td.n { text-align: right; }
</style>
</head>
<body>
<h1>{{.Title}}</h1>
<p class="summary">{{.Summary}}</p>
<div class="map">
{{if .SVG}}{{.SVG}}{{else}}<p>Graphviz is not installed here (Debian: <code>apt-get install graphviz</code>), so the map is its DOT source: render it with <code>dot -Tsvg</code>.</p>
<pre>{{.DOT}}</pre>{{end}}
</div>
<table>
<tr><th>client</th><th>server</th><th>ports</th><th>connections</th><th>bytes</th><th>seen from</th></tr>
{{range .Graph.Edges}}<tr><td>{{node .From}}</td><td>{{node .To}}</td><td>{{ports .Ports}}</td><td class="n">{{.Connections}}</td><td class="n">{{bytes .Bytes}}</td><td>{{if .BothEnds}}both ends{{else}}one end{{end}}</td></tr>
{{end}}</table>
</body>
</html>
`))
