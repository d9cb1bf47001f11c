package zeromq

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/elastic/beats/v7/libbeat/outputs"
	"github.com/elastic/beats/v7/libbeat/outputs/codec"
	"github.com/elastic/beats/v7/libbeat/publisher"
	"github.com/elastic/elastic-agent-libs/logp"
	"github.com/go-zeromq/zmq4"
)

// warnEvery spaces out the warnings about dropped or waiting events.
const warnEvery = 30 * time.Second

// client is the output's libbeat client. libbeat calls Publish from one
// goroutine; Close may come from another.
type client struct {
	log      *logp.Logger
	cfg      *zmqConfig
	ep       endpoint
	observer outputs.Observer
	codec    codec.Codec
	index    string

	mu   sync.Mutex
	sock *socket

	warnMu   sync.Mutex
	lastWarn time.Time
	unwarned map[string]int // reason -> events since the last warning
}

func newClient(cfg *zmqConfig, observer outputs.Observer, enc codec.Codec, index string, log *logp.Logger) (*client, error) {
	ep, err := parseEndpoint(cfg.Endpoint, cfg.Bind)
	if err != nil {
		return nil, fmt.Errorf("output.zeromq.endpoint: %w", err)
	}
	return &client{log: log, cfg: cfg, ep: ep, observer: observer, codec: enc, index: index, unwarned: map[string]int{}}, nil
}

func (c *client) String() string {
	verb := "bind"
	if !c.cfg.Bind {
		verb = "connect"
	}
	return fmt.Sprintf("zeromq(%s %s %s)", c.cfg.Mode, verb, c.ep)
}

func (c *client) socketType() zmq4.SocketType {
	if c.cfg.Mode == ModePush {
		return zmq4.Push
	}
	return zmq4.Pub
}

// Connect binds the endpoint, or starts connecting to it (a connect
// succeeds before the peer is up and retries in the background).
func (c *client) Connect(context.Context) error {
	// A socket left from before must free the endpoint before it is bound again.
	_ = c.Close()
	s := newSocket(c.ep, c.cfg.Bind, c.socketType(), c.cfg.SendHWM, c.cfg.SendTimeout, c.cfg.MaxPeers, c.log)
	s.wrote = c.wrote
	if err := s.open(); err != nil {
		return fmt.Errorf("output.zeromq: %w", err)
	}
	c.mu.Lock()
	c.sock = s
	c.mu.Unlock()
	return nil
}

// Close writes what subscribers have queued (for up to a second) and
// closes the socket.
func (c *client) Close() error {
	c.mu.Lock()
	s := c.sock
	c.sock = nil
	c.mu.Unlock()
	if s == nil {
		return nil
	}
	return s.close()
}

func (c *client) socket() *socket {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sock
}

// encoded is an event ready to send, with its position in the batch.
type encoded struct {
	event int
	topic string
	msg   message
}

// encode encodes the batch's events and their topics; an event that
// cannot be encoded is counted as dropped and logged.
func (c *client) encode(events []publisher.Event) []encoded {
	out := make([]encoded, 0, len(events))
	bad := 0
	for i := range events {
		topic, err := c.cfg.Topic.Run(&events[i].Content)
		if err != nil {
			bad++
			c.log.Errorf("dropping an event whose topic cannot be formatted: %v", err)
			continue
		}
		payload, err := c.codec.Encode(c.index, &events[i].Content)
		if err != nil {
			bad++
			c.log.Errorf("dropping an event that cannot be encoded: %v", err)
			continue
		}
		// The codec reuses its buffer; the message may wait in a queue.
		msg := message{topic: []byte(topic), payload: append([]byte(nil), payload...)}
		out = append(out, encoded{event: i, topic: topic, msg: msg})
	}
	if bad > 0 {
		c.observer.PermanentErrors(bad)
	}
	return out
}

// Publish sends the batch. In pub mode it never waits: each event is
// queued for every connected subscriber whose prefix matches its topic,
// and counted as dropped when no subscriber matches or one of them holds
// send_hwm unwritten messages; the batch is ACKed. In push mode each
// event is written to the next connected consumer; what could not be
// written goes back to libbeat to be sent again.
func (c *client) Publish(_ context.Context, batch publisher.Batch) error {
	events := batch.Events()
	c.observer.NewBatch(len(events))
	s := c.socket()
	if s == nil {
		batch.Cancelled()
		return fmt.Errorf("%s is closed", c)
	}
	enc := c.encode(events)
	if c.cfg.Mode == ModePush {
		c.publishPush(s, batch, events, enc)
		return nil
	}
	c.publishPub(s, batch, enc)
	return nil
}

func (c *client) publishPub(s *socket, batch publisher.Batch, enc []encoded) {
	peers := s.live()
	// An event's topic is matched against each peer's subscriptions once
	// per batch: a batch carries few distinct topics.
	matching := map[string][]*peer{}
	queued, unmatched, full := 0, 0, 0
	for _, e := range enc {
		subs, ok := matching[e.topic]
		if !ok {
			for _, p := range peers {
				if !p.isClosed() && p.subscribed(e.topic) {
					subs = append(subs, p)
				}
			}
			matching[e.topic] = subs
		}
		refused := 0
		for _, p := range subs {
			if !p.offer(e.msg) {
				refused++
			}
		}
		switch {
		case len(subs) == 0:
			unmatched++
		case refused > 0:
			full++
		default:
			queued++
		}
	}
	batch.ACK()
	c.observer.AckedEvents(queued)
	if dropped := unmatched + full; dropped > 0 {
		c.observer.PermanentErrors(dropped)
	}
	if unmatched > 0 {
		c.log.Debugf("%s: %d events dropped: no subscriber for their topic", c, unmatched)
	}
	if full > 0 {
		c.warn(fmt.Sprintf("events dropped: a subscriber of their topic had send_hwm (%d) messages not yet written to it", c.cfg.SendHWM), full)
	}
}

func (c *client) publishPush(s *socket, batch publisher.Batch, events []publisher.Event, enc []encoded) {
	start := time.Now()
	for i := 0; i < len(enc); {
		p := s.nextPeer()
		if p == nil {
			rest := make([]publisher.Event, 0, len(enc)-i)
			for _, e := range enc[i:] {
				rest = append(rest, events[e.event])
			}
			batch.RetryEvents(rest)
			c.observer.AckedEvents(i)
			c.observer.RetryableErrors(len(rest))
			c.warn(fmt.Sprintf("events wait: no PULL peer connected within send_timeout (%s)", c.cfg.SendTimeout), len(rest))
			return
		}
		n, err := p.write([]message{enc[i].msg})
		if err != nil {
			// A partial message is discarded by the receiver when the
			// connection closes, so the event goes to the next peer whole.
			p.close()
			c.observer.WriteError(err)
			c.log.Warnf("%s: writing to PULL peer %s: %v; disconnecting it", c, p.name, err)
			continue
		}
		c.observer.WriteBytes(n)
		i++
	}
	batch.ACK()
	c.observer.AckedEvents(len(enc))
	c.observer.ReportLatency(time.Since(start))
}

// wrote is the pub-mode writers' report.
func (c *client) wrote(p *peer, n int, err error, lost int) {
	if n > 0 {
		c.observer.WriteBytes(n)
	}
	if err != nil {
		c.observer.WriteError(err)
		c.log.Warnf("%s: subscriber %s took nothing for send_timeout (%s) or failed (%v): disconnected it; %d events queued for it were not sent",
			c, p.name, c.cfg.SendTimeout, err, lost)
	}
}

// warn logs "<n> <what>" at most every warnEvery, summing the counts in
// between.
func (c *client) warn(what string, n int) {
	c.warnMu.Lock()
	defer c.warnMu.Unlock()
	c.unwarned[what] += n
	if time.Since(c.lastWarn) < warnEvery {
		return
	}
	c.lastWarn = time.Now()
	for w, count := range c.unwarned {
		c.log.Warnf("%s: %d %s", c, count, w)
	}
	clear(c.unwarned)
}
