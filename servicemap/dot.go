package servicemap

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"strings"
)

// WriteDOT writes g as a Graphviz digraph: a cluster per host (and per
// container inside it), outside addresses on their own, edges labelled with
// their ports and connections and drawn thicker for more connections.
// Edges that only one end reported are dashed. title goes on top.
func WriteDOT(w io.Writer, g *Graph, title string) error {
	bw := bufio.NewWriter(w)
	p := func(format string, args ...any) { fmt.Fprintf(bw, format, args...) }
	p("digraph connbeat {\n")
	p("  graph [rankdir=LR, fontname=\"Helvetica\", fontsize=12, labelloc=t, label=%s];\n", quote(title))
	p("  node [shape=box, style=\"rounded,filled\", fillcolor=\"#e8f0fe\", color=\"#4a6fa5\", fontname=\"Helvetica\", fontsize=10];\n")
	p("  edge [fontname=\"Helvetica\", fontsize=9, color=\"#555555\", arrowsize=0.7];\n")

	ids := make(map[Node]string, len(g.Nodes))
	for i, n := range g.Nodes {
		ids[n] = fmt.Sprintf("n%d", i)
	}
	// Nodes are sorted by host then container, so each cluster is a run.
	cluster := 0
	for i := 0; i < len(g.Nodes); {
		host := g.Nodes[i].Host
		if host == "" {
			for ; i < len(g.Nodes); i++ {
				n := g.Nodes[i]
				p("  %s [label=%s, shape=ellipse, fillcolor=\"#f4f4f4\", color=\"#999999\"];\n", ids[n], quote(n.Label()))
			}
			break
		}
		p("  subgraph cluster_%d {\n    label=%s; style=\"rounded\"; color=\"#888888\"; fontsize=11;\n", cluster, quote("host "+host))
		cluster++
		for i < len(g.Nodes) && g.Nodes[i].Host == host {
			container := g.Nodes[i].Container
			indent := "    "
			if container != "" {
				p("    subgraph cluster_%d {\n      label=%s; style=\"dashed\"; color=\"#aaaaaa\";\n", cluster, quote("container "+container))
				cluster++
				indent = "      "
			}
			for ; i < len(g.Nodes) && g.Nodes[i].Host == host && g.Nodes[i].Container == container; i++ {
				n := g.Nodes[i]
				label := n.Label()
				if ports := g.Listens[n]; len(ports) > 0 {
					label += "\n" + portList(ports, " ")
				}
				style := ""
				if n.Process == "" {
					style = ", fillcolor=\"#fdf3e1\", color=\"#b58a3c\""
				}
				p("%s%s [label=%s%s];\n", indent, ids[n], quote(label), style)
			}
			if container != "" {
				p("    }\n")
			}
		}
		p("  }\n")
	}
	for _, e := range g.Edges {
		label := portList(e.Ports, ",") + "\n" + plural(e.Connections, "conn")
		if e.Bytes > 0 {
			label += ", " + bytesLabel(e.Bytes)
		}
		style := ""
		if !e.BothEnds {
			style = ", style=dashed"
		}
		p("  %s -> %s [label=%s, penwidth=%.1f, weight=%d%s];\n",
			ids[e.From], ids[e.To], quote(label), penWidth(e.Connections), max(e.Connections, 1), style)
	}
	p("}\n")
	return bw.Flush()
}

// quote makes s a DOT string; \n in s becomes a centred line break.
func quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

func portList(ports []Port, sep string) string {
	parts := make([]string, len(ports))
	for i, p := range ports {
		parts[i] = p.String()
	}
	return strings.Join(parts, sep)
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func bytesLabel(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// penWidth grows with the log of the connections: 1 for one, 8 at most.
func penWidth(conns int) float64 {
	return math.Min(1+math.Log2(float64(max(conns, 1))), 8)
}
