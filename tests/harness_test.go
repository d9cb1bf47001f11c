// Package tests runs the built connbeat binary against the real kernel: it
// starts real peer processes that listen and connect on loopback, runs the
// agent with the console output and reads its events back.
package tests

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// bins holds the binaries TestMain builds: connbeat and the cbpeer helper.
var bins struct {
	dir      string
	connbeat string
	peer     string
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "connbeat-tests-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Readable by every user: one test runs the agent as nobody.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bins.dir = dir
	bins.connbeat = filepath.Join(dir, "connbeat")
	bins.peer = filepath.Join(dir, "cbpeer")
	for out, pkg := range map[string]string{bins.connbeat: "..", bins.peer: "./testdata/peer"} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n", pkg, err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Event is one decoded event from the agent's console output.
type Event map[string]interface{}

// Get returns the value at a dotted path, or nil.
func (e Event) Get(path string) interface{} {
	var cur interface{} = map[string]interface{}(e)
	for _, part := range strings.Split(path, ".") {
		m, ok := cur.(map[string]interface{})
		if !ok {
			return nil
		}
		cur = m[part]
	}
	return cur
}

// Str returns the value at path formatted as a string ("" when absent).
func (e Event) Str(path string) string {
	v := e.Get(path)
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// Time returns the event's @timestamp.
func (e Event) Time(t *testing.T) time.Time {
	ts, err := time.Parse(time.RFC3339Nano, e.Str("@timestamp"))
	require.NoError(t, err)
	return ts
}

// Agent is a running connbeat process.
type Agent struct {
	t      *testing.T
	cmd    *exec.Cmd
	dir    string
	mu     sync.Mutex
	events []Event
	stderr bytes.Buffer
	done   chan struct{}
	err    error
}

// AgentOptions configure RunAgent.
type AgentOptions struct {
	// Connbeat is the `connbeat:` section, YAML indented by two spaces.
	Connbeat string
	// Extra is appended to the config file at top level.
	Extra string
	// Credential runs the agent as another user.
	Credential *syscall.Credential
	Args       []string
}

// writeConfig writes a config file for the console output into a fresh
// directory and returns the directory.
func writeConfig(t *testing.T, opts AgentOptions) string {
	t.Helper()
	dir, err := os.MkdirTemp(bins.dir, "agent-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	cfg := fmt.Sprintf(`connbeat:
%s
output.console:
  codec.json.pretty: false
queue.mem:
  flush.timeout: 50ms
path.home: %[2]s
path.data: %[2]s/data
path.logs: %[2]s/logs
logging.level: info
logging.metrics.enabled: false
%[3]s
`, opts.Connbeat, dir, opts.Extra)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "connbeat.yml"), []byte(cfg), 0o644))
	if c := opts.Credential; c != nil {
		for _, sub := range []string{"data", "logs"} {
			require.NoError(t, os.MkdirAll(filepath.Join(dir, sub), 0o755))
			require.NoError(t, os.Chown(filepath.Join(dir, sub), int(c.Uid), int(c.Gid)))
		}
	}
	return dir
}

// RunAgent starts connbeat with the console output and collects its events.
func RunAgent(t *testing.T, opts AgentOptions) *Agent {
	t.Helper()
	dir := writeConfig(t, opts)
	args := append([]string{bins.connbeat, "-e", "-c", filepath.Join(dir, "connbeat.yml"), "--strict.perms=false"}, opts.Args...)
	return startAgent(t, dir, args, opts.Credential)
}

// runAgentCmd starts the agent with a full command line (argv[0] first),
// e.g. under `ip netns exec`.
func runAgentCmd(t *testing.T, dir string, argv []string) *Agent {
	t.Helper()
	return startAgent(t, dir, argv, nil)
}

func startAgent(t *testing.T, dir string, argv []string, cred *syscall.Credential) *Agent {
	t.Helper()
	a := &Agent{t: t, dir: dir, done: make(chan struct{})}
	a.cmd = exec.Command(argv[0], argv[1:]...)
	a.cmd.Dir = dir
	a.cmd.Stderr = &lockedWriter{mu: &a.mu, w: &a.stderr}
	if cred != nil {
		a.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	stdout, err := a.cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, a.cmd.Start())
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var ev Event
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				a.mu.Lock()
				fmt.Fprintf(&a.stderr, "TEST: undecodable stdout line %q: %v\n", sc.Text(), err)
				a.mu.Unlock()
				continue
			}
			a.mu.Lock()
			a.events = append(a.events, ev)
			a.mu.Unlock()
		}
		a.err = a.cmd.Wait()
		close(a.done)
	}()
	t.Cleanup(func() {
		select {
		case <-a.done:
		default:
			_ = a.cmd.Process.Kill()
			<-a.done
		}
		if t.Failed() {
			t.Logf("agent stderr (last 8 KB):\n%s", tail(a.Stderr(), 8192))
		}
	})
	return a
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// Events returns a copy of the events received so far.
func (a *Agent) Events() []Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Event(nil), a.events...)
}

// Stderr returns the agent's log so far.
func (a *Agent) Stderr() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stderr.String()
}

// Matching returns the events for which match is true.
func (a *Agent) Matching(match func(Event) bool) []Event {
	var out []Event
	for _, ev := range a.Events() {
		if match(ev) {
			out = append(out, ev)
		}
	}
	return out
}

// WaitFor waits until an event matches and returns the first that does.
func (a *Agent) WaitFor(what string, match func(Event) bool) Event {
	a.t.Helper()
	return a.WaitForN(what, 1, match)[0]
}

// WaitForN waits until n events match.
func (a *Agent) WaitForN(what string, n int, match func(Event) bool) []Event {
	a.t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		if got := a.Matching(match); len(got) >= n {
			return got
		}
		select {
		case <-a.done:
			a.t.Fatalf("agent exited (%v) before %d events of %s", a.err, n, what)
		default:
		}
		if time.Now().After(deadline) {
			all := a.Events()
			const tail = 15
			from := max(0, len(all)-tail)
			var last []string
			for _, e := range all[from:] {
				b, _ := json.Marshal(e)
				last = append(last, string(b))
			}
			a.t.Fatalf("no %d events of %s after 45 s; got %d events in all, the last %d:\n%s",
				n, what, len(all), len(last), strings.Join(last, "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop sends sig and waits for the agent to exit; it returns the exit code.
func (a *Agent) Stop(sig os.Signal) int {
	a.t.Helper()
	require.NoError(a.t, a.cmd.Process.Signal(sig))
	select {
	case <-a.done:
	case <-time.After(30 * time.Second):
		a.t.Fatalf("agent did not exit within 30 s of %v", sig)
	}
	return a.cmd.ProcessState.ExitCode()
}

// Peer is a running cbpeer process.
type Peer struct {
	Cmd  *exec.Cmd
	Addr string // what it printed: the listening or local address
}

// StartPeer runs cbpeer with args and waits for its ready line.
func StartPeer(t *testing.T, cred *syscall.Credential, args ...string) *Peer {
	t.Helper()
	return startPeer(t, cred, append([]string{bins.peer}, args...))
}

// startCmdPeer runs cbpeer with a full command line (argv[0] first), e.g.
// under `ip netns exec`; the reported pid is cbpeer's own, as ip(8) execs it.
func startCmdPeer(t *testing.T, argv []string) *Peer {
	t.Helper()
	return startPeer(t, nil, argv)
}

func startPeer(t *testing.T, cred *syscall.Credential, argv []string) *Peer {
	t.Helper()
	args := argv[1:]
	cmd := exec.Command(argv[0], args...)
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	line, err := bufio.NewReader(out).ReadString('\n')
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		// A peer must hold its sockets until the test ends: one that died
		// early makes every later assertion about its pid meaningless.
		select {
		case err := <-exited:
			t.Errorf("cbpeer %v exited before the test ended (%v): %s", args, err, stderr.String())
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	require.NoError(t, err, "cbpeer %v: %s", args, stderr.String())
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "ready ")
	require.True(t, ok, "cbpeer said %q", line)
	return &Peer{Cmd: cmd, Addr: addr}
}

// PID returns the peer's pid as the agent reports it (JSON numbers decode
// as float64).
func (p *Peer) PID() float64 { return float64(p.Cmd.Process.Pid) }
