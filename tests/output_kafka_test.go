package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/connbeat/connbeat/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

const kafkaTopic = "connbeat"

// startKafka starts an in-process Kafka broker (kfake speaks the real wire
// protocol) on port (0: any) with the connbeat topic, one partition.
func startKafka(t *testing.T, port int) *kfake.Cluster {
	t.Helper()
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(1, kafkaTopic)}
	if port != 0 {
		opts = append(opts, kfake.Ports(port))
	}
	c, err := kfake.NewCluster(opts...)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

// kafkaReader consumes the connbeat topic from the start with a Kafka client
// (franz-go) in the background and keeps every decoded event.
type kafkaReader struct {
	cl     *kgo.Client
	cancel context.CancelFunc
	done   chan struct{}

	mu        sync.Mutex
	events    []Event
	undecoded []string
}

func readKafka(t *testing.T, addr string) *kafkaReader {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(kafkaTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	r := &kafkaReader{cl: cl, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for ctx.Err() == nil {
			fetches := cl.PollFetches(ctx)
			fetches.EachRecord(func(rec *kgo.Record) {
				var ev Event
				r.mu.Lock()
				defer r.mu.Unlock()
				if err := json.Unmarshal(rec.Value, &ev); err != nil {
					r.undecoded = append(r.undecoded, string(rec.Value))
					return
				}
				r.events = append(r.events, ev)
			})
		}
	}()
	t.Cleanup(r.Stop)
	return r
}

// Stop ends the consumer; it is safe to call more than once.
func (r *kafkaReader) Stop() {
	r.cancel()
	<-r.done
	r.cl.Close()
}

func (r *kafkaReader) Events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

func (r *kafkaReader) Undecoded() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.undecoded...)
}

// kafkaOutput is the output.kafka section for a broker at addr.
func kafkaOutput(addr string, extra ...string) string {
	out := fmt.Sprintf("output.kafka:\n  hosts: [%q]\n  topic: %s\n", addr, kafkaTopic)
	for _, e := range extra {
		out += "  " + e + "\n"
	}
	return out
}

// TestKafkaOutput runs the agent against an in-process Kafka broker with the
// protocol versions operators use, consumes the topic back with a Kafka
// client and checks the events of real loopback connections field by field.
// One run also reads the topic with kcat, as an operator would.
func TestKafkaOutput(t *testing.T) {
	t.Parallel()
	s := startScenario(t, "127.0.0.1", "127.0.0.2")
	for _, tc := range []struct {
		name   string
		config []string
		kcat   bool
	}{
		{name: "default version", config: nil},
		{name: "2.1.0 gzip acks=1", config: []string{`version: "2.1.0"`, "compression: gzip", "required_acks: 1"}, kcat: true},
		{name: "3.x zstd acks=all", config: []string{`version: "3.6.0"`, "compression: zstd", "required_acks: -1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr := startKafka(t, 0).ListenAddrs()[0]
			a := outputAgent(t, "  poll_interval: 200ms\n  aggregation: 1m", kafkaOutput(addr, tc.config...), s.only())
			r := readKafka(t, addr)
			eventually(t, a, 60*time.Second, "scenario events in Kafka", func() bool { return s.complete(r.Events()) })
			s.check(t, r.Events())
			assert.Empty(t, r.Undecoded(), "every record is one JSON event")
			for _, e := range r.Events() {
				assert.NotEmpty(t, e.Str("connbeat.kind"), "record %v", e)
			}
			if tc.kcat {
				checkKcat(t, addr, s)
			}
		})
	}
}

// checkKcat reads the topic with kcat (Debian's Kafka client), as the README
// tells operators to, and finds the scenario in it.
func checkKcat(t *testing.T, addr string, s loopbackScenario) {
	t.Helper()
	kcat := testkit.RequireTool(t, "kcat")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, kcat, "-C", "-b", addr, "-t", kafkaTopic, "-e", "-J", "-q")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "kcat: %s", stderr.String())
	var evs []Event
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		// -J wraps each message in an envelope with the topic, partition,
		// offset and the payload as a string.
		var env struct {
			Topic   string `json:"topic"`
			Payload string `json:"payload"`
		}
		require.NoError(t, json.Unmarshal([]byte(line), &env), line)
		require.Equal(t, kafkaTopic, env.Topic)
		var ev Event
		require.NoError(t, json.Unmarshal([]byte(env.Payload), &ev), env.Payload)
		evs = append(evs, ev)
	}
	require.True(t, s.complete(evs), "kcat read %d events without the scenario", len(evs))
	s.check(t, evs)
}
