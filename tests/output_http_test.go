package tests

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// httpSink is a real HTTP endpoint on a fixed loopback port that can be
// stopped and started again on the same port.
type httpSink struct {
	t    *testing.T
	addr string
	mu   sync.Mutex
	srv  *http.Server
	got  []Event
}

func newHTTPSink(t *testing.T) *httpSink {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &httpSink{t: t, addr: l.Addr().String()}
	s.serve(l)
	t.Cleanup(s.stop)
	return s
}

func (s *httpSink) serve(l net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		var evs []Event
		if err == nil {
			err = json.Unmarshal(body, &evs)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.got = append(s.got, evs...)
		s.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	})}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	go func() { _ = srv.Serve(l) }()
}

func (s *httpSink) stop() {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	_ = srv.Close()
}

func (s *httpSink) start() {
	var l net.Listener
	var err error
	for i := 0; i < 50; i++ { // the old socket may linger a moment
		if l, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	require.NoError(s.t, err)
	s.serve(l)
}

func (s *httpSink) events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Event(nil), s.got...)
}

// stats reads libbeat's monitoring counters.
func stats(t *testing.T, port int) Event {
	t.Helper()
	return getStats(t, http.DefaultClient, fmt.Sprintf("http://127.0.0.1:%d/stats", port))
}

// getStats reads libbeat's GET /stats at url through client.
func getStats(t *testing.T, client *http.Client, url string) Event {
	t.Helper()
	resp, err := client.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	var ev Event
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&ev))
	return ev
}

// TestHTTPOutputOutage ships to a real HTTP endpoint, stops it for 20 s
// while new listeners keep appearing, starts it again on the same port,
// and checks that every listener of the outage arrives exactly once, with
// nothing dropped and the agent's memory bounded.
func TestHTTPOutputOutage(t *testing.T) {
	sink := newHTTPSink(t)
	mon := freePort(t)
	a := RunAgent(t, AgentOptions{
		// A long window: each listener is reported once during the test.
		Connbeat: "  poll_interval: 200ms\n  aggregation: 10m",
		Extra: fmt.Sprintf(`output.console.enabled: false
output.http:
  hosts: ["http://%s/ingest"]
  backoff: {init: 200ms, max: 1s}
  timeout: 5s
http.enabled: true
http.host: 127.0.0.1
http.port: %d
`, sink.addr, mon),
	})

	var held []net.Listener
	listen := func() float64 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		held = append(held, l)
		return float64(l.Addr().(*net.TCPAddr).Port)
	}
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()

	before := listen()
	waitUntil(t, "first listener delivered", func() bool { return listenerCounts(sink.events(), "127.0.0.1")[before] > 0 })

	sink.stop()
	var during []float64
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		during = append(during, listen())
		time.Sleep(500 * time.Millisecond)
	}
	sink.start()

	waitUntil(t, "every listener of the outage delivered", func() bool {
		c := listenerCounts(sink.events(), "127.0.0.1")
		for _, p := range during {
			if c[p] == 0 {
				return false
			}
		}
		return true
	})
	counts := listenerCounts(sink.events(), "127.0.0.1")
	for _, p := range append(during, before) {
		assert.Equal(t, 1, counts[p], "listener on port %v delivered exactly once", p)
	}
	st := stats(t, mon)
	assert.Equal(t, float64(0), st.Get("libbeat.pipeline.events.dropped"), "nothing dropped")
	assert.Equal(t, float64(0), st.Get("libbeat.output.events.dropped"))
	assert.Greater(t, st.Get("libbeat.output.events.failed").(float64), float64(0), "the outage was seen as failed sends")
	assert.Less(t, st.Get("beat.memstats.rss").(float64), float64(300<<20), "RSS bounded")
	assert.Equal(t, 0, a.Stop(syscall.SIGTERM))
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		require.True(t, time.Now().Before(deadline), "timed out waiting: %s", what)
		time.Sleep(100 * time.Millisecond)
	}
}

func TestHTTPTestOutput(t *testing.T) {
	sink := newHTTPSink(t)
	dead := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	for _, tc := range []struct {
		addr string
		ok   bool
		want string
	}{
		{sink.addr, true, "talk to server... OK"},
		{dead, false, "connection refused"},
	} {
		dir := writeConfig(t, AgentOptions{Extra: "output.console.enabled: false\noutput.http.hosts: [\"http://" + tc.addr + "/in\"]\n"})
		out, errOut, code := connbeat(t, "", "test", "output", "-c", filepath.Join(dir, "connbeat.yml"), "--strict.perms=false")
		if tc.ok {
			assert.Equal(t, 0, code, out+errOut)
		} else {
			assert.NotEqual(t, 0, code, out+errOut)
		}
		assert.Contains(t, out+errOut, tc.want)
	}
}
