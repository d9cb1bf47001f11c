package tests

import (
	"encoding/json"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHostileCommandLine: a local user's process holds a connection with
// a megabyte of arguments, a password among the first of them. The ECS
// event carries its command line (twice) cut to max_cmdline_bytes, says
// so, redacts the password, and stays small.
func TestHostileCommandLine(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 holds the connection")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	args := []string{"-c", `import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
print("connected", flush=True)
time.sleep(3600)`, strconv.Itoa(port), "--password=S3cretPassw0rd"}
	for size := 0; size < 1<<20; size += 129 {
		args = append(args, strings.Repeat("a", 128))
	}
	cmd := exec.Command(python, args...)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	_, err = out.Read(make([]byte, 16))
	require.NoError(t, err)

	a := RunAgent(t, AgentOptions{Connbeat: "  poll_interval: 200ms\n  event_format: ecs"})
	ev := a.WaitFor("the python connection", func(e Event) bool {
		return e.Str("network.direction") == "egress" && e.Get("destination.port") == float64(port) &&
			e.Get("process.pid") == float64(cmd.Process.Pid)
	})
	assert.ElementsMatch(t, []interface{}{"process.args", "process.command_line"}, ev.Get("connbeat.truncated_fields"))
	assert.LessOrEqual(t, len(ev.Str("process.command_line")), 8<<10)
	assert.Contains(t, ev.Str("process.command_line"), "--password=REDACTED")
	assert.NotContains(t, ev.Str("process.command_line"), "S3cretPassw0rd")
	raw, err := json.Marshal(ev)
	require.NoError(t, err)
	assert.Less(t, len(raw), 24<<10, "the event stays small")
	assert.Equal(t, 0, a.Stop(syscall.SIGTERM))
}
