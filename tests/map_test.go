package tests

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/connbeat/connbeat/internal/testkit"
)

// The events servicemap's tests read, recorded from a real two-host run by
// tools/record-map-events.sh.
var recordedEvents = []string{"../servicemap/testdata/classic.ndjson", "../servicemap/testdata/ecs.ndjson"}

// runMap runs `connbeat map args...` with stdin and returns its stdout and
// stderr; it fails the test unless the exit code is wantCode.
func runMap(t *testing.T, stdin []byte, wantCode int, args ...string) (string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bins.connbeat, append([]string{"map"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(stdin), &stdout, &stderr
	err := cmd.Run()
	require.Equal(t, wantCode, cmd.ProcessState.ExitCode(), "connbeat map %v: %v\n%s", args, err, stderr.String())
	return stdout.String(), stderr.String()
}

// mapEdges are the edges of the recorded run, as the DOT writes them.
var mapEdges = []string{
	`n2 -> n1 [label=":5432\n2 conns"`,                                      // worker -> db on app, over loopback
	`n3 -> n0 [label=":8080\n3 conns"`,                                      // client on edge -> api on app, both ends merged
	`n3 -> n4 [label=":443\n1 conn", penwidth=1.0, weight=1, style=dashed]`, // to an address without an agent
}

// TestMapFiles reads both recorded files, each format, and the DOT it
// writes is the run's map, which Graphviz accepts.
func TestMapFiles(t *testing.T) {
	dot, stderr := runMap(t, nil, 0, recordedEvents...)
	assert.Regexp(t, `^connbeat map: read \d+ events \(classic \d+, ecs \d+\); skipped 0\n$`, stderr)
	assert.Contains(t, dot, `label="connbeat service map: 2 hosts, 5 nodes, 3 edges"`)
	for _, e := range mapEdges {
		assert.Contains(t, dot, e)
	}
	for _, n := range []string{`n0 [label="api\n:8080"]`, `n1 [label="db\n:5432"]`, `n3 [label="client"]`, `label="host edge"`, `n4 [label="192.0.2.30", shape=ellipse`} {
		assert.Contains(t, dot, n)
	}

	bin := testkit.RequireTool(t, "dot")
	cmd := exec.Command(bin, "-Tsvg")
	cmd.Stdin = strings.NewReader(dot)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
}

// TestMapStdinMalformed: from stdin, lines that are not events are
// skipped and counted by reason; the map is the same.
func TestMapStdinMalformed(t *testing.T) {
	var input bytes.Buffer
	for _, f := range recordedEvents {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		input.Write(data)
		input.WriteString("garbage\n{\"truncated\": \n{\"message\": \"a log line\"}\n")
	}
	input.WriteString(strings.Repeat("z", 2<<20) + "\n")
	dot, stderr := runMap(t, input.Bytes(), 0, "-")
	assert.Regexp(t, `; skipped 7 \(longer than 1048576 bytes 1, not a JSON object 4, not a connbeat event 2\)\n$`, stderr)
	for _, e := range mapEdges {
		assert.Contains(t, dot, e)
	}
}

// TestMapHTML: --format html writes one self-contained page with the map
// as inline SVG.
func TestMapHTML(t *testing.T) {
	testkit.RequireTool(t, "dot")
	page, _ := runMap(t, nil, 0, append([]string{"--format", "html"}, recordedEvents...)...)
	assert.True(t, strings.HasPrefix(page, "<!DOCTYPE html>"))
	assert.Contains(t, page, "<svg")
	assert.Contains(t, page, "<td>edge / client</td><td>app / api</td><td>:8080</td>")
	assert.NotContains(t, page, "<script")
}

// TestMapKafka: --kafka reads the topic the Kafka output writes, here an
// in-process broker holding the recorded events, and draws the same map.
func TestMapKafka(t *testing.T) {
	c := startKafka(t, 0)
	addr := c.ListenAddrs()[0]
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(kafkaTopic))
	require.NoError(t, err)
	defer cl.Close()
	var records []*kgo.Record
	for _, f := range recordedEvents {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
			records = append(records, &kgo.Record{Value: line})
		}
	}
	records = append(records, &kgo.Record{Value: []byte("not an event")})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, cl.ProduceSync(ctx, records...).FirstErr())

	fromKafka, stderr := runMap(t, nil, 0, "--kafka", addr, "--topic", kafkaTopic)
	assert.Contains(t, stderr, "; skipped 1 (not a JSON object 1)")
	fromFiles, _ := runMap(t, nil, 0, recordedEvents...)
	assert.Equal(t, fromFiles, fromKafka)
}

func TestMapErrors(t *testing.T) {
	for args, want := range map[string]string{
		"--format png":                    `--format must be one of dot, html, got "png"`,
		"--topic t":                       "--topic needs --kafka",
		"--kafka 127.0.0.1:1":             "--kafka needs --topic",
		"--kafka 127.0.0.1:1 --topic t x": "read either files or --kafka, not both",
		"/nonexistent/events.ndjson":      "no such file or directory",
		"--kafka 127.0.0.1:1 --topic t":   "kafka: metadata of t: unable to dial",
	} {
		_, stderr := runMap(t, nil, 1, strings.Fields(args)...)
		assert.Contains(t, stderr, want, args)
	}
}
