package pipeline

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/elastic/beats/v7/libbeat/beat"
	"github.com/elastic/elastic-agent-libs/monitoring"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connbeat/connbeat/config"
	"github.com/connbeat/connbeat/connections"
	"github.com/connbeat/connbeat/model"
)

// replay serves the real source's first read again, saying it is
// unchanged when same is set, or fails when fail is set: a host whose
// socket tables stand still, on demand.
type replay struct {
	connections.Source
	first      []model.Socket
	same, fail bool
	// without leaves the sockets at this local port out: a change.
	without uint16
}

func (r *replay) Sockets(ctx context.Context, dst []model.Socket) ([]model.Socket, error) {
	if r.fail {
		return dst, errors.New("made to fail")
	}
	if r.first == nil {
		var err error
		if r.first, err = r.Source.Sockets(ctx, nil); err != nil {
			return dst, err
		}
	}
	for _, s := range r.first {
		if s.LocalPort != r.without || r.without == 0 {
			dst = append(dst, s)
		}
	}
	return dst, nil
}

func (r *replay) Unchanged() bool { return r.same }

// TestFullReadUnchangedReusesRecords: a full read whose source says
// nothing changed reports the last full read's records again, grouped,
// without classifying; one that changed, or that follows a failed read,
// classifies.
func TestFullReadUnchangedReusesRecords(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	cfg := config.Default()
	cfg.SocketSource = connections.Netlink
	cfg.Capture = config.CapturePoll
	// The process join has its own test of a host that stands still
	// (procs); here the source alone decides.
	cfg.ExposeProcessInfo = false
	var src *replay
	reg := monitoring.NewRegistry()
	p, err := New(Options{Config: cfg, Metrics: reg, WrapSource: func(s connections.Source) connections.Source {
		src = &replay{Source: s}
		return src
	}})
	require.NoError(t, err)
	defer p.Close()
	// As with the event capture (without which every poll is a full
	// read, as this test needs): the full read's buffers are dropped.
	p.lean = true

	// listed finds the test's listener among the groups kept.
	listed := func() *model.Report {
		for i := range p.groups {
			if r := &p.groups[i]; r.Kind == model.Listener && r.Socket.LocalPort == port {
				return r
			}
		}
		return nil
	}
	now := time.Now()
	poll := func(ctx context.Context) (int, Stats, error) {
		// A window apart: every key is reported again.
		now = now.Add(cfg.Aggregation)
		var events int
		stats, err := p.Poll(ctx, now, func(beat.Event) { events++ })
		return events, stats, err
	}
	mustPoll := func() (int, Stats) {
		events, stats, err := poll(context.Background())
		require.NoError(t, err)
		return events, stats
	}
	first, stats := mustPoll()
	require.NotNil(t, listed(), "the test's listener")
	assert.False(t, stats.Unchanged, "nothing to use again yet")
	assert.Equal(t, len(p.groups), first, "a report per group")
	assert.Nil(t, p.records, "the full read's buffers dropped")

	// A mark that grouping again would overwrite.
	listed().Owners = -1

	src.same = true
	again, stats := mustPoll()
	assert.True(t, stats.Unchanged)
	assert.Equal(t, first, again, "the same reports")
	require.NotNil(t, listed())
	assert.Equal(t, -1, listed().Owners, "the same groups, not classified again")

	src.same = false
	_, stats = mustPoll()
	assert.False(t, stats.Unchanged)
	assert.NotEqual(t, -1, listed().Owners, "classified again")

	src.fail = true
	_, _, err = poll(context.Background())
	require.Error(t, err)
	src.fail, src.same = false, true
	_, stats = mustPoll()
	assert.False(t, stats.Unchanged, "a failed read in between: classified again")
	_, stats = mustPoll()
	assert.True(t, stats.Unchanged, "and used again after")

	// A read that lists a change, after which the poll fails (here: it
	// is cancelled), leaves no records to use again: the next read,
	// the same as that one, is classified.
	src.same, src.without = false, port
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err = poll(ctx)
	require.ErrorIs(t, err, context.Canceled)
	src.same = true
	_, stats = mustPoll()
	assert.False(t, stats.Unchanged)
	assert.Nil(t, listed(), "the listener left out by the last read")

	snap := monitoring.CollectFlatSnapshot(reg, monitoring.Full, false)
	assert.EqualValues(t, 6, snap.Ints["full_reads"], "the polls that did not fail")
	assert.EqualValues(t, 2, snap.Ints["full_reads_unchanged"])
}

// TestRecordsNotReused: connbeat top's reads (Records) show every record
// of a read, never groups kept from an earlier one.
func TestRecordsNotReused(t *testing.T) {
	cfg := config.Default()
	cfg.SocketSource = connections.Netlink
	cfg.Capture = config.CapturePoll
	cfg.ExposeProcessInfo = false
	var src *replay
	p, err := New(Options{Config: cfg, WrapSource: func(s connections.Source) connections.Source {
		src = &replay{Source: s, same: true}
		return src
	}})
	require.NoError(t, err)
	defer p.Close()
	for range 2 {
		records, stats, err := p.Records(context.Background())
		require.NoError(t, err)
		assert.False(t, stats.Unchanged)
		assert.NotEmpty(t, records)
	}
}
