package tests

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connbeat/connbeat/internal/testkit"
)

// topPeers starts a listener on 127.0.0.1 and a client holding three
// connections to it from 127.0.0.2.
func topPeers(t *testing.T) (server, client *Peer, port string) {
	t.Helper()
	server = StartPeer(t, nil, "listen", "127.0.0.1:0")
	_, p := splitAddr(t, server.Addr)
	client = StartPeer(t, nil, "connect", server.Addr, "127.0.0.2", "3")
	return server, client, fmt.Sprint(p)
}

func pidOf(p *Peer) int { return p.Cmd.Process.Pid }

// tmuxSession is a private tmux server (its own socket) running a shell in
// one 80x24 window.
type tmuxSession struct {
	t      *testing.T
	bin    string
	socket string
}

func startTmux(t *testing.T) *tmuxSession {
	t.Helper()
	m := &tmuxSession{t: t, bin: testkit.RequireTool(t, "tmux"), socket: fmt.Sprintf("connbeat-test-%d", os.Getpid())}
	m.run("-f", "/dev/null", "new-session", "-d", "-s", "top", "-x", "80", "-y", "24", "env", "PS1=$ ", "TERM=screen", "sh")
	t.Cleanup(func() { _ = exec.Command(m.bin, "-L", m.socket, "kill-server").Run() })
	return m
}

func (m *tmuxSession) run(args ...string) string {
	m.t.Helper()
	out, err := exec.Command(m.bin, append([]string{"-L", m.socket}, args...)...).CombinedOutput()
	require.NoError(m.t, err, "tmux %v: %s", args, out)
	return string(out)
}

// keys types into the window: tmux key names (Enter, Escape) or text.
func (m *tmuxSession) keys(keys ...string) {
	m.run(append([]string{"send-keys", "-t", "top"}, keys...)...)
}

func (m *tmuxSession) screen() string { return m.run("capture-pane", "-p", "-t", "top") }

// waitFor waits until ok holds of the window's text and returns that text.
func (m *tmuxSession) waitFor(what string, ok func(screen string) bool) string {
	m.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s := m.screen()
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("%s: not on screen after 30 s:\n%s", what, s)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func containsAll(want ...string) func(string) bool {
	return func(s string) bool {
		for _, w := range want {
			if !strings.Contains(s, w) {
				return false
			}
		}
		return true
	}
}

func hasLine(want string) func(string) bool {
	return func(s string) bool {
		for _, line := range strings.Split(s, "\n") {
			if strings.TrimSpace(line) == want {
				return true
			}
		}
		return false
	}
}

// rowsOf returns the lines of the edges pane under its header, trimmed of
// the pane's borders, each split into its cells.
func rowsOf(screen string) [][]string {
	var rows [][]string
	in := false
	for _, line := range strings.Split(screen, "\n") {
		switch {
		case strings.Contains(line, "PROCESS") && strings.Contains(line, "REMOTE"):
			in = true
		case strings.HasPrefix(line, "╚") || strings.HasPrefix(line, "└"):
			return rows
		case in:
			if f := strings.Fields(strings.Trim(line, "║│ ")); len(f) > 0 {
				rows = append(rows, f)
			}
		}
	}
	return rows
}

// TestTopInTmux drives `connbeat top` in an 80x24 tmux window against real
// loopback peers: their rows appear joined to their pids, the filter and
// the sort keys change what is shown, and q quits back to the shell with
// the terminal restored.
func TestTopInTmux(t *testing.T) {
	server, client, port := topPeers(t)
	m := startTmux(t)
	m.keys("clear; echo SHELL-BEFORE-TOP", "Enter")
	m.waitFor("the shell", hasLine("SHELL-BEFORE-TOP"))
	m.keys(bins.connbeat+" top --interval 200ms; echo TOP-EXIT=$?", "Enter")

	serverRow := []string{fmt.Sprintf("cbpeer[%d]", pidOf(server)), "-", "in", "127.0.0.1:" + port, "127.0.0.2", "3", "-", "-"}
	clientRow := []string{fmt.Sprintf("cbpeer[%d]", pidOf(client)), "-", "out", "127.0.0.2", "127.0.0.1:" + port, "3", "-", "-"}
	s := m.waitFor("the peers' rows", containsAll(serverRow[0], clientRow[0], "127.0.0.1:"+port))
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	require.Len(t, lines, 24, "tmux window is 80x24")
	assert.Contains(t, lines[23], "q quit  / filter  d direction  s/S sort  r reverse  Tab pane  Esc clear")
	assert.Contains(t, s, "BYTES/S", "every column fits 80 columns")
	assert.Contains(t, s, fmt.Sprintf("127.0.0.1:%s    1       3", port), "the listeners pane: 1 socket, 3 clients")

	// Filter by port: the two peers' edges and nothing else.
	m.keys("/")
	m.keys("-l", "port:"+port)
	m.keys("Enter")
	s = m.waitFor("port filter", containsAll("filter: port:"+port, "edges 2/", "listeners 1/"))
	assert.ElementsMatch(t, [][]string{serverRow, clientRow}, rowsOf(s))

	// S steps back from SOCK to REMOTE: 127.0.0.1:port sorts before
	// 127.0.0.2; r reverses it.
	m.keys("S")
	s = m.waitFor("sort by remote", containsAll("sort REMOTE↑"))
	assert.Equal(t, [][]string{clientRow, serverRow}, rowsOf(s))
	m.keys("r")
	s = m.waitFor("reversed", containsAll("sort REMOTE↓"))
	assert.Equal(t, [][]string{serverRow, clientRow}, rowsOf(s))

	// d narrows the filter to outbound.
	m.keys("d")
	s = m.waitFor("outbound only", containsAll("dir:out", "edges 1/"))
	assert.Equal(t, [][]string{clientRow}, rowsOf(s))

	m.keys("q")
	s = m.waitFor("back at the shell", containsAll("TOP-EXIT=0"))
	assert.True(t, hasLine("SHELL-BEFORE-TOP")(s), "the shell's screen is back:\n%s", s)
	assert.NotContains(t, s, "listeners", "nothing of top is left on the screen")
	assert.Equal(t, "0\n", m.run("display-message", "-p", "-t", "top", "#{alternate_on}"), "the alternate screen is off")
}

// TestTopOnce: --once prints one plain table, listeners first, with the
// full-screen view's columns; --filter selects the peers' rows.
func TestTopOnce(t *testing.T) {
	server, client, port := topPeers(t)
	var rows [][]string
	topOnce(t, func(out []byte) bool {
		rows = nil
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			rows = append(rows, strings.Fields(line))
		}
		return len(rows) == 4
	}, "--filter", "port:"+port)
	serverRow := []string{fmt.Sprintf("cbpeer[%d]", pidOf(server)), "-", "in", "tcp", "127.0.0.1:" + port, "127.0.0.2", "3", "-", "-"}
	clientRow := []string{fmt.Sprintf("cbpeer[%d]", pidOf(client)), "-", "out", "tcp", "127.0.0.2", "127.0.0.1:" + port, "3", "-", "-"}
	edges := [][]string{serverRow, clientRow} // equal sockets: by pid
	if pidOf(client) < pidOf(server) {
		edges = [][]string{clientRow, serverRow}
	}
	assert.Equal(t, append([][]string{
		{"PROCESS", "NS", "DIR", "PROTO", "LOCAL", "REMOTE", "SOCK", "CONN/S", "BYTES/S"},
		{fmt.Sprintf("cbpeer[%d]", pidOf(server)), "-", "listen", "tcp", "127.0.0.1:" + port, "-", "1", "-", "-"},
	}, edges...), rows)
}

// topOnce runs `connbeat top --once args...` until done accepts its
// output, at most ten times: a connection the client has made may not be
// accepted by the server yet (no process holds it), and is then a row of
// its own.
func topOnce(t *testing.T, done func(out []byte) bool, args ...string) {
	t.Helper()
	for try := 1; ; try++ {
		out, err := exec.Command(bins.connbeat, append([]string{"top", "--once"}, args...)...).Output()
		require.NoError(t, err)
		if done(out) || try == 10 {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// topJSON is the shape of --json's objects; decoding rejects any other.
type topJSON struct {
	Time      time.Time `json:"time"`
	Source    string    `json:"source"`
	Sockets   int       `json:"sockets"`
	Edges     []topEdge `json:"edges"`
	Listeners []struct {
		Process   *topProcess `json:"process"`
		Transport string      `json:"transport"`
		Local     topEndpoint `json:"local"`
		Sockets   int         `json:"sockets"`
		Clients   int         `json:"clients"`
	} `json:"listeners"`
}

type topEdge struct {
	Process     *topProcess `json:"process"`
	Transport   string      `json:"transport"`
	Direction   string      `json:"direction"`
	Local       topEndpoint `json:"local"`
	Remote      topEndpoint `json:"remote"`
	Sockets     int         `json:"sockets"`
	ConnsPerSec *float64    `json:"connections_per_sec"`
	BytesPerSec *float64    `json:"bytes_per_sec"`
}

type topProcess struct {
	PID  int    `json:"pid"`
	Name string `json:"name"`
}

type topEndpoint struct {
	IP   string `json:"ip"`
	Port int    `json:"port"`
}

func decodeTop(t *testing.T, line []byte) topJSON {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	var v topJSON
	require.NoError(t, dec.Decode(&v), "%s", line)
	return v
}

// TestTopJSON: --json prints one object a poll; with --tcp-info the
// second poll has byte rates, the first cannot.
func TestTopJSON(t *testing.T) {
	server, client, port := topPeers(t)
	p := 0
	fmt.Sscan(port, &p)

	var v topJSON
	topOnce(t, func(out []byte) bool {
		v = decodeTop(t, out)
		return len(v.Edges) == 2
	}, "--json", "--filter", "port:"+port)
	assert.WithinDuration(t, time.Now(), v.Time, time.Minute)
	assert.NotEmpty(t, v.Source)
	assert.Positive(t, v.Sockets)
	require.Len(t, v.Listeners, 1)
	assert.Equal(t, &topProcess{PID: pidOf(server), Name: "cbpeer"}, v.Listeners[0].Process)
	assert.Equal(t, topEndpoint{"127.0.0.1", p}, v.Listeners[0].Local)
	assert.Equal(t, []int{1, 3}, []int{v.Listeners[0].Sockets, v.Listeners[0].Clients})
	assert.ElementsMatch(t, []topEdge{
		{Process: &topProcess{pidOf(server), "cbpeer"}, Transport: "tcp", Direction: "inbound",
			Local: topEndpoint{"127.0.0.1", p}, Remote: topEndpoint{IP: "127.0.0.2"}, Sockets: 3},
		{Process: &topProcess{pidOf(client), "cbpeer"}, Transport: "tcp", Direction: "outbound",
			Local: topEndpoint{IP: "127.0.0.2"}, Remote: topEndpoint{"127.0.0.1", p}, Sockets: 3},
	}, v.Edges)

	cmd := exec.Command(bins.connbeat, "top", "--json", "--tcp-info", "--interval", "200ms", "--filter", "port:"+port)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := bufio.NewScanner(stdout)
	for poll := 1; poll <= 2; poll++ {
		require.True(t, lines.Scan(), "poll %d: %v %s", poll, lines.Err(), stderr.String())
		v := decodeTop(t, lines.Bytes())
		require.Len(t, v.Edges, 2)
		for _, e := range v.Edges {
			assert.Nil(t, e.ConnsPerSec, "not measured by polls")
			if poll == 1 {
				assert.Nil(t, e.BytesPerSec, "nothing to compare with yet")
			} else {
				assert.NotNil(t, e.BytesPerSec, "tcp_info counters of two polls")
			}
		}
	}
	require.NoError(t, cmd.Process.Signal(os.Interrupt))
	require.NoError(t, cmd.Wait(), "SIGINT ends --json cleanly: %s", stderr.String())
}

// TestTopErrors: bad flags fail before anything is polled, saying why.
func TestTopErrors(t *testing.T) {
	for args, want := range map[string]string{
		"--once --filter port:http": `filter "port:http"`,
		"--once --sort age":         `unknown sort column "age"`,
		"--socket-source kprobe":    `connbeat.socket_source must be one of`,
	} {
		out, err := exec.Command(bins.connbeat, append([]string{"top"}, strings.Fields(args)...)...).CombinedOutput()
		require.Error(t, err, args)
		assert.Contains(t, string(out), want, args)
	}
	// Without a terminal the full-screen view says what to use instead.
	cmd := exec.Command(bins.connbeat, "top")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // no controlling terminal
	out, err := cmd.CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), "use --once or --json without a terminal")
}
