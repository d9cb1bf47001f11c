package pipeline

import (
	"context"
	"errors"
	"net"
	"testing"

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
// nothing changed uses the last full read's records again, without
// classifying; one that changed, or that follows a failed read, classifies.
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
	p, err := New(Options{Config: cfg, WrapSource: func(s connections.Source) connections.Source {
		src = &replay{Source: s}
		return src
	}})
	require.NoError(t, err)
	defer p.Close()

	listed := func(records []model.Record) bool {
		for _, r := range records {
			if r.Kind == model.Listener && r.Socket.LocalPort == port {
				return true
			}
		}
		return false
	}
	poll := func() ([]model.Record, Stats) {
		records, stats, err := p.Records(context.Background())
		require.NoError(t, err)
		return records, stats
	}
	first, stats := poll()
	require.True(t, listed(first), "the test's listener")
	assert.False(t, stats.Unchanged, "nothing to use again yet")

	// A mark that classifying would overwrite.
	first[0].Owners = -1

	src.same = true
	again, stats := poll()
	assert.True(t, stats.Unchanged)
	assert.Equal(t, -1, again[0].Owners, "the same records, not classified again")

	src.same = false
	fresh, stats := poll()
	assert.False(t, stats.Unchanged)
	assert.NotEqual(t, -1, fresh[0].Owners, "classified again")

	src.fail = true
	_, _, err = p.Records(context.Background())
	require.Error(t, err)
	src.fail, src.same = false, true
	_, stats = poll()
	assert.False(t, stats.Unchanged, "a failed read in between: classified again")
	_, stats = poll()
	assert.True(t, stats.Unchanged, "and used again after")

	// A read that lists a change, after which the poll fails (here: it
	// is cancelled), leaves no records to use again: the next read,
	// the same as that one, is classified.
	src.same, src.without = false, port
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err = p.Records(ctx)
	require.ErrorIs(t, err, context.Canceled)
	src.same = true
	records, stats := poll()
	assert.False(t, stats.Unchanged)
	assert.False(t, listed(records), "the listener left out by the last read")
}
