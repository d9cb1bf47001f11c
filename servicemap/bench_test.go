package servicemap

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"testing"
)

// events100k is 100,000 events: the recorded run's, both formats, copied
// onto as many pairs of hosts as it takes, each pair with its own names and
// addresses (198.18.0.0/15, the benchmarking range).
func events100k(tb testing.TB) []byte {
	var lines [][]byte
	for _, f := range []string{"testdata/classic.ndjson", "testdata/ecs.ndjson"} {
		data, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		lines = append(lines, bytes.Split(bytes.TrimSpace(data), []byte("\n"))...)
	}
	var out bytes.Buffer
	for i, n := 0, 0; n < 100_000; i++ {
		r := bytesReplacer(
			`"edge"`, fmt.Sprintf(`"edge-%d"`, i), `"app"`, fmt.Sprintf(`"app-%d"`, i),
			"192.0.2.10", fmt.Sprintf("198.18.%d.%d", i/250, i%250+1),
			"192.0.2.20", fmt.Sprintf("198.19.%d.%d", i/250, i%250+1))
		for _, l := range lines {
			if n == 100_000 {
				break
			}
			out.Write(r(l))
			out.WriteByte('\n')
			n++
		}
	}
	return out.Bytes()
}

func bytesReplacer(pairs ...string) func([]byte) []byte {
	return func(b []byte) []byte {
		for i := 0; i < len(pairs); i += 2 {
			b = bytes.ReplaceAll(b, []byte(pairs[i]), []byte(pairs[i+1]))
		}
		return b
	}
}

// BenchmarkMap100k reads 100,000 events (about 85 MB) and resolves the
// map: the time of `connbeat map` on them, less the writing.
func BenchmarkMap100k(b *testing.B) {
	data := events100k(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		m := New(DefaultLimits)
		if err := m.ReadLines(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
		g := m.Graph()
		if m.Events() != 100_000 || len(g.Edges) == 0 {
			b.Fatalf("%s; %d edges", m.Summary(), len(g.Edges))
		}
		if err := WriteDOT(io.Discard, g, "bench"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100_000, "ns/event")
}

// TestMap100kMerges: the benchmark's input makes the map it should: each
// pair of hosts has its three edges, two of them merged from both ends.
func TestMap100kMerges(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 100,000 events")
	}
	m := New(DefaultLimits)
	if err := m.ReadLines(bytes.NewReader(events100k(t))); err != nil {
		t.Fatal(err)
	}
	g := m.Graph()
	both := 0
	for _, e := range g.Edges {
		if e.BothEnds {
			both++
		}
	}
	pairs := g.Hosts() / 2
	if m.Events() != 100_000 || m.Skipped() != 0 || len(g.Edges) != 3*pairs || both != 2*pairs {
		t.Fatalf("%s: %d hosts, %d edges, %d from both ends", m.Summary(), g.Hosts(), len(g.Edges), both)
	}
}
