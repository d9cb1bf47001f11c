package http

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	nethttp "net/http"
	"strings"
	"sync"
	"time"

	"github.com/elastic/beats/v7/libbeat/outputs"
	"github.com/elastic/beats/v7/libbeat/outputs/codec"
	"github.com/elastic/beats/v7/libbeat/publisher"
	"github.com/elastic/elastic-agent-libs/logp"
	"github.com/elastic/elastic-agent-libs/transport/httpcommon"
)

// drainLimit bounds how much of a response body is read to reuse the
// connection; the rest is discarded with the connection.
const drainLimit = 64 << 10

// maxResponseHeader bounds the headers of a response, 1xx ones included.
const maxResponseHeader = 64 << 10

// client sends batches to one URL. libbeat calls Publish from one
// goroutine; Close may come from another, to end a wait at shutdown.
type client struct {
	log      *logp.Logger
	url      string
	cfg      *httpConfig
	observer outputs.Observer
	codec    codec.Codec
	index    string
	body     *bodyWriter
	now      func() time.Time

	mu     sync.Mutex
	http   *nethttp.Client
	ctx    context.Context // cancelled by Close: ends requests and waits
	cancel context.CancelFunc
}

func newClient(url string, cfg *httpConfig, observer outputs.Observer, enc codec.Codec, index string, log *logp.Logger) *client {
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // not connected yet
	return &client{
		log:      log,
		url:      url,
		cfg:      cfg,
		observer: observer,
		codec:    enc,
		index:    index,
		body:     newBodyWriter(cfg.Format, cfg.Compression == "gzip", cfg.CompressionLevel),
		now:      time.Now,
		ctx:      ctx,
		cancel:   cancel,
	}
}

func (c *client) String() string { return "http(" + c.url + ")" }

// Connect prepares the HTTP client (TLS, proxy, timeout). The server is
// contacted by the first request; `connbeat test output` checks it now.
func (c *client) Connect(context.Context) error {
	hc, err := c.cfg.Transport.Client(httpcommon.WithTransportFunc(func(t *nethttp.Transport) {
		// An endpoint answers a batch with a status and a few headers: 10
		// MiB of them (Go's default), or of 1xx responses, is not one.
		t.MaxResponseHeaderBytes = maxResponseHeader
	}))
	if err != nil {
		return fmt.Errorf("output.http %s: %w", c.url, err)
	}
	hc.CheckRedirect = keepMethod
	c.mu.Lock()
	defer c.mu.Unlock()
	c.http = hc
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return nil
}

// Close ends a request or a Retry-After wait in progress.
func (c *client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cancel()
	if c.http != nil {
		c.http.CloseIdleConnections()
	}
	return nil
}

func (c *client) state() (*nethttp.Client, context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.http, c.ctx
}

// Publish sends the batch as one request. The batch is ACKed only on 2xx;
// on a retryable failure it goes back to the queue (libbeat retries it
// without limit by default) and the returned error makes libbeat back off.
func (c *client) Publish(_ context.Context, batch publisher.Batch) error {
	events := batch.Events()
	c.observer.NewBatch(len(events))
	c.body.reset()
	unencodable := 0
	for i := range events {
		enc, err := c.codec.Encode(c.index, &events[i].Content)
		if err != nil {
			unencodable++
			c.log.Errorf("dropping an event that cannot be encoded as JSON: %v", err)
			continue
		}
		c.body.add(enc)
	}
	if unencodable > 0 {
		c.observer.PermanentErrors(unencodable)
	}
	n := c.body.n
	if n == 0 {
		batch.ACK()
		return nil
	}
	body, err := c.body.finish()
	if err != nil {
		batch.Retry()
		return fmt.Errorf("encoding a batch for %s: %w", c.url, err)
	}

	hc, ctx := c.state()
	if hc == nil || ctx.Err() != nil {
		batch.Cancelled()
		return fmt.Errorf("output.http %s is not connected", c.url)
	}
	status, header, snippet, err := c.send(ctx, hc, body)
	if err != nil {
		c.observer.WriteError(err)
		c.observer.RetryableErrors(n)
		batch.Retry()
		return fmt.Errorf("sending %d events to %s: %w", n, c.url, err)
	}
	c.observer.WriteBytes(len(body))

	if status == nethttp.StatusRequestEntityTooLarge {
		// As libbeat's Elasticsearch output does: send each half again;
		// only a single event the endpoint refuses is dropped.
		if batch.SplitRetry() {
			c.observer.BatchSplit()
			c.observer.RetryableErrors(n)
			c.log.Infof("%s answered 413 to a batch of %d events (%d bytes); sending it again in two halves", c.url, n, len(body))
			return nil
		}
		c.log.Errorf("%s answered 413 to a single event of %d bytes; dropping it (raise the endpoint's request size limit). Response body: %q", c.url, len(body), snippet)
		c.observer.PermanentErrors(n)
		batch.Drop()
		return nil
	}
	switch classify(status) {
	case accepted:
		batch.ACK()
		c.observer.AckedEvents(n)
		return nil
	case retryable:
		if status == nethttp.StatusTooManyRequests {
			c.observer.ErrTooMany(n)
		} else {
			c.observer.RetryableErrors(n)
		}
		if wait := retryAfter(header.Get("Retry-After"), c.now(), c.cfg.MaxRetryAfter); wait > 0 {
			c.log.Warnf("%s answered %d with Retry-After: waiting %s before sending the batch of %d events again", c.url, status, wait, n)
			t := time.NewTimer(wait)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
				batch.Cancelled()
				return fmt.Errorf("output.http %s closed while waiting to retry", c.url)
			}
			// The server said when; no further backoff.
			batch.Retry()
			return nil
		}
		batch.Retry()
		if status/100 == 3 {
			return fmt.Errorf("%s answered %d %s to %q, a redirect connbeat does not follow (it would turn the POST into a GET and lose the batch, or send the events and headers to another origin); set hosts to the new URL if you trust it. The batch of %d events will be sent again",
				c.url, status, nethttp.StatusText(status), header.Get("Location"), n)
		}
		return fmt.Errorf("%s answered %d %s; the batch of %d events will be sent again", c.url, status, nethttp.StatusText(status), n)
	default:
		c.log.Errorf("%s rejected a batch of %d events with %d %s; dropping that batch (fix the endpoint or the config). Response body: %q",
			c.url, n, status, nethttp.StatusText(status), snippet)
		c.observer.PermanentErrors(n)
		batch.Drop()
		return nil
	}
}

// send POSTs body and returns the status, headers and the start of the
// response body.
func (c *client) send(ctx context.Context, hc *nethttp.Client, body []byte) (int, nethttp.Header, string, error) {
	req, err := nethttp.NewRequestWithContext(ctx, c.cfg.Method, c.url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, "", err
	}
	c.setHeaders(req)
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	c.observer.ReportLatency(time.Since(start))
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, int64(c.cfg.ErrorBodyBytes)))
	if n, err := io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit)); err == nil {
		c.observer.ReadBytes(len(snippet) + int(n))
	}
	return resp.StatusCode, resp.Header, string(snippet), nil
}

func (c *client) setHeaders(req *nethttp.Request) {
	for k, v := range c.cfg.Headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", c.body.contentType())
	if c.body.gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", "connbeat/"+c.index)
	}
	switch {
	case c.cfg.BearerToken != "":
		req.Header.Set("Authorization", "Bearer "+c.cfg.BearerToken)
	case c.cfg.Username != "":
		req.SetBasicAuth(c.cfg.Username, c.cfg.Password)
	}
}

// maxRedirects bounds a chain of 307/308 redirects.
const maxRedirects = 5

// keepMethod follows only redirects that resend the same request with its
// body (307, 308), and only within the configured URL's origin (scheme,
// host and port). Go follows 301, 302 and 303 by sending a GET without
// the body; the endpoint's 200 to that GET would ACK a batch that never
// arrived. And a redirect to another host, or from https to http, would
// carry the events and the configured headers (API keys among them; Go
// strips only Authorization and Cookie, and only for another domain)
// where nobody configured them to go, or in clear text. Such redirects
// are returned as the response instead: the batch is kept and sent again,
// and the error names the Location to put in hosts if it is trusted.
func keepMethod(req *nethttp.Request, via []*nethttp.Request) error {
	if len(via) >= maxRedirects {
		return fmt.Errorf("stopped after %d redirects", maxRedirects)
	}
	first := via[0].URL
	if req.Method != via[0].Method || req.URL.Scheme != first.Scheme || !strings.EqualFold(req.URL.Host, first.Host) {
		return nethttp.ErrUseLastResponse
	}
	return nil
}

// errRejected says the endpoint answered, but not with success.
var errRejected = errors.New("endpoint rejected the request")
