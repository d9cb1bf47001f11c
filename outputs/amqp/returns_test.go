package amqp

import (
	"testing"
	"time"

	"github.com/elastic/beats/v7/libbeat/outputs/outest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestUnroutable: only connection events have a queue. The broker
// confirms a message no queue is bound for and discards it; published
// with mandatory, it comes back first. Before, the listener events were
// counted as delivered; now they are dropped and counted (unroutable:
// drop), or sent again (unroutable: retry) until a queue is bound.
func TestUnroutable(t *testing.T) {
	t.Run("drop", func(t *testing.T) {
		q := newConsumer(t, "cb-unroutable", "conns-drop", nil, "connbeat.connection.*")
		c, obs := connected(t, "exchange: cb-unroutable")
		sig, err := publish(t, c, event(1, "listener", "listening"), event(2, "connection", "inbound"),
			event(3, "listener", "listening"), event(4, "connection", "outbound"))
		require.NoError(t, err)
		assert.Equal(t, outest.BatchACK, sig.Tag)
		assert.Equal(t, 2, obs.Acked, "the routed events")
		assert.Equal(t, 2, obs.Permanent, "the unroutable events, dropped and counted")
		assert.Zero(t, obs.Retryable)
		require.Eventually(t, func() bool { return len(q.drain()) == 2 }, 30*time.Second, 50*time.Millisecond)

		// The session stays usable.
		sig, err = publish(t, c, event(5, "connection", "inbound"))
		require.NoError(t, err)
		assert.Equal(t, outest.BatchACK, sig.Tag)
		assert.Equal(t, 3, obs.Acked)
	})
	t.Run("retry", func(t *testing.T) {
		newConsumer(t, "cb-unroutable-r", "conns-retry", nil, "connbeat.connection.*")
		c, obs := connected(t, "exchange: cb-unroutable-r\nunroutable: retry")
		sig, err := publish(t, c, event(1, "listener", "listening"), event(2, "connection", "inbound"))
		require.Error(t, err)
		assert.Contains(t, err.Error(), "returned 1 of 2 messages as unroutable (312 NO_ROUTE, routing keys [\"connbeat.listener.listening\"])")
		require.Equal(t, outest.BatchRetryEvents, sig.Tag)
		require.Len(t, sig.Events, 1)
		assert.Equal(t, 1, sig.Events[0].Content.Fields["id"])
		assert.Equal(t, 1, obs.Acked)
		assert.Equal(t, 1, obs.Retryable)

		// A queue for listeners appears: the retried event is delivered.
		l := newConsumer(t, "cb-unroutable-r", "listeners-retry", nil, "connbeat.listener.*")
		require.NoError(t, c.Connect(t.Context()))
		sig, err = publish(t, c, event(1, "listener", "listening"))
		require.NoError(t, err)
		assert.Equal(t, outest.BatchACK, sig.Tag)
		require.Eventually(t, func() bool { return len(l.drain()) == 1 }, 30*time.Second, 50*time.Millisecond)
	})
}
