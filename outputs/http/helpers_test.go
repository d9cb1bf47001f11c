package http

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	nethttp "net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/elastic/beats/v7/libbeat/beat"
	cbjson "github.com/elastic/beats/v7/libbeat/outputs/codec/json"
	"github.com/elastic/beats/v7/libbeat/outputs/outest"
	"github.com/elastic/elastic-agent-libs/config"
	"github.com/elastic/elastic-agent-libs/logp"
	"github.com/elastic/elastic-agent-libs/mapstr"
	"github.com/stretchr/testify/require"

	"github.com/connbeat/connbeat/internal/outputtest"
)

// counters records what the output reports to libbeat's observer.
type counters = outputtest.Counters

// receiver is a real HTTP endpoint: it decodes every request body (JSON
// array or NDJSON, gzip or not) and answers with the status the test's
// script gives for that request number.
type receiver struct {
	t      *testing.T
	mu     sync.Mutex
	reqs   int
	got    []map[string]interface{} // events of accepted requests
	script func(n int, r *nethttp.Request) (int, nethttp.Header)
	auth   func(r *nethttp.Request) bool
}

func (rc *receiver) ServeHTTP(w nethttp.ResponseWriter, r *nethttp.Request) {
	rc.mu.Lock()
	rc.reqs++
	n := rc.reqs
	rc.mu.Unlock()
	if rc.auth != nil && !rc.auth(r) {
		nethttp.Error(w, "bad credentials", nethttp.StatusUnauthorized)
		return
	}
	events, err := decodeBody(r)
	if err != nil {
		nethttp.Error(w, err.Error(), nethttp.StatusBadRequest)
		return
	}
	status, hdr := nethttp.StatusOK, nethttp.Header(nil)
	if rc.script != nil {
		status, hdr = rc.script(n, r)
	}
	for k, v := range hdr {
		w.Header()[k] = v
	}
	if status/100 == 2 {
		rc.mu.Lock()
		rc.got = append(rc.got, events...)
		rc.mu.Unlock()
	}
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"status":%d,"request":%d}`, status, n)
}

func (rc *receiver) events() []map[string]interface{} {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]map[string]interface{}(nil), rc.got...)
}

func decodeBody(r *nethttp.Request) ([]map[string]interface{}, error) {
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		body = zr
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		return nil, err
	}
	var out []map[string]interface{}
	switch r.Header.Get("Content-Type") {
	case "application/json":
		err = json.Unmarshal(raw, &out)
	case "application/x-ndjson":
		sc := bufio.NewScanner(bytes.NewReader(raw))
		for sc.Scan() {
			var ev map[string]interface{}
			if err = json.Unmarshal(sc.Bytes(), &ev); err != nil {
				break
			}
			out = append(out, ev)
		}
	default:
		err = fmt.Errorf("unexpected content type %q", r.Header.Get("Content-Type"))
	}
	return out, err
}

// newTestClient builds a connected client from YAML settings.
func newTestClient(t *testing.T, url, yaml string) (*client, *counters) {
	t.Helper()
	yaml = strings.Replace(yaml, "hosts: [x]", "hosts: ['"+url+"']", 1)
	raw, err := config.NewConfigWithYAML([]byte(yaml), "test")
	require.NoError(t, err)
	c := defaultConfig()
	require.NoError(t, raw.Unpack(&c))
	obs := &counters{}
	cl := newClient(url, &c, obs, cbjson.New("0.1.0", cbjson.Config{}), "connbeat", logp.NewNopLogger())
	require.NoError(t, cl.Connect(t.Context()))
	t.Cleanup(func() { cl.Close() })
	return cl, obs
}

func events(ids ...int) []beat.Event {
	out := make([]beat.Event, len(ids))
	for i, id := range ids {
		out[i] = beat.Event{Timestamp: time.Unix(1700000000, 0).UTC(), Fields: mapstr.M{"id": id, "connbeat": mapstr.M{"kind": "listener"}}}
	}
	return out
}

// publishUntilDone plays libbeat's part: it publishes the batch again
// after every Retry, as the pipeline does, until it is ACKed or dropped.
func publishUntilDone(t *testing.T, c *client, evs []beat.Event) []outest.BatchSignalTag {
	t.Helper()
	var tags []outest.BatchSignalTag
	for attempt := 0; attempt < 20; attempt++ {
		b := outest.NewBatch(evs...)
		_ = c.Publish(t.Context(), b)
		require.Len(t, b.Signals, 1, "exactly one signal per Publish")
		tag := b.Signals[0].Tag
		tags = append(tags, tag)
		if tag == outest.BatchACK || tag == outest.BatchDrop {
			return tags
		}
	}
	t.Fatalf("batch neither ACKed nor dropped after 20 attempts: %v", tags)
	return nil
}

func ids(evs []map[string]interface{}) []int {
	out := make([]int, len(evs))
	for i, e := range evs {
		out[i] = int(e["id"].(float64))
	}
	return out
}
