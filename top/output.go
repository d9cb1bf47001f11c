package top

import (
	"encoding/json"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteTable writes one plain table for scripts: a header line, then the
// listeners (DIR listen) and the edges, with the full-screen view's edge
// columns, separated by at least two spaces.
func WriteTable(w io.Writer, edges, listeners []Row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	titles := make([]string, len(edgeColumns))
	for i, c := range edgeColumns {
		titles[i] = c.title
	}
	write := func(cells []string) {
		_, _ = io.WriteString(tw, strings.Join(cells, "\t")+"\n")
	}
	write(titles)
	for _, rows := range [][]Row{listeners, edges} {
		for i := range rows {
			write(cells(edgeColumns, &rows[i]))
		}
	}
	return tw.Flush()
}

func cells(cols []*column, r *Row) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = c.cell(r)
	}
	return out
}

// The JSON shapes: one object a poll, for tools.
type (
	jsonSnapshot struct {
		Time      time.Time      `json:"time"`
		Source    string         `json:"source"`
		Sockets   int            `json:"sockets"`
		Edges     []jsonEdge     `json:"edges"`
		Listeners []jsonListener `json:"listeners"`
	}
	jsonProcess struct {
		PID  int32  `json:"pid"`
		Name string `json:"name"`
	}
	jsonEndpoint struct {
		IP   string `json:"ip"`
		Port uint16 `json:"port,omitempty"`
	}
	// jsonWhere is where a row's sockets live; empty while unknown.
	jsonWhere struct {
		Process   *jsonProcess `json:"process"` // null when no owner could be read
		Container string       `json:"container,omitempty"`
		NetNS     uint64       `json:"netns,omitempty"`
		Transport string       `json:"transport"`
	}
	jsonEdge struct {
		jsonWhere
		Direction   string       `json:"direction"`
		Local       jsonEndpoint `json:"local"`
		Remote      jsonEndpoint `json:"remote"`
		Sockets     int          `json:"sockets"`
		ConnsPerSec Rate         `json:"connections_per_sec"`
		BytesPerSec Rate         `json:"bytes_per_sec"`
	}
	jsonListener struct {
		jsonWhere
		Local   jsonEndpoint `json:"local"`
		Sockets int          `json:"sockets"`
		Clients int          `json:"clients"`
	}
)

// WriteJSON writes the snapshot's selected rows as one JSON object on one
// line.
func WriteJSON(w io.Writer, s *Snapshot, edges, listeners []Row) error {
	out := jsonSnapshot{Time: s.Time.UTC(), Source: s.Source, Sockets: s.Sockets,
		Edges: make([]jsonEdge, len(edges)), Listeners: make([]jsonListener, len(listeners))}
	for i := range edges {
		r := &edges[i]
		out.Edges[i] = jsonEdge{jsonWhere: whereOf(r), Direction: r.Direction.String(),
			Local: endpointOf(r.Local), Remote: endpointOf(r.Remote), Sockets: r.Sockets,
			ConnsPerSec: r.ConnsPerSec, BytesPerSec: r.BytesPerSec}
	}
	for i := range listeners {
		r := &listeners[i]
		out.Listeners[i] = jsonListener{jsonWhere: whereOf(r), Local: endpointOf(r.Local),
			Sockets: r.Sockets, Clients: r.Clients}
	}
	return json.NewEncoder(w).Encode(out)
}

func whereOf(r *Row) jsonWhere {
	w := jsonWhere{Container: r.Container, NetNS: r.NetNS, Transport: r.Transport.String()}
	if r.Process.PID != 0 {
		w.Process = &jsonProcess{PID: r.Process.PID, Name: r.Process.Name}
	}
	return w
}

func endpointOf(e Endpoint) jsonEndpoint {
	return jsonEndpoint{IP: e.IP.String(), Port: e.Port}
}
