package pipeline

import (
	"context"
	"net"
	"os"
	"testing"
	"time"

	"github.com/elastic/beats/v7/libbeat/beat"
	"github.com/elastic/elastic-agent-libs/monitoring"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connbeat/connbeat/config"
	"github.com/connbeat/connbeat/connections"
)

// TestPollLoopback runs the pipeline as the agent builds it over each
// forced socket source on the real kernel: the test's listener, its inbound
// peer and its outbound client come out as events owned by this process,
// and the counters in the registry say what the poll saw.
func TestPollLoopback(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	c, err := net.Dial("tcp4", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	// Accepted, so that the inbound end has an owner too.
	s, err := ln.Accept()
	require.NoError(t, err)
	defer s.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)

	for _, source := range []string{connections.Netlink, connections.ProcFS} {
		t.Run(source, func(t *testing.T) {
			cfg := config.Default()
			cfg.SocketSource = source
			reg := monitoring.NewRegistry()
			p, err := New(Options{Config: cfg, Metrics: reg})
			require.NoError(t, err)
			defer p.Close()
			assert.Equal(t, source, p.SourceName())

			var events []beat.Event
			stats, err := p.Poll(context.Background(), time.Now(), func(e beat.Event) { events = append(events, e) })
			require.NoError(t, err)

			kinds := map[string]bool{}
			for _, e := range events {
				lport, _ := e.Fields.GetValue("local_port")
				rport, _ := e.Fields.GetValue("remote_port")
				if lport != port && rport != port {
					continue
				}
				dir, err := e.Fields.GetValue("connbeat.direction")
				require.NoError(t, err)
				pid, err := e.Fields.GetValue("local_process.pid")
				require.NoError(t, err, "the test's sockets are joined to this process: %v", e.Fields)
				assert.EqualValues(t, os.Getpid(), pid)
				kinds[dir.(string)] = true
			}
			assert.Equal(t, map[string]bool{"listening": true, "inbound": true, "outbound": true}, kinds)

			snap := monitoring.CollectFlatSnapshot(reg, monitoring.Full, false)
			assert.Equal(t, int64(1), snap.Ints["polls"])
			assert.Equal(t, int64(stats.Sockets), snap.Ints["sockets"])
			assert.Equal(t, int64(stats.Sockets), snap.Ints["socket_source."+source+".sockets"])
			assert.Equal(t, int64(len(events)), snap.Ints["reports"])
			assert.Equal(t, int64(stats.Procs.Processes), snap.Ints["procs.processes"])
			assert.Positive(t, snap.Ints["dedup.keys"])

			// Within the window nothing is reported again.
			events = events[:0]
			_, err = p.Poll(context.Background(), time.Now(), func(e beat.Event) { events = append(events, e) })
			require.NoError(t, err)
			assert.Empty(t, events)
			snap = monitoring.CollectFlatSnapshot(reg, monitoring.Full, false)
			assert.Equal(t, int64(2), snap.Ints["polls"])
		})
	}
}

// TestPollErrorsCounted makes the source fail: the poll and the source
// count the error.
func TestPollErrorsCounted(t *testing.T) {
	cfg := config.Default()
	cfg.SocketSource = connections.ProcFS
	cfg.ProcPath = t.TempDir() // no net/tcp under it
	cfg.ExposeProcessInfo = false
	reg := monitoring.NewRegistry()
	p, err := New(Options{Config: cfg, Metrics: reg})
	require.NoError(t, err)
	defer p.Close()
	_, err = p.Poll(context.Background(), time.Now(), func(beat.Event) {})
	require.ErrorContains(t, err, "reading sockets from procfs")
	snap := monitoring.CollectFlatSnapshot(reg, monitoring.Full, false)
	assert.Equal(t, int64(1), snap.Ints["poll_errors"])
	assert.Equal(t, int64(1), snap.Ints["socket_source.procfs.errors"])
}

// TestPollCancelledNotCountedAsError: a poll cancelled by the agent's stop
// returns context.Canceled, which neither the poll nor the source counts as
// an error.
func TestPollCancelledNotCountedAsError(t *testing.T) {
	cfg := config.Default()
	cfg.SocketSource = connections.Netlink
	reg := monitoring.NewRegistry()
	p, err := New(Options{Config: cfg, Metrics: reg})
	require.NoError(t, err)
	defer p.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = p.Poll(ctx, time.Now(), func(beat.Event) {})
	require.ErrorIs(t, err, context.Canceled)
	snap := monitoring.CollectFlatSnapshot(reg, monitoring.Full, false)
	assert.Equal(t, int64(1), snap.Ints["polls"])
	assert.Zero(t, snap.Ints["poll_errors"])
	assert.Zero(t, snap.Ints["socket_source.netlink.errors"])
}

func TestNewRefusesUnknownSource(t *testing.T) {
	cfg := config.Default()
	cfg.SocketSource = "kprobe"
	_, err := New(Options{Config: cfg})
	require.ErrorContains(t, err, `unknown socket source "kprobe"`)
}
