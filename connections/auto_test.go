package connections

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/elastic/elastic-agent-libs/logp/logptest"
	"github.com/elastic/elastic-agent-libs/monitoring"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connbeat/connbeat/internal/testkit/sockettest"
)

// TestAutoSourceSwitches drives socket_source: auto across its thresholds
// with real sockets, in a network namespace of its own so that the counts
// are the test's alone (other packages' tests open and close sockets at
// the same time): up to bpf when the namespace gains sockets, back to
// netlink when they close, and to netlink for good when the bpf source
// fails; every poll lists the test's connections, whichever source read it.
func TestAutoSourceSwitches(t *testing.T) {
	requireSource(t, BPF)
	logger, logs := logptest.NewTestingLoggerWithObserver(t, "test")
	reg := monitoring.NewRegistry()
	err := <-sockettest.InNewNetns(func() error {
		opts := sourceOptions(Auto, false, logger)
		opts.Metrics = reg
		// Reads kept to use again: the source not read drops them.
		opts.ReuseOwn = true
		src, err := Open(opts)
		if err != nil {
			return err
		}
		defer src.Close()
		auto := src.(*autoSource)
		auto.up, auto.down = 40, 35

		// step polls once and checks how many sockets it listed and which
		// source the next poll will read through.
		step := func(what string, sockets int, next string) error {
			got, err := src.Sockets(context.Background(), nil)
			if err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			assert.Len(t, got, sockets, what)
			assert.Equal(t, next, src.Name(), what)
			return nil
		}
		if err := step("empty namespace", 0, "netlink"); err != nil {
			return err
		}
		ln, conns, err := connect(30)
		if err != nil {
			return err
		}
		defer ln.Close()
		if err := step("30 connections", 61, "bpf"); err != nil {
			return err
		}
		assert.Zero(t, kept(auto.netlink), "netlink's read dropped at the switch")
		if err := step("read through bpf", 61, "bpf"); err != nil {
			return err
		}
		assert.Equal(t, 61, kept(auto.bpf), "bpf's read kept")
		for _, c := range conns {
			c.Close()
		}
		// One side of each closed connection stays in TIME_WAIT: 31
		// sockets, under the lower threshold (FIN_WAIT states first).
		for deadline := time.Now().Add(10 * time.Second); src.Name() != "netlink" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if _, err := src.Sockets(context.Background(), nil); err != nil {
				return err
			}
		}
		assert.Equal(t, "netlink", src.Name(), "back under the lower threshold")
		assert.Zero(t, kept(auto.bpf), "bpf's read dropped at the switch")

		ln2, conns2, err := connect(30)
		if err != nil {
			return err
		}
		defer ln2.Close()
		defer func() {
			for _, c := range conns2 {
				c.Close()
			}
		}()
		if err := step("30 more connections", 92, "bpf"); err != nil {
			return err
		}
		// The bpf source breaks under auto: the poll still answers,
		// through netlink, and bpf is not used again.
		if err := auto.bpf.Close(); err != nil {
			return err
		}
		if err := step("bpf failed", 92, "netlink"); err != nil {
			return err
		}
		return step("not tried again", 92, "netlink")
	})
	require.NoError(t, err)

	var infos, warns []string
	for _, e := range logs.TakeAll() {
		switch e.Level.String() {
		case "info":
			infos = append(infos, e.Message)
		case "warn":
			warns = append(warns, e.Message)
		}
	}
	require.Len(t, infos, 3, "%q", infos)
	assert.Contains(t, infos[0], "socket source: bpf from the next poll (61 sockets")
	assert.Contains(t, infos[1], "socket source: netlink from the next poll")
	assert.Contains(t, infos[2], "socket source: bpf from the next poll (92 sockets")
	require.Len(t, warns, 1, "%q", warns)
	assert.Contains(t, warns[0], "socket source bpf failed")
	assert.Contains(t, warns[0], "bpf source closed")

	// Up, down, up, and down for good; the failed bpf poll is counted.
	snap := monitoring.CollectFlatSnapshot(reg, monitoring.Full, false)
	assert.Equal(t, int64(4), snap.Ints["socket_source.switches"])
	assert.Equal(t, int64(1), snap.Ints["socket_source.bpf.errors"])
	assert.Zero(t, snap.Ints["socket_source.netlink.errors"])
	assert.Equal(t, int64(92), snap.Ints["socket_source.netlink.sockets"], "the last poll's count")
	assert.Positive(t, snap.Ints["socket_source.bpf.polls"])
}

// connect opens a listener on 127.0.0.1 and n accepted connections to it
// (2n+1 sockets), returning the listener and both ends of each connection.
func connect(n int) (net.Listener, []net.Conn, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	var conns []net.Conn
	for range n {
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			return ln, conns, err
		}
		s, err := ln.Accept()
		if err != nil {
			return ln, conns, err
		}
		conns = append(conns, c, s)
	}
	if len(conns) != 2*n {
		return ln, conns, errors.New("short of connections")
	}
	return ln, conns, nil
}

// kept counts the sockets a source keeps from its reads to use again.
func kept(src Source) int {
	if c, ok := src.(*counted); ok {
		src = c.Source
	}
	n := 0
	for _, r := range src.(*nsSource).cache {
		n += len(r.sockets)
	}
	return n
}
