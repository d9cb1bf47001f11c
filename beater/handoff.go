package beater

import (
	"sync/atomic"
	"time"

	"github.com/elastic/beats/v7/libbeat/beat"
)

const (
	// handoffSize is how many events wait between the poll and libbeat's
	// queue with queue_full: drop.
	handoffSize = 512
	// stallAfter is how long libbeat may take no event at all before the
	// output counts as stalled and new events are dropped.
	stallAfter = time.Second
)

// handoff implements queue_full: drop. The poll hands each event to a
// goroutine that publishes it to libbeat and waits there while libbeat's
// queue is full. When the hand-off buffer is full too, the poll waits as
// long as libbeat keeps taking events (a slow output slows the poll down
// rather than losing events), and once libbeat has taken none for
// stallAfter (the output is down), new events are dropped and counted
// without waiting, until libbeat takes events again.
//
// libbeat's own beat.DropIfFull does not do this: its memory queue takes
// the request into a buffered channel and then waits for room, so the poll
// blocks on a dead output anyway; and DropIfFull events are not
// guaranteed, so an output gives up queued events after max_retries (the
// Kafka output after its first failed attempt).
type handoff struct {
	events    chan beat.Event
	done      chan struct{}
	dropped   func()
	forwarded atomic.Uint64 // events the goroutine has handed to libbeat
	stall     time.Duration

	// The poll's side: Publish is called from one goroutine only.
	stalled   bool
	stalledAt uint64
}

// newHandoff starts the goroutine that publishes to client; dropped is
// called for each event that did not fit.
func newHandoff(client beat.Client, size int, stall time.Duration, dropped func()) *handoff {
	h := &handoff{events: make(chan beat.Event, size), done: make(chan struct{}), dropped: dropped, stall: stall}
	go func() {
		defer close(h.done)
		for e := range h.events {
			client.Publish(e)
			h.forwarded.Add(1)
		}
	}()
	return h
}

// Publish hands e over. It waits at most h.stall, and not at all while the
// output is stalled.
func (h *handoff) Publish(e beat.Event) {
	select {
	case h.events <- e:
		return
	default:
	}
	if h.stalled {
		if h.forwarded.Load() == h.stalledAt {
			h.dropped()
			return
		}
		h.stalled = false
	}
	timer := time.NewTimer(h.stall)
	defer timer.Stop()
	for {
		progress := h.forwarded.Load()
		select {
		case h.events <- e:
			return
		case <-timer.C:
			if h.forwarded.Load() == progress {
				h.stalled, h.stalledAt = true, progress
				h.dropped()
				return
			}
			timer.Reset(h.stall)
		}
	}
}

// Close stops accepting events and lets the goroutine publish what it
// holds for up to wait. When it has not finished by then, Close calls
// force, which must make a Publish stuck on a full queue return (closing
// libbeat's client does), and waits for the goroutine to end. It reports
// whether everything was handed to libbeat. Call it after the last Publish.
func (h *handoff) Close(wait time.Duration, force func()) bool {
	close(h.events)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-h.done:
		return true
	case <-t.C:
	}
	force()
	<-h.done
	return false
}
