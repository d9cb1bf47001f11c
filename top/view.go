package top

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/connbeat/connbeat/model"
)

// Filter selects rows. Its text is terms separated by spaces, all of which
// a row must match:
//
//	proc:NAME   the process name contains NAME (any case), or its pid is NAME
//	pid:N       the process id is N
//	port:N      the local or the remote port is N
//	dir:D       the direction is in, out or listen (inbound, outbound, listening)
//	ns:NS       the NS column (container, else network namespace inode) contains NS
//	WORD        any of the above, or an address, contains WORD
type Filter struct {
	text  string
	terms []term
}

type term struct {
	key, value string
	n          uint64 // value as a number, for pid and port
	dir        model.Direction
}

var dirNames = map[string]model.Direction{
	"in": model.Inbound, "inbound": model.Inbound,
	"out": model.Outbound, "outbound": model.Outbound,
	"listen": model.Listening, "listening": model.Listening,
}

// ParseFilter parses a filter's text; the empty text matches every row.
func ParseFilter(text string) (Filter, error) {
	f := Filter{text: strings.TrimSpace(text)}
	for _, word := range strings.Fields(text) {
		key, value, found := strings.Cut(word, ":")
		if !found {
			f.terms = append(f.terms, term{value: strings.ToLower(word)})
			continue
		}
		t := term{key: key, value: strings.ToLower(value)}
		var err error
		switch key {
		case "proc", "ns":
		case "pid":
			t.n, err = strconv.ParseUint(value, 10, 31)
		case "port":
			t.n, err = strconv.ParseUint(value, 10, 16)
		case "dir":
			var ok bool
			if t.dir, ok = dirNames[t.value]; !ok {
				err = fmt.Errorf("not in, out or listen")
			}
		default:
			return Filter{}, fmt.Errorf("filter %q: unknown key %q (proc, pid, port, dir, ns)", word, key)
		}
		if err != nil {
			return Filter{}, fmt.Errorf("filter %q: %w", word, err)
		}
		f.terms = append(f.terms, t)
	}
	return f, nil
}

func (f Filter) String() string { return f.text }

// Match reports whether r matches every term.
func (f Filter) Match(r *Row) bool {
	for _, t := range f.terms {
		if !t.match(r) {
			return false
		}
	}
	return true
}

func (t term) match(r *Row) bool {
	switch t.key {
	case "proc":
		return r.Process.PID != 0 && (contains(r.Process.Name, t.value) || fmt.Sprint(r.Process.PID) == t.value)
	case "pid":
		return uint64(r.Process.PID) == t.n
	case "port":
		return uint64(r.Local.Port) == t.n || uint64(r.Remote.Port) == t.n
	case "dir":
		return r.Direction == t.dir
	case "ns":
		return contains(r.Where(), t.value)
	}
	for _, c := range []*column{&colProcess, &colWhere, &colLocal, &colRemote} {
		if contains(c.cell(r), t.value) {
			return true
		}
	}
	return false
}

func contains(s, lowerSub string) bool {
	return strings.Contains(strings.ToLower(s), lowerSub)
}

// withDirection returns the filter text with its dir: terms replaced by
// dir:d (none for d == "").
func withDirection(text, d string) string {
	var words []string
	for _, w := range strings.Fields(text) {
		if !strings.HasPrefix(w, "dir:") {
			words = append(words, w)
		}
	}
	if d != "" {
		words = append(words, "dir:"+d)
	}
	return strings.Join(words, " ")
}

// View is what the user chose to see: which rows, in which order.
type View struct {
	Filter Filter
	sortBy *column
	desc   bool
}

// NewView returns the view sorted by the column named sortBy, numbers
// largest first and text in ascending order, reversed if reverse is set.
func NewView(filter, sortBy string, reverse bool) (View, error) {
	f, err := ParseFilter(filter)
	if err != nil {
		return View{}, err
	}
	c, err := sortColumn(sortBy)
	if err != nil {
		return View{}, err
	}
	return View{Filter: f, sortBy: c, desc: c.number != reverse}, nil
}

// Rows returns the snapshot's edges and listeners that pass the filter, in
// the view's order. Listeners are sorted by the same column when they have
// it, else by address.
func (v View) Rows(s *Snapshot) (edges, listeners []Row) {
	edges = v.filter(s.Edges)
	listeners = v.filter(s.Listeners)
	sortRows(edges, v.sortBy, v.desc)
	by, desc := &colListen, false
	for _, c := range listenerColumns {
		if c.name == v.sortBy.name {
			by, desc = c, v.desc
		}
	}
	sortRows(listeners, by, desc)
	return edges, listeners
}

func (v View) filter(rows []Row) []Row {
	out := make([]Row, 0, len(rows))
	for i := range rows {
		if v.Filter.Match(&rows[i]) {
			out = append(out, rows[i])
		}
	}
	return out
}

// next returns the view sorted by the column step places after the
// current one among the edge columns, in that column's natural order.
func (v View) next(step int) View {
	i := 0
	for j, c := range edgeColumns {
		if c == v.sortBy {
			i = j
		}
	}
	n := len(edgeColumns)
	v.sortBy = edgeColumns[((i+step)%n+n)%n]
	v.desc = v.sortBy.number
	return v
}

// sortLabel says how the view is sorted, e.g. "SOCK↓".
func (v View) sortLabel() string {
	if v.desc {
		return v.sortBy.title + "↓"
	}
	return v.sortBy.title + "↑"
}

// sortRows orders rows by c (reversed when desc), ties broken by every
// column in turn so that the order is the same from one poll to the next.
func sortRows(rows []Row, c *column, desc bool) {
	slices.SortStableFunc(rows, func(a, b Row) int {
		if n := c.cmp(&a, &b); n != 0 {
			if desc {
				return -n
			}
			return n
		}
		for _, t := range tieBreak {
			if n := t.cmp(&a, &b); n != 0 {
				return n
			}
		}
		return 0
	})
}
