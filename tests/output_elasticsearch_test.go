package tests

import (
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/elastic/mock-es/pkg/api"
	"github.com/gofrs/uuid/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// esServer is Elastic's mock-es bulk API server behind a thin front that
// keeps index templates (mock-es answers 200 to everything else, so libbeat
// would never load one) and records what the agent sent.
type esServer struct {
	url string

	mu        sync.Mutex
	attempts  map[float64]int // bulk items seen per listener port
	indexed   []Event         // documents answered with 200
	indices   map[string]bool // _index of every accepted item
	templates map[string]string
	auth      map[string]bool // Authorization headers of bulk requests
	// status answers an item for the attempt-th time it is seen (from 1).
	status func(e Event, attempt int) int
}

func startES(t *testing.T, status func(e Event, attempt int) int) *esServer {
	t.Helper()
	es := &esServer{
		attempts: map[float64]int{}, indices: map[string]bool{},
		templates: map[string]string{}, auth: map[string]bool{}, status: status,
	}
	bulk := api.NewDeterministicAPIHandler(uuid.Must(uuid.NewV4()), "", nil, time.Now().Add(time.Hour), 0, 0, es.item)
	mux := http.NewServeMux()
	mux.HandleFunc("/_index_template/", es.template)
	mux.HandleFunc("/_bulk", func(w http.ResponseWriter, r *http.Request) {
		es.mu.Lock()
		es.auth[r.Header.Get("Authorization")] = true
		es.mu.Unlock()
		bulk.ServeHTTP(w, r)
	})
	mux.Handle("/", bulk)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	es.url = srv.URL
	return es
}

func (es *esServer) item(action api.Action, doc []byte) int {
	var e Event
	if err := json.Unmarshal(doc, &e); err != nil {
		return http.StatusBadRequest
	}
	var meta struct {
		Index string `json:"_index"`
	}
	_ = json.Unmarshal(action.Meta, &meta)
	es.mu.Lock()
	defer es.mu.Unlock()
	attempt := 1
	if p, ok := e.Get("local_port").(float64); ok && e.Str("direction") == "listening" {
		es.attempts[p]++
		attempt = es.attempts[p]
	}
	st := es.status(e, attempt)
	if st == http.StatusOK {
		es.indexed = append(es.indexed, e)
		es.indices[action.Action+" "+meta.Index] = true
	}
	return st
}

func (es *esServer) template(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/_index_template/")
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	w.Header().Set("Content-Type", "application/json")
	es.mu.Lock()
	defer es.mu.Unlock()
	switch r.Method {
	case http.MethodPut, http.MethodPost:
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			body = zr
		}
		b, _ := io.ReadAll(body)
		es.templates[name] = string(b)
		fmt.Fprint(w, `{"acknowledged":true}`)
	default:
		if _, ok := es.templates[name]; !ok {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"index_templates":[]}`)
			return
		}
		fmt.Fprintf(w, `{"index_templates":[{"name":%q,"index_template":%s}]}`, name, es.templates[name])
	}
}

// version is connbeat's version, from the VERSION file the binary embeds.
func version(t *testing.T) string {
	t.Helper()
	v, err := os.ReadFile("../VERSION")
	require.NoError(t, err)
	return strings.TrimSpace(string(v))
}

func (es *esServer) Indexed() []Event {
	es.mu.Lock()
	defer es.mu.Unlock()
	return append([]Event(nil), es.indexed...)
}

// TestElasticsearchOutput sends the agent's events to mock-es with an API
// key. The index template is loaded on start; bulk items of some listeners
// are answered 429 (too many requests) once, of others four times, more
// than libbeat's default max_retries (3) would retry. Every event must end
// up indexed exactly once, and the scenario's events field by field.
func TestElasticsearchOutput(t *testing.T) {
	t.Parallel()
	const ip = "127.0.0.7"
	s := startScenario(t, "127.0.0.1", "127.0.0.2")
	lns := ownListeners(t, ip, 30)
	rejections := func(port float64) int { return []int{0, 1, 4}[int(port)%3] }
	es := startES(t, func(e Event, attempt int) int {
		if e.Str("local_ip") == ip && attempt <= rejections(e.Get("local_port").(float64)) {
			return http.StatusTooManyRequests
		}
		return http.StatusOK
	})
	mon := freePort(t)
	a := outputAgent(t, "  poll_interval: 200ms\n  aggregation: 5m",
		fmt.Sprintf(`output.elasticsearch:
  hosts: [%q]
  api_key: "connbeat-id:connbeat-secret"
  backoff.init: 100ms
  backoff.max: 1s
`, es.url),
		keepOnly(fmt.Sprintf("{and: [%s, {equals: {local_ip: %q}}]}", pidIs(float64(os.Getpid())), ip),
			pidIs(s.listener.PID()), pidIs(s.client.PID()), pidIs(s.client2.PID())),
		monitoring(mon))

	eventually(t, a, 90*time.Second, "every listener indexed and the scenario", func() bool {
		idx := es.Indexed()
		return allArrived(listenerCounts(idx, ip), lns) && s.complete(idx)
	})
	s.check(t, es.Indexed())

	// Exactly once, although items were rejected up to four times: once
	// the queue is empty, nothing is left to be sent again.
	eventually(t, a, 60*time.Second, "queue empty", func() bool {
		return agentStats(t, mon).num(t, "libbeat.pipeline.events.active") == 0
	})
	got := listenerCounts(es.Indexed(), ip)
	es.mu.Lock()
	for _, l := range lns {
		p := portOf(l)
		assert.Equal(t, 1, got[p], "listener %v indexed once", p)
		assert.Equal(t, rejections(p)+1, es.attempts[p], "listener %v sent once more than it was rejected", p)
	}
	want := "ApiKey " + base64.StdEncoding.EncodeToString([]byte("connbeat-id:connbeat-secret"))
	assert.Equal(t, map[string]bool{want: true}, es.auth, "every bulk request carries the API key")
	// The default index: a data stream named after the agent and its version.
	stream := "connbeat-" + version(t)
	assert.Equal(t, map[string]bool{"create " + stream: true}, es.indices)
	require.Contains(t, es.templates, stream, "the index template is loaded on start")
	tmpl := es.templates[stream]
	es.mu.Unlock()
	var parsed Event
	require.NoError(t, json.Unmarshal([]byte(tmpl), &parsed))
	assert.Equal(t, "ip", parsed.Str("template.mappings.properties.local_ip.type"))
	assert.Equal(t, "keyword", parsed.Str("template.mappings.properties.local_process.properties.binary.type"))
	assert.Equal(t, []interface{}{stream}, parsed.Get("index_patterns"))
	assert.NotNil(t, parsed.Get("data_stream"), "the template makes the index a data stream")

	rejected := 0
	for _, l := range lns {
		rejected += rejections(portOf(l))
	}
	st := agentStats(t, mon)
	assert.Equal(t, float64(rejected), st.num(t, "libbeat.output.events.toomany"), "429 answers counted")
	assert.Zero(t, st.num(t, "libbeat.pipeline.events.dropped"), "nothing given up")
	assert.Zero(t, st.num(t, "connbeat.events.dropped"))
}
