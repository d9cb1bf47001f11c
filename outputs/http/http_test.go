package http

import (
	"crypto/tls"
	"fmt"
	"net"
	nethttp "net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elastic/beats/v7/libbeat/beat"
	"github.com/elastic/beats/v7/libbeat/outputs/outest"
	"github.com/elastic/elastic-agent-libs/config"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connbeat/connbeat/internal/testkit/certs"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"{}", "output.http.hosts: at least one URL is required"},
		{"hosts: ['ftp://x']", `output.http.hosts.0: "ftp://x" must be an http:// or https:// URL`},
		{"hosts: ['http://u:p@x']", "put credentials in output.http.username/password"},
		{"hosts: ['http://x']\nformat: xml", "output.http.format must be json_array or ndjson"},
		{"hosts: ['http://x']\ncompression: br", "output.http.compression must be none or gzip"},
		{"hosts: ['http://x']\nbearer_token: t\nusername: u", "either bearer_token or username/password"},
		{"hosts: ['http://x']\npassword: p", "output.http.password is set but output.http.username is empty"},
		{"hosts: ['http://x']\nheaders: {'Bad Name': v}", `"Bad Name" is not a valid header name`},
		{"hosts: ['http://x']\nheaders: {Content-Encoding: br}", "Content-Encoding is set by the output itself"},
		{"hosts: ['http://x']\nheaders: {Host: other}", "Host is set by the output itself"},
		{"hosts: ['http://x']\nheaders: {content-type: text/plain}", "content-type is set by the output itself"},
		{"hosts: ['http://x']\nheaders: {X-Api-Key: \"k\\r\\nX-Injected: 1\"}", "output.http.headers.X-Api-Key: the value holds a control character"},
		{"hosts: ['http://x']\nheaders: {X-A: \"a\\u0000b\"}", "output.http.headers.X-A: the value holds a control character"},
		{"hosts: ['http://x']\nbearer_token: \"t\\n\"", "output.http.bearer_token holds a control character"},
		{"hosts: ['http://x']\nbearer_token: t\nheaders: {Authorization: x}", "Authorization conflicts with bearer_token"},
		{"hosts: ['http://x']\nbatch_size: 0", "output.http.batch_size must be positive"},
		{"hosts: ['http://x']\nbackoff: {init: 10s, max: 1s}", "output.http.backoff"},
		{"hosts: ['http://x']\ntimeout: 0s", "output.http.timeout must be positive"},
		{"hosts: ['http://x']\nmethod: GET", "output.http.method must be POST or PUT"},
		{"hosts: ['http://x']\ntimout: 5s", "unknown option output.http.timout (known options: "},
		{"hosts: ['http://x']\nbatch_size: 0\nheader: {A: b}", "unknown option output.http.header"},
	} {
		raw, err := config.NewConfigWithYAML([]byte(tc.yaml), "test")
		require.NoError(t, err)
		_, err = loadConfig(raw)
		require.Error(t, err, tc.yaml)
		assert.Contains(t, err.Error(), tc.want, tc.yaml)
	}
	// Keys of libbeat's inline transport settings, its queue and enabled
	// are known too.
	raw, err := config.NewConfigWithYAML([]byte(`
enabled: true
hosts: ['https://a:8080/in', 'http://b/x']
format: ndjson
compression: gzip
headers: {X-Tenant: t1, X-Tab: "a\tb"}
proxy_url: http://proxy:3128
ssl.verification_mode: full
idle_connection_timeout: 30s
queue.mem.events: 4096`), "test")
	require.NoError(t, err)
	c, err := loadConfig(raw)
	require.NoError(t, err)
	assert.Equal(t, FormatNDJSON, c.Format)
	assert.Equal(t, "t1", c.Headers["X-Tenant"])
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for h, want := range map[string]time.Duration{
		"":                              0,
		"3":                             3 * time.Second,
		" 2 ":                           2 * time.Second,
		"0":                             0,
		"-5":                            0,
		"soon":                          0,
		"999999999999":                  time.Minute,
		"Thu, 01 Jan 2026 00:00:30 GMT": 30 * time.Second,
		"Wed, 31 Dec 2025 23:00:00 GMT": 0,
		"Fri, 02 Jan 2026 00:00:00 GMT": time.Minute,
	} {
		assert.Equal(t, want, retryAfter(h, now, time.Minute), "%q", h)
	}
}

func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"3", "Thu, 01 Jan 2026 00:00:30 GMT", "", "-1", "1e9"} {
		f.Add(s)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, h string) {
		if d := retryAfter(h, now, time.Minute); d < 0 || d > time.Minute {
			t.Fatalf("retryAfter(%q) = %s outside [0, 1m]", h, d)
		}
	})
}

// TestRetriesUntilAccepted: 503 twice, then 429 with Retry-After, then 200.
// The batch is retried each time, never ACKed before the 200, and every
// event arrives exactly once.
func TestRetriesUntilAccepted(t *testing.T) {
	rc := &receiver{t: t, script: func(n int, _ *nethttp.Request) (int, nethttp.Header) {
		switch {
		case n <= 2:
			return nethttp.StatusServiceUnavailable, nil
		case n == 3:
			return nethttp.StatusTooManyRequests, nethttp.Header{"Retry-After": {"1"}}
		}
		return nethttp.StatusOK, nil
	}}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	c, obs := newTestClient(t, srv.URL, "hosts: [x]")

	start := time.Now()
	tags := publishUntilDone(t, c, events(1, 2, 3))
	assert.Equal(t, []outest.BatchSignalTag{outest.BatchRetry, outest.BatchRetry, outest.BatchRetry, outest.BatchACK}, tags)
	assert.GreaterOrEqual(t, time.Since(start), time.Second, "Retry-After: 1 was honoured")
	assert.Equal(t, []int{1, 2, 3}, ids(rc.events()))
	assert.Equal(t, 3, obs.Acked)
	assert.Equal(t, 6, obs.Retryable)
	assert.Equal(t, 3, obs.TooMany)
	assert.Zero(t, obs.Permanent)
}

// TestRejectedBatchDropped: a 400 drops that batch only, with one error.
func TestRejectedBatchDropped(t *testing.T) {
	rc := &receiver{t: t, script: func(_ int, r *nethttp.Request) (int, nethttp.Header) {
		if r.Header.Get("X-Poison") != "" {
			return nethttp.StatusBadRequest, nil
		}
		return nethttp.StatusAccepted, nil
	}}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	poisoned, pobs := newTestClient(t, srv.URL, "hosts: [x]\nheaders: {X-Poison: '1'}")
	assert.Equal(t, []outest.BatchSignalTag{outest.BatchDrop}, publishUntilDone(t, poisoned, events(1, 2)))
	assert.Equal(t, 2, pobs.Permanent)
	assert.Zero(t, pobs.Acked)

	good, gobs := newTestClient(t, srv.URL, "hosts: [x]")
	assert.Equal(t, []outest.BatchSignalTag{outest.BatchACK}, publishUntilDone(t, good, events(3, 4)))
	assert.Equal(t, []int{3, 4}, ids(rc.events()), "only the rejected batch was lost")
	assert.Equal(t, 2, gobs.Acked)
}

func TestConnectionErrorRetried(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	url := "http://" + l.Addr().String()
	l.Close()
	c, obs := newTestClient(t, url, "hosts: [x]\ntimeout: 2s")
	b := outest.NewBatch(events(1)...)
	err = c.Publish(t.Context(), b)
	require.ErrorContains(t, err, "connection refused")
	assert.Equal(t, outest.BatchRetry, b.Signals[0].Tag)
	assert.Equal(t, 1, obs.WriteErrors)
	assert.Equal(t, 1, obs.Retryable)
}

func TestBodies(t *testing.T) {
	for _, tc := range []struct{ name, yaml string }{
		{"json array", "format: json_array"},
		{"ndjson", "format: ndjson"},
		{"gzip json array", "format: json_array\ncompression: gzip"},
		{"gzip ndjson", "format: ndjson\ncompression: gzip\ncompression_level: 9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := &receiver{t: t}
			srv := httptest.NewServer(rc)
			defer srv.Close()
			c, _ := newTestClient(t, srv.URL, "hosts: [x]\n"+tc.yaml)
			assert.Equal(t, []outest.BatchSignalTag{outest.BatchACK}, publishUntilDone(t, c, events(1, 2, 3)))
			assert.Equal(t, []outest.BatchSignalTag{outest.BatchACK}, publishUntilDone(t, c, events(4)))
			got := rc.events()
			assert.Equal(t, []int{1, 2, 3, 4}, ids(got))
			assert.Equal(t, "listener", got[0]["connbeat"].(map[string]interface{})["kind"])
			assert.Equal(t, "2023-11-14T22:13:20.000Z", got[0]["@timestamp"])
		})
	}
}

func TestAuth(t *testing.T) {
	rc := &receiver{t: t, auth: func(r *nethttp.Request) bool {
		if u, p, ok := r.BasicAuth(); ok {
			return u == "connbeat" && p == "s3cret"
		}
		return r.Header.Get("Authorization") == "Bearer tok-1"
	}}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	for yaml, want := range map[string]outest.BatchSignalTag{
		"username: connbeat\npassword: s3cret": outest.BatchACK,
		"bearer_token: tok-1":                  outest.BatchACK,
		"username: connbeat\npassword: wrong":  outest.BatchDrop, // 401: rejected, logged, dropped
		"":                                     outest.BatchDrop,
	} {
		c, _ := newTestClient(t, srv.URL, "hosts: [x]\n"+yaml)
		tags := publishUntilDone(t, c, events(1))
		assert.Equal(t, want, tags[len(tags)-1], yaml)
	}
	assert.Len(t, rc.events(), 2)
}

func TestTLS(t *testing.T) {
	pki, err := certs.Write(t.TempDir())
	require.NoError(t, err)
	cert, err := tls.LoadX509KeyPair(pki.ServerCert, pki.ServerKey)
	require.NoError(t, err)
	rc := &receiver{t: t}
	srv := httptest.NewUnstartedServer(rc)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	defer srv.Close()

	c, _ := newTestClient(t, srv.URL, "hosts: [x]\nssl.certificate_authorities: ['"+pki.CA+"']")
	assert.Equal(t, []outest.BatchSignalTag{outest.BatchACK}, publishUntilDone(t, c, events(7)))
	assert.Equal(t, []int{7}, ids(rc.events()))

	// Without the CA the server is not trusted: a retryable transport error.
	untrusting, _ := newTestClient(t, srv.URL, "hosts: [x]")
	b := outest.NewBatch(events(8)...)
	err = untrusting.Publish(t.Context(), b)
	require.Error(t, err)
	assert.True(t, strings.Contains(err.Error(), "certificate"), err.Error())
	assert.Equal(t, outest.BatchRetry, b.Signals[0].Tag)
}

func TestCloseEndsRetryAfterWait(t *testing.T) {
	rc := &receiver{t: t, script: func(int, *nethttp.Request) (int, nethttp.Header) {
		return nethttp.StatusServiceUnavailable, nethttp.Header{"Retry-After": {"3600"}}
	}}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	c, _ := newTestClient(t, srv.URL, "hosts: [x]")
	go func() { time.Sleep(200 * time.Millisecond); c.Close() }()
	b := outest.NewBatch(events(1)...)
	err := c.Publish(t.Context(), b)
	require.ErrorContains(t, err, "closed while waiting")
	assert.Equal(t, outest.BatchCancelled, b.Signals[0].Tag, "not ACKed, not dropped: back to the queue")
}

// TestRedirects: a 307/308 is followed with the same POST and body; a
// 301/302/303, which Go would follow as a body-less GET whose 200 would ACK
// a batch that never arrived, is not followed: the batch stays queued and
// the error names the new location.
func TestRedirects(t *testing.T) {
	rc := &receiver{t: t}
	mux := nethttp.NewServeMux()
	mux.Handle("POST /events", rc)
	mux.HandleFunc("GET /events", func(w nethttp.ResponseWriter, _ *nethttp.Request) {
		w.WriteHeader(nethttp.StatusOK) // what a GET after a 302 would see
	})
	for _, code := range []int{301, 302, 303, 307, 308} {
		mux.HandleFunc(fmt.Sprintf("/moved%d", code), func(w nethttp.ResponseWriter, r *nethttp.Request) {
			nethttp.Redirect(w, r, "/events", code)
		})
	}
	srv := httptest.NewServer(mux)
	defer srv.Close()

	for _, code := range []int{307, 308} {
		c, obs := newTestClient(t, fmt.Sprintf("%s/moved%d", srv.URL, code), "hosts: [x]")
		b := outest.NewBatch(events(code)...)
		require.NoError(t, c.Publish(t.Context(), b))
		assert.Equal(t, outest.BatchACK, b.Signals[0].Tag, "%d followed", code)
		assert.Equal(t, 1, obs.Acked)
	}
	assert.Equal(t, []int{307, 308}, ids(rc.events()), "307 and 308 delivered the body")

	for _, code := range []int{301, 302, 303} {
		c, obs := newTestClient(t, fmt.Sprintf("%s/moved%d", srv.URL, code), "hosts: [x]")
		b := outest.NewBatch(events(code)...)
		err := c.Publish(t.Context(), b)
		require.ErrorContains(t, err, fmt.Sprintf("answered %d", code))
		require.ErrorContains(t, err, `"/events"`, "the error names the new location")
		assert.Equal(t, outest.BatchRetry, b.Signals[0].Tag, "%d: the batch is kept", code)
		assert.Zero(t, obs.Acked)
		assert.Equal(t, 1, obs.Retryable)
	}
	assert.Equal(t, []int{307, 308}, ids(rc.events()), "nothing was ACKed by a GET")
}

// TestRedirectToAnotherOrigin: a 307/308 to another host or port, or from
// https to http, is not followed: the events and the configured headers
// (an API key here) never reach the other origin, the batch is kept and
// the error names the location.
func TestRedirectToAnotherOrigin(t *testing.T) {
	var leaked atomic.Int32
	other := httptest.NewServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		leaked.Add(1)
		t.Errorf("the other origin got %s %s with X-Api-Key %q", r.Method, r.URL, r.Header.Get("X-Api-Key"))
	}))
	defer other.Close()
	tlsSrv := httptest.NewTLSServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		// https -> the same host and port over plain http
		nethttp.Redirect(w, r, "http://"+r.Host+"/in", nethttp.StatusPermanentRedirect)
	}))
	defer tlsSrv.Close()
	redirector := httptest.NewServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		nethttp.Redirect(w, r, other.URL+"/in", nethttp.StatusTemporaryRedirect)
	}))
	defer redirector.Close()

	for _, tc := range []struct{ name, url, yaml, location string }{
		{"another host", redirector.URL + "/in", "hosts: [x]\nheaders: {X-Api-Key: s3cr3t}", other.URL + "/in"},
		{"https to http", tlsSrv.URL + "/in", "hosts: [x]\nheaders: {X-Api-Key: s3cr3t}\nssl.verification_mode: none", "http://"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, obs := newTestClient(t, tc.url, tc.yaml)
			b := outest.NewBatch(events(1)...)
			err := c.Publish(t.Context(), b)
			require.ErrorContains(t, err, "a redirect connbeat does not follow")
			require.ErrorContains(t, err, tc.location)
			assert.Equal(t, outest.BatchRetry, b.Signals[0].Tag, "the batch is kept")
			assert.Zero(t, obs.Acked)
		})
	}
	assert.Zero(t, leaked.Load())
}

// TestSplitOn413: an endpoint that takes at most 3 events a request, and
// never event 99 (too big), answers 413 to more. The batch is split in halves until each part fits,
// as libbeat's Elasticsearch output does, and every event is delivered
// once; a single event the endpoint refuses is dropped and counted.
func TestSplitOn413(t *testing.T) {
	rc := &receiver{t: t}
	srv := httptest.NewServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		evs, err := decodeBody(r)
		require.NoError(t, err)
		huge := slices.ContainsFunc(evs, func(e map[string]interface{}) bool { return e["id"].(float64) == 99 })
		if len(evs) > 3 || huge {
			w.WriteHeader(nethttp.StatusRequestEntityTooLarge)
			return
		}
		rc.mu.Lock()
		rc.got = append(rc.got, evs...)
		rc.mu.Unlock()
	}))
	defer srv.Close()
	c, obs := newTestClient(t, srv.URL, "hosts: [x]")

	// libbeat's part: a split batch comes back as two batches.
	queue := [][]beat.Event{events(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 99)}
	var signals []outest.BatchSignalTag
	for len(queue) > 0 {
		evs := queue[0]
		queue = queue[1:]
		b := outest.NewBatch(evs...)
		require.NoError(t, c.Publish(t.Context(), b))
		tag := b.Signals[len(b.Signals)-1].Tag // outest signals a split it refuses, then the drop
		signals = append(signals, tag)
		if tag == outest.BatchSplitRetry {
			queue = append(queue, evs[:len(evs)/2], evs[len(evs)/2:])
		}
	}
	got := ids(rc.events())
	sort.Ints(got)
	assert.Equal(t, []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, got, "each event once")
	assert.Equal(t, 10, obs.Acked)
	assert.Equal(t, 1, obs.Permanent, "the event refused alone")
	assert.Contains(t, signals, outest.BatchDrop)
}
