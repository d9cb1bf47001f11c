package tests

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCaptureEventsShortConnection runs the agent with connbeat.capture:
// events and a 2 s poll: a connection that lives a few milliseconds, made
// by a process that exits at once, between two polls, is reported at both
// ends with each end's process. The same run with capture: poll is the
// control: its polls never see the connection open, and cannot name the
// process that made it.
func TestCaptureEventsShortConnection(t *testing.T) {
	for _, mode := range []string{"events", "poll"} {
		t.Run(mode, func(t *testing.T) {
			srv := StartPeer(t, nil, "serve", "tcp", "127.0.0.1:0", "4", "8")
			_, port := splitAddr(t, srv.Addr)
			a := RunAgent(t, AgentOptions{Connbeat: "  poll_interval: 2s\n  aggregation: 30s\n  capture: " + mode})
			a.WaitFor("the server's listener", func(e Event) bool {
				return e.Str("connbeat.direction") == "listening" && e.Get("local_port") == port
			})
			if mode == "events" {
				require.Contains(t, a.Stderr(), "connection events: capturing every TCP connection")
			}
			// Connects, sends 4 bytes, reads 8 and exits: milliseconds.
			client := exec.Command(bins.peer, "exchange", "tcp", srv.Addr, "4", "8")
			out, err := client.Output()
			require.NoError(t, err)
			local := strings.TrimPrefix(strings.TrimSpace(string(out)), "ready ")
			_, cport := splitAddr(t, local)
			pid := float64(client.Process.Pid)

			outbound := func(e Event) bool {
				return e.Str("connbeat.direction") == "outbound" && e.Get("remote_port") == port && e.Get("local_process.pid") == pid
			}
			if mode == "poll" {
				time.Sleep(5 * time.Second) // two polls and more
				assert.Empty(t, a.Matching(outbound), "a poll cannot attribute a connection whose process is gone")
				return
			}
			ev := a.WaitFor("the client's outbound connection with its process", outbound)
			assert.Equal(t, "cbpeer", ev.Str("local_process.name"))
			assert.Equal(t, cport, ev.Get("local_port"))
			in := a.WaitFor("the server's inbound connection", func(e Event) bool {
				return e.Str("connbeat.direction") == "inbound" && e.Get("local_port") == port && e.Str("remote_ip") == "127.0.0.1"
			})
			assert.Equal(t, srv.PID(), in.Get("local_process.pid"))
			// Reported by the poll after the connection, not the next
			// full read 30 s later.
			assert.Less(t, ev.Time(t).Sub(time.Now()).Abs(), 10*time.Second)
		})
	}
}
