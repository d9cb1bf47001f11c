package servicemap

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Limits bound the memory hostile input can take.
type Limits struct {
	// MaxLine is the longest line read, in bytes; longer ones are skipped
	// without being held whole.
	MaxLine int
	// MaxKeys caps the distinct conversations, listeners and addresses the
	// map remembers; events that would add more are skipped.
	MaxKeys int
}

// DefaultLimits fit connbeat's events (about 1-2 KB each) with room to
// spare, and keep a map of hostile input within a few hundred MB.
var DefaultLimits = Limits{MaxLine: 1 << 20, MaxKeys: 200_000}

// Map accumulates events into a service map.
type Map struct {
	limits  Limits
	b       *builder
	events  map[string]int // by format
	skipped map[string]int // by reason
}

// New returns an empty map.
func New(limits Limits) *Map {
	return &Map{limits: limits, b: newBuilder(limits.MaxKeys), events: map[string]int{}, skipped: map[string]int{}}
}

// Add reads one event: a line of the file or console output, or a Kafka
// message. Anything that is not a connbeat event is counted and skipped.
func (m *Map) Add(data []byte) {
	if len(data) > m.limits.MaxLine {
		m.skipped[m.tooLong()]++
		return
	}
	r, err := parse(data)
	switch {
	case err != nil:
		m.skipped[err.Error()]++
	case !m.b.add(&r):
		m.skipped[fmt.Sprintf("over %d distinct keys", m.limits.MaxKeys)]++
	default:
		m.events[r.format]++
	}
}

func (m *Map) tooLong() string { return fmt.Sprintf("longer than %d bytes", m.limits.MaxLine) }

// ReadLines reads one event a line until r ends. Blank lines are passed
// over; a line longer than the limit is skipped without being held whole.
func (m *Map) ReadLines(r io.Reader) error {
	br := bufio.NewReaderSize(r, m.limits.MaxLine+1)
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			m.skipped[m.tooLong()]++
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			continue
		}
		if line = bytes.TrimSpace(line); len(line) > 0 {
			m.Add(line)
		}
		switch {
		case err == io.EOF:
			return nil
		case err != nil:
			return err
		}
	}
}

// Graph resolves what was read into nodes and edges.
func (m *Map) Graph() *Graph { return m.b.graph() }

// Events is how many events were read.
func (m *Map) Events() int {
	n := 0
	for _, c := range m.events {
		n += c
	}
	return n
}

// Skipped is how many lines or messages were skipped.
func (m *Map) Skipped() int {
	n := 0
	for _, c := range m.skipped {
		n += c
	}
	return n
}

// Summary says what was read and skipped, for stderr: e.g. "read 120
// events (classic 60, ecs 60); skipped 2 (not a JSON object 1, longer than
// 1048576 bytes 1)".
func (m *Map) Summary() string {
	return fmt.Sprintf("read %d events%s; skipped %d%s", m.Events(), counts(m.events), m.Skipped(), counts(m.skipped))
}

func counts(by map[string]int) string {
	if len(by) == 0 {
		return ""
	}
	keys := make([]string, 0, len(by))
	for k := range by {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, by[k])
	}
	return " (" + strings.Join(parts, ", ") + ")"
}
