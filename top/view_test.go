package top

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connbeat/connbeat/model"
)

func TestFilter(t *testing.T) {
	var a Aggregator
	s := a.Add(fixture(), "netlink", time.Unix(1000, 0))
	tests := []struct {
		filter          string
		edges, listened []string // PROCESS DIR REMOTE of the rows left, in order
	}{
		{"", []string{"curl[20] out 127.0.0.1:80", "nginx[10] in 127.0.0.2", "? in 127.0.0.1"}, []string{"nginx[10] listen -", "nginx[10] listen -"}},
		{"proc:NGI", []string{"nginx[10] in 127.0.0.2"}, []string{"nginx[10] listen -", "nginx[10] listen -"}},
		{"proc:20", []string{"curl[20] out 127.0.0.1:80"}, nil},
		{"pid:10 dir:in", []string{"nginx[10] in 127.0.0.2"}, nil},
		{"dir:listen", nil, []string{"nginx[10] listen -", "nginx[10] listen -"}},
		{"dir:outbound", []string{"curl[20] out 127.0.0.1:80"}, nil},
		{"port:9000", nil, []string{"nginx[10] listen -"}},
		{"port:80 dir:in", []string{"nginx[10] in 127.0.0.2", "? in 127.0.0.1"}, nil},
		{"127.0.0.2", []string{"curl[20] out 127.0.0.1:80", "nginx[10] in 127.0.0.2"}, nil},
		{"ns:4026531840", nil, nil},
		{"ns:-", []string{"curl[20] out 127.0.0.1:80", "nginx[10] in 127.0.0.2", "? in 127.0.0.1"}, []string{"nginx[10] listen -", "nginx[10] listen -"}},
	}
	for _, tt := range tests {
		t.Run(tt.filter, func(t *testing.T) {
			v, err := NewView(tt.filter, "sockets", false)
			require.NoError(t, err)
			edges, listeners := v.Rows(&s)
			assert.Equal(t, tt.edges, summary(edges), "edges")
			assert.Equal(t, tt.listened, summary(listeners), "listeners")
		})
	}
}

func summary(rows []Row) []string {
	var out []string
	for i := range rows {
		r := &rows[i]
		out = append(out, r.Process.String()+" "+colDir.cell(r)+" "+r.Remote.String())
	}
	return out
}

func TestFilterErrors(t *testing.T) {
	for filter, want := range map[string]string{
		"port:http":  `filter "port:http": strconv.ParseUint: parsing "http": invalid syntax`,
		"port:70000": `filter "port:70000": strconv.ParseUint: parsing "70000": value out of range`,
		"dir:up":     `filter "dir:up": not in, out or listen`,
		"user:root":  `filter "user:root": unknown key "user" (proc, pid, port, dir, ns)`,
	} {
		_, err := ParseFilter(filter)
		assert.EqualError(t, err, want)
	}
	_, err := NewView("", "age", false)
	assert.EqualError(t, err, `unknown sort column "age" (one of process, ns, dir, proto, local, remote, sockets, conns, bytes)`)
}

func TestWithDirection(t *testing.T) {
	assert.Equal(t, "proc:x dir:in", withDirection("dir:out proc:x", "in"))
	assert.Equal(t, "proc:x", withDirection("proc:x dir:out", ""))
	assert.Equal(t, "dir:listen", withDirection("", "listen"))
}

// TestSort: numbers sort largest first, text ascending, reverse flips
// both; the s key steps through the columns in their natural order.
func TestSort(t *testing.T) {
	var a Aggregator
	s := a.Add(fixture(), "netlink", time.Unix(1000, 0))
	rows := func(sortBy string, reverse bool) []string {
		v, err := NewView("dir:in", sortBy, reverse)
		require.NoError(t, err)
		edges, _ := v.Rows(&s)
		return summary(edges)
	}
	assert.Equal(t, []string{"nginx[10] in 127.0.0.2", "? in 127.0.0.1"}, rows("sockets", false))
	assert.Equal(t, []string{"? in 127.0.0.1", "nginx[10] in 127.0.0.2"}, rows("sockets", true))
	assert.Equal(t, []string{"? in 127.0.0.1", "nginx[10] in 127.0.0.2"}, rows("remote", false))
	assert.Equal(t, []string{"nginx[10] in 127.0.0.2", "? in 127.0.0.1"}, rows("process", true))

	v, err := NewView("", "bytes", false)
	require.NoError(t, err)
	assert.Equal(t, "BYTES/S↓", v.sortLabel())
	assert.Equal(t, "PROCESS↑", v.next(1).sortLabel(), "wraps around")
	assert.Equal(t, "CONN/S↓", v.next(-1).sortLabel())
}

// TestShownColumns: the full-screen view shows PROTO only once a row is
// not TCP; the plain table always has it.
func TestShownColumns(t *testing.T) {
	rows := []Row{{Transport: model.TCP}}
	assert.NotContains(t, shown(edgeColumns, rows), &colTransport)
	rows = append(rows, Row{Transport: model.UDP})
	assert.Contains(t, shown(edgeColumns, rows), &colTransport)
	assert.Equal(t, "udp", colTransport.cell(&rows[1]))
}

// TestFitWidths: a screen too narrow for the rows narrows PROCESS, then
// NS, never the addresses or numbers; a narrowed process keeps its pid.
func TestFitWidths(t *testing.T) {
	rows := []Row{{Process: Process{PID: 1234567, Name: "packaging.test"}, Container: "a-long-container-name",
		Local: Endpoint{lo1, 8080}, Remote: Endpoint{IP: lo2}, Sockets: 1, Direction: model.Inbound}}
	cols := []*column{&colProcess, &colWhere, &colDir, &colLocal, &colRemote, &colSockets}
	// natural: 23 + 21 + 3 + 14 + 9 + 4, and 5 spaces: 79
	assert.Equal(t, []int{0, 0, 0, 0, 0, 0}, fitWidths(cols, rows, 79))
	assert.Equal(t, []int{21, 0, 0, 0, 0, 0}, fitWidths(cols, rows, 77))
	assert.Equal(t, []int{12, 19, 0, 0, 0, 0}, fitWidths(cols, rows, 66))
	assert.Equal(t, []int{12, 4, 0, 0, 0, 0}, fitWidths(cols, rows, 45), "as narrow as they go; the rest scrolls")
	assert.Equal(t, []int{0, 0, 0, 0, 0, 0}, fitWidths(cols, rows, 15), "before the first draw")

	assert.Equal(t, "packagin…[1234567]", colProcess.fit(&rows[0], 18))
	assert.Equal(t, "p…[1234567]", colProcess.fit(&rows[0], 11))
	assert.Equal(t, "a-l…", colWhere.fit(&rows[0], 4))
	assert.Equal(t, "packaging.test[1234567]", colProcess.fit(&rows[0], 30))
}
