package tests

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestZeroMQOutput runs the agent with output.zeromq binding a PUB socket.
// While nobody subscribes it keeps running and libbeat's dropped counter
// rises; then a zmq4 SUB subscribes to both kinds' prefixes and the events
// of real loopback connections arrive as (topic, JSON) messages whose
// topic is <kind>.v1.<host.name>, checked field by field.
func TestZeroMQOutput(t *testing.T) {
	t.Parallel()
	s := startScenario(t, "127.0.0.1", "127.0.0.2")
	port, mon := freePort(t), freePort(t)
	endpoint := fmt.Sprintf("tcp://127.0.0.1:%d", port)
	// A short aggregation window: the scenario is reported again every
	// 2 s, so events dropped before the subscriber came are sent again.
	a := outputAgent(t, "  poll_interval: 200ms\n  aggregation: 2s",
		fmt.Sprintf("output.zeromq:\n  endpoint: %q\n  send_hwm: 100", endpoint),
		s.only(), monitoring(mon))

	eventually(t, a, 60*time.Second, "events dropped while nobody subscribes", func() bool {
		// The output's counters appear once the output is up.
		dropped, _ := agentStats(t, mon).Get("libbeat.output.events.dropped").(float64)
		return dropped >= 3
	})
	st := agentStats(t, mon)
	assert.Zero(t, st.num(t, "libbeat.output.events.acked"), "nothing is delivered to nobody")
	assert.Zero(t, st.num(t, "libbeat.output.events.failed"))

	sub := zmq4.NewSub(t.Context(), zmq4.WithDialerMaxRetries(-1))
	defer sub.Close()
	require.NoError(t, sub.Dial(endpoint))
	for _, prefix := range []string{"listener.v1.", "connection.v1."} {
		require.NoError(t, sub.SetOption(zmq4.OptionSubscribe, prefix))
	}
	var (
		mu     sync.Mutex
		evs    []Event
		topics []string
		bad    []string
	)
	go func() {
		for {
			msg, err := sub.Recv()
			if err != nil {
				return
			}
			mu.Lock()
			var ev Event
			if len(msg.Frames) != 2 {
				bad = append(bad, fmt.Sprintf("%d frames", len(msg.Frames)))
			} else if err := json.Unmarshal(msg.Frames[1], &ev); err != nil {
				bad = append(bad, err.Error())
			} else {
				evs = append(evs, ev)
				topics = append(topics, string(msg.Frames[0]))
			}
			mu.Unlock()
		}
	}()
	eventually(t, a, 60*time.Second, "the scenario's events over ZeroMQ", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return s.complete(evs)
	})

	mu.Lock()
	got, gotTopics := append([]Event(nil), evs...), append([]string(nil), topics...)
	assert.Empty(t, bad, "every message is a topic frame and a JSON event")
	mu.Unlock()
	s.check(t, got)
	for i, e := range got {
		assert.Equal(t, e.Str("connbeat.kind")+".v1."+e.Str("host.name"), gotTopics[i])
	}
	st = agentStats(t, mon)
	assert.GreaterOrEqual(t, st.num(t, "libbeat.output.events.acked"), float64(3))
	assert.Zero(t, st.num(t, "libbeat.output.events.failed"))
}

// TestZeroMQHostileHandshake: a TCP client that sends a valid NULL
// greeting, then a command frame header announcing 2^63 bytes (or 2^40:
// an allocation that succeeds or kills the process) made the agent exit
// with a makeslice panic. The agent stays up, closes those connections
// and still delivers to a real subscriber.
func TestZeroMQHostileHandshake(t *testing.T) {
	t.Parallel()
	s := startScenario(t, "127.0.0.1", "127.0.0.3")
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	a := outputAgent(t, "  poll_interval: 200ms\n  aggregation: 2s",
		fmt.Sprintf("output.zeromq:\n  endpoint: \"tcp://%s\"", addr), s.only())

	greeting := make([]byte, 64)
	greeting[0], greeting[9], greeting[10] = 0xff, 0x7f, 3
	copy(greeting[12:], "NULL")
	for _, header := range [][]byte{
		{0x06, 0x80, 0, 0, 0, 0, 0, 0, 0}, // 2^63
		{0x06, 0, 0, 1, 0, 0, 0, 0, 0},    // 2^40
	} {
		var conn net.Conn
		eventually(t, a, 30*time.Second, "the output listening", func() bool {
			var err error
			conn, err = net.Dial("tcp", addr)
			return err == nil
		})
		_, err := conn.Write(append(append([]byte(nil), greeting...), header...))
		require.NoError(t, err)
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(30*time.Second)))
		_, err = io.Copy(io.Discard, conn)
		var ne net.Error
		assert.False(t, errors.As(err, &ne) && ne.Timeout(), "the agent closes the connection")
		conn.Close()
	}
	time.Sleep(time.Second)
	select {
	case <-a.done:
		t.Fatalf("the agent exited (%v): %s", a.err, tail(a.Stderr(), 4096))
	default:
	}
	assert.Contains(t, a.Stderr(), "ZMTP handshake refused")

	sub := zmq4.NewSub(t.Context(), zmq4.WithDialerMaxRetries(-1))
	defer sub.Close()
	require.NoError(t, sub.Dial("tcp://"+addr))
	require.NoError(t, sub.SetOption(zmq4.OptionSubscribe, ""))
	got := make(chan struct{})
	go func() {
		if _, err := sub.Recv(); err == nil {
			close(got)
		}
	}()
	select {
	case <-got:
	case <-time.After(60 * time.Second):
		t.Fatal("no event reached the subscriber after the hostile handshakes")
	}
	assert.Equal(t, 0, a.Stop(syscall.SIGTERM))
}
