package amqp

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/elastic/beats/v7/libbeat/outputs"
	"github.com/elastic/beats/v7/libbeat/outputs/codec"
	"github.com/elastic/beats/v7/libbeat/outputs/outil"
	"github.com/elastic/beats/v7/libbeat/publisher"
	"github.com/elastic/elastic-agent-libs/logp"
	amqp091 "github.com/rabbitmq/amqp091-go"
)

// client publishes batches to the first broker of hosts that answers.
// libbeat calls Connect and Publish from one goroutine; Close may come from
// another, to end a wait at shutdown.
type client struct {
	log      *logp.Logger
	cfg      *amqpConfig
	dialer   *dialer
	observer outputs.Observer
	codec    codec.Codec
	key      outil.Selector
	index    string

	mu   sync.Mutex
	sess *session
	next int // index in hosts to try first

	warnMu   sync.Mutex
	lastWarn time.Time
	unwarned int // events dropped since the last warning
}

// warnEvery spaces out the warnings about dropped events.
const warnEvery = 30 * time.Second

func (c *client) String() string { return fmt.Sprintf("amqp(%v)", redactAll(c.cfg.Hosts)) }

// Connect tries each host once, in order, starting with the one after a
// host whose session broke; the first that accepts is used.
func (c *client) Connect(ctx context.Context) error {
	c.mu.Lock()
	start := c.next
	old := c.sess
	c.sess = nil
	c.mu.Unlock()
	if old != nil {
		old.close()
	}
	var errs []error
	n := len(c.cfg.Hosts)
	for i := 0; i < n; i++ {
		idx := (start + i) % n
		s, err := c.dialer.dial(ctx, c.cfg.Hosts[idx])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		c.mu.Lock()
		c.sess, c.next = s, idx
		c.mu.Unlock()
		if i > 0 {
			c.log.Infof("connected to %s after %d host(s) failed", s.host, i)
		}
		return nil
	}
	c.mu.Lock()
	c.next = (start + 1) % n
	c.mu.Unlock()
	return errors.Join(errs...)
}

// Close ends the session promptly, broker up or down; a Publish waiting
// for confirms returns and retries its unconfirmed events.
func (c *client) Close() error {
	c.mu.Lock()
	s := c.sess
	c.sess = nil
	c.mu.Unlock()
	if s != nil {
		s.close()
	}
	return nil
}

// breakSession drops a session that failed, so the next Connect starts
// with the next host.
func (c *client) breakSession(s *session) {
	c.mu.Lock()
	if c.sess == s {
		c.sess = nil
		c.next = (c.next + 1) % len(c.cfg.Hosts)
	}
	c.mu.Unlock()
	s.close()
}

type pending struct {
	event   publisher.Event
	confirm *amqp091.DeferredConfirmation
}

// seqHeader carries the channel's publish sequence number in each message,
// so that a returned message is matched to its event.
const seqHeader = "connbeat-seq"

// Publish sends every event of the batch as one message and waits for the
// broker's confirms. The batch is ACKed only when every message was
// confirmed; otherwise the unconfirmed events are handed back for retry
// and the error makes libbeat reconnect with backoff. Events that cannot
// be encoded are dropped and counted once.
func (c *client) Publish(ctx context.Context, batch publisher.Batch) error {
	events := batch.Events()
	c.observer.NewBatch(len(events))
	c.mu.Lock()
	s := c.sess
	c.mu.Unlock()
	if s == nil || s.broken() {
		batch.Cancelled()
		return errors.New("output.amqp is not connected")
	}

	sent := make([]pending, 0, len(events))
	var (
		unsent      []publisher.Event
		dropped     int
		sendErr     error
		deliveryMod = amqp091.Transient
	)
	if c.cfg.Persistent {
		deliveryMod = amqp091.Persistent
	}
	for i := range events {
		ev := &events[i]
		if sendErr != nil {
			unsent = append(unsent, *ev)
			continue
		}
		body, key, err := c.encode(ev)
		if err != nil {
			dropped++
			c.log.Errorf("dropping an event that cannot be encoded: %v", err)
			continue
		}
		// amqp091 copies body into its frames before returning, so the
		// codec's buffer may be reused for the next event.
		// mandatory: a message no queue is bound for comes back instead
		// of being confirmed and discarded.
		dc, err := s.ch.PublishWithDeferredConfirmWithContext(ctx, c.cfg.Exchange, key, true, false, amqp091.Publishing{
			ContentType:  "application/json",
			DeliveryMode: deliveryMod,
			Timestamp:    ev.Content.Timestamp,
			AppId:        c.index,
			Headers:      amqp091.Table{seqHeader: int64(s.ch.GetNextPublishSeqNo())},
			Body:         body,
		})
		if err != nil {
			sendErr = err
			unsent = append(unsent, *ev)
			continue
		}
		c.observer.WriteBytes(len(body))
		sent = append(sent, pending{event: *ev, confirm: dc})
	}
	if dropped > 0 {
		c.observer.PermanentErrors(dropped)
	}

	start := time.Now()
	unconfirmed, returned, waitErr := c.awaitConfirms(ctx, s, sent)
	if len(sent) > 0 {
		c.observer.ReportLatency(time.Since(start))
	}
	if acked := len(sent) - len(unconfirmed) - len(returned.events); acked > 0 {
		c.observer.AckedEvents(acked)
	}
	retry := append(unconfirmed, unsent...)
	if n := len(returned.events); n > 0 {
		if c.cfg.Unroutable == UnroutableDrop {
			c.observer.PermanentErrors(n)
			c.warnDropped(fmt.Sprintf("events dropped: %s returned them as unroutable (%s); bind a queue for their routing keys (output.amqp.unroutable: drop)", s.host, returned), n)
		} else {
			retry = append(retry, returned.events...)
		}
	}
	if len(retry) == 0 {
		batch.ACK()
		return nil
	}
	if sendErr == nil && waitErr == nil && len(unconfirmed) == 0 && len(unsent) == 0 {
		// Only unroutable messages, with unroutable: retry: the error
		// makes libbeat back off before they are sent again.
		c.observer.RetryableErrors(len(retry))
		batch.RetryEvents(retry)
		return fmt.Errorf("%s returned %d of %d messages as unroutable (%s); sending them again (output.amqp.unroutable: retry)",
			s.host, len(retry), len(events), returned)
	}

	err := sendErr
	if err == nil {
		err = waitErr
	}
	c.observer.WriteError(err)
	c.observer.RetryableErrors(len(retry))
	c.breakSession(s)
	batch.RetryEvents(retry)
	return fmt.Errorf("%d of %d events not confirmed by %s, sending them again: %w", len(retry), len(events), s.host, err)
}

func (c *client) encode(ev *publisher.Event) ([]byte, string, error) {
	key, err := c.key.Select(&ev.Content)
	if err != nil {
		return nil, "", fmt.Errorf("routing key: %w", err)
	}
	if len(key) > 255 {
		return nil, "", fmt.Errorf("routing key %.40q... is %d bytes; AMQP allows 255", key, len(key))
	}
	body, err := c.codec.Encode(c.index, &ev.Content)
	if err != nil {
		return nil, "", err
	}
	return body, key, nil
}

// awaitConfirms waits for each message's confirm up to confirm_timeout in
// all. It returns the events the broker did not confirm (nacked, or
// unknown because the connection was lost, the wait timed out or the
// client was closed), and those it confirmed after returning them as
// unroutable.
func (c *client) awaitConfirms(ctx context.Context, s *session, sent []pending) (retry []publisher.Event, returned returns, err error) {
	timer := time.NewTimer(c.cfg.ConfirmTimeout)
	defer timer.Stop()
	var nacks int
	confirmed := make(map[uint64]int, len(sent)) // delivery tag -> index in sent
	for i, p := range sent {
		if err != nil {
			retry = append(retry, p.event)
			continue
		}
		select {
		case <-p.confirm.Done():
			if p.confirm.Acked() {
				confirmed[p.confirm.DeliveryTag] = i
			} else {
				// A lost connection also resolves every pending confirm
				// as not acknowledged.
				nacks++
				retry = append(retry, p.event)
			}
			continue
		case <-timer.C:
			err = fmt.Errorf("no confirm within %s (output.amqp.confirm_timeout)", c.cfg.ConfirmTimeout)
		case <-s.done:
			err = errors.New("output closed while waiting for confirms")
		case <-ctx.Done():
			err = ctx.Err()
		}
		retry = append(retry, p.event)
	}
	if err == nil && nacks > 0 {
		if s.broken() {
			err = errors.New("connection lost before the broker confirmed")
		} else {
			err = fmt.Errorf("broker nacked %d messages", nacks)
		}
	}
	// Every return came before its message's confirm: the channel holds
	// them all now. A returned message is confirmed too; one whose
	// confirm never came is retried as unconfirmed already.
	for {
		select {
		case r := <-s.returns:
			seq, _ := r.Headers[seqHeader].(int64)
			if i, ok := confirmed[uint64(seq)]; ok {
				returned.add(sent[i].event, r)
			}
			continue
		default:
		}
		break
	}
	return retry, returned, err
}

// returns are the messages of a batch the broker returned as unroutable.
type returns struct {
	events []publisher.Event
	keys   map[string]int // routing key -> messages
	reason string         // the broker's reply text, e.g. NO_ROUTE
}

func (r *returns) add(e publisher.Event, ret amqp091.Return) {
	if r.keys == nil {
		r.keys = map[string]int{}
	}
	r.events = append(r.events, e)
	r.keys[ret.RoutingKey]++
	r.reason = fmt.Sprintf("%d %s", ret.ReplyCode, ret.ReplyText)
}

// String names the reason and up to three routing keys.
func (r returns) String() string {
	keys := slices.Sorted(maps.Keys(r.keys))
	more := ""
	if len(keys) > 3 {
		keys, more = keys[:3], fmt.Sprintf(" and %d more", len(keys)-3)
	}
	return fmt.Sprintf("%s, routing keys %q%s", r.reason, keys, more)
}

// warnDropped logs "<n> <what>" at most every warnEvery, summing the
// counts in between.
func (c *client) warnDropped(what string, n int) {
	c.warnMu.Lock()
	defer c.warnMu.Unlock()
	c.unwarned += n
	if time.Since(c.lastWarn) < warnEvery {
		return
	}
	c.log.Warnf("%d %s", c.unwarned, what)
	c.lastWarn, c.unwarned = time.Now(), 0
}

func redactAll(hosts []string) []string {
	out := make([]string, len(hosts))
	for i, h := range hosts {
		if u, err := parseHost(h); err == nil {
			out[i] = u.Redacted()
		} else {
			out[i] = "<invalid URL>"
		}
	}
	return out
}
