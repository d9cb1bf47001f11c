package beater

import (
	"context"
	"testing"
	"time"

	"github.com/elastic/elastic-agent-libs/logp/logptest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connbeat/connbeat/config"
	"github.com/connbeat/connbeat/connections"
	"github.com/connbeat/connbeat/internal/sockettest"
)

// TestAutoSourceSwitches drives socket_source: auto across its thresholds
// with real sockets: up to bpf when the host gains sockets, back to netlink
// when they close, and to netlink for good when the bpf source fails; the
// sockets of every poll, whichever source read them, are the test's.
func TestAutoSourceSwitches(t *testing.T) {
	if err := bpfAvailable(); err != nil {
		t.Skipf("the bpf source cannot run here: %v", err)
	}
	logger, logs := logptest.NewTestingLoggerWithObserver(t, "test")
	src, err := selectSource(sourceConfig(config.SourceAuto, false), logger)
	if connections.IsUnavailable(err) {
		t.Skipf("netlink unavailable: %v", err)
	}
	require.NoError(t, err)
	defer src.Close()
	auto := src.(*autoSource)

	poll := func() int {
		t.Helper()
		sockets, err := src.Sockets(context.Background(), nil)
		require.NoError(t, err)
		return len(sockets)
	}
	base := poll()
	auto.up, auto.down = base+50, base+35
	assert.Equal(t, "netlink", src.Name())

	lb := sockettest.New(t)
	lb.Connect(lb.Listen("tcp4", "127.0.0.1:0"), "127.0.0.1", 30) // 61 sockets
	poll()
	assert.Equal(t, "bpf", src.Name(), "switched for the next poll")
	entries := logs.TakeAll()
	require.Len(t, entries, 1)
	assert.Contains(t, entries[0].Message, "socket source: bpf from the next poll")
	sockets, err := src.Sockets(context.Background(), nil)
	require.NoError(t, err)
	assert.Len(t, lb.Ours(sockets), 61, "read through bpf")

	for _, c := range lb.Conns {
		c.Close()
	}
	// One side of each closed connection lingers in TIME_WAIT: 31 of the
	// test's sockets stay, under the lower threshold.
	for deadline := time.Now().Add(10 * time.Second); src.Name() != "netlink" && time.Now().Before(deadline); {
		poll()
		time.Sleep(50 * time.Millisecond)
	}
	require.Equal(t, "netlink", src.Name(), "back under the lower threshold")
	entries = logs.TakeAll()
	require.Len(t, entries, 1)
	assert.Contains(t, entries[0].Message, "socket source: netlink from the next poll")

	// Up again, then the bpf source breaks under it: the poll still
	// answers, through netlink, and bpf is not used again.
	lb2 := sockettest.New(t)
	lb2.Connect(lb2.Listen("tcp4", "127.0.0.1:0"), "127.0.0.1", 30)
	poll()
	require.Equal(t, "bpf", src.Name())
	require.NoError(t, auto.bpf.Close())
	sockets, err = src.Sockets(context.Background(), nil)
	require.NoError(t, err)
	assert.Len(t, lb2.Ours(sockets), 61, "read through netlink after the failure")
	assert.Equal(t, "netlink", src.Name())
	poll()
	assert.Equal(t, "netlink", src.Name(), "not tried again")
	var warned bool
	for _, e := range logs.TakeAll() {
		if e.Level.String() == "warn" {
			warned = true
			assert.Contains(t, e.Message, "socket source bpf failed")
			assert.Contains(t, e.Message, "bpf source closed")
		}
	}
	assert.True(t, warned, "the failure is logged as a warning")
}
