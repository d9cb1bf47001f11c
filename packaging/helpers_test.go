package packaging

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/connbeat/connbeat/internal/testkit"
	"github.com/stretchr/testify/require"
)

// eventDeadline bounds every wait for an event; polls are 200 ms apart, so
// this only matters when something is broken.
const eventDeadline = 60 * time.Second

// dist describes the packages `make test-package` built.
type dist struct {
	dir     string
	version string
	deb     string
	rpm     string
	tarball string
	tarDir  string // the tar.gz's top-level directory
}

// distFiles returns the packages for the host's architecture, skipping the
// test unless CONNBEAT_DIST points at them.
func distFiles(t *testing.T) dist {
	t.Helper()
	dir := os.Getenv("CONNBEAT_DIST")
	if dir == "" {
		t.Skip("CONNBEAT_DIST is not set: `make test-package` builds the packages and runs these tests")
	}
	if runtime.GOARCH != "amd64" {
		t.Skipf("the test packages are built for amd64, this host is %s", runtime.GOARCH)
	}
	raw, err := os.ReadFile(filepath.Join("..", "VERSION"))
	require.NoError(t, err)
	v := strings.TrimSpace(string(raw))
	d := dist{
		dir:     dir,
		version: v,
		deb:     filepath.Join(dir, fmt.Sprintf("connbeat_%s_amd64.deb", v)),
		rpm:     filepath.Join(dir, fmt.Sprintf("connbeat-%s.x86_64.rpm", v)),
		tarDir:  fmt.Sprintf("connbeat-%s-linux-x86_64", v),
	}
	d.tarball = filepath.Join(dir, d.tarDir+".tar.gz")
	for _, f := range []string{d.deb, d.rpm, d.tarball} {
		_, err := os.Stat(f)
		require.NoError(t, err, "make test-package should have built %s", f)
	}
	return d
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: installs a package, creates a user and switches to it")
	}
}

func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		testkit.RequireTool(t, tool)
	}
}

// run runs a command and returns its combined output, failing the test with
// that output when the command fails.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	require.NoError(t, err, "%s %s:\n%s", name, strings.Join(args, " "), out)
	return string(out)
}

// agent is a running connbeat whose console output the test reads.
type agent struct {
	cmd     *exec.Cmd
	done    chan struct{} // closed once connbeat has exited
	waitErr error         // connbeat's exit status, set before done closes

	// logDir, when set, is where connbeat logs to files; failures show it.
	logDir string

	mu     sync.Mutex
	events []map[string]any
	stderr bytes.Buffer
}

// startAgent starts a connbeat command line (possibly behind setpriv) and
// collects the events it prints, one JSON object a line, until cleanup.
func startAgent(t *testing.T, dir string, argv ...string) *agent {
	t.Helper()
	a := &agent{cmd: exec.Command(argv[0], argv[1:]...), done: make(chan struct{})}
	a.cmd.Dir = dir
	a.cmd.Stderr = lockedWriter{mu: &a.mu, w: &a.stderr}
	stdout, err := a.cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, a.cmd.Start(), "starting %v", argv)

	var reading sync.WaitGroup
	reading.Add(1)
	go func() {
		defer reading.Done()
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
		for sc.Scan() {
			var ev map[string]any
			if json.Unmarshal(sc.Bytes(), &ev) != nil {
				continue
			}
			a.mu.Lock()
			a.events = append(a.events, ev)
			a.mu.Unlock()
		}
	}()
	go func() {
		reading.Wait()
		a.waitErr = a.cmd.Wait()
		close(a.done)
	}()
	t.Cleanup(func() { a.stop(t) })
	return a
}

// stop ends connbeat with SIGTERM, as systemd does, and waits for it.
func (a *agent) stop(t *testing.T) {
	select {
	case <-a.done:
		return
	default:
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(30 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.done
		t.Errorf("connbeat did not stop within 30 s of SIGTERM")
	}
}

// waitFor returns the first event for which match is true, failing the test
// with connbeat's stderr if none arrives or connbeat exits.
func (a *agent) waitFor(t *testing.T, what string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(eventDeadline)
	seen := 0
	for {
		exited := false
		select {
		case <-a.done:
			exited = true // every line it printed has been read
		default:
		}
		a.mu.Lock()
		events := a.events[seen:]
		seen = len(a.events)
		a.mu.Unlock()
		for _, ev := range events {
			if match(ev) {
				return ev
			}
		}
		if exited {
			t.Fatalf("connbeat exited (%v) before %s; stderr:\n%s", a.waitErr, what, a.stderrText())
		}
		if time.Now().After(deadline) {
			t.Fatalf("no event for %s within %s (%d events seen); stderr:\n%s", what, eventDeadline, seen, a.stderrText())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stderrText is connbeat's stderr and, when it logs to files, its logs.
func (a *agent) stderrText() string {
	a.mu.Lock()
	text := a.stderr.String()
	a.mu.Unlock()
	if a.logDir == "" {
		return text
	}
	logs, _ := filepath.Glob(filepath.Join(a.logDir, "connbeat*.ndjson"))
	for _, l := range logs {
		if b, err := os.ReadFile(l); err == nil {
			text += "\n== " + l + "\n" + string(b)
		}
	}
	return text
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// field returns the value at a dotted path of an event, or nil.
func field(ev map[string]any, path string) any {
	var cur any = ev
	for _, key := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[key]
	}
	return cur
}

// number returns a numeric field as an int (JSON numbers decode as float64).
func number(ev map[string]any, path string) int {
	f, ok := field(ev, path).(float64)
	if !ok {
		return -1
	}
	return int(f)
}

// listen opens a loopback listener that accepts and holds connections until
// the test ends, and returns its port.
func listen(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().(*net.TCPAddr).Port
}

// connectAs starts python3 as another user, connected to 127.0.0.1:port and
// holding the connection open, and returns its pid once connected.
func connectAs(t *testing.T, username string, port int) int {
	t.Helper()
	u, err := user.Lookup(username)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "setpriv", "--reuid", u.Uid, "--regid", u.Gid, "--clear-groups",
		"/usr/bin/python3", "-c",
		`import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
print("connected", flush=True)
time.sleep(3600)`, strconv.Itoa(port))
	cmd.Dir = "/"
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err, "python3 as %s did not connect: %s", username, stderr.String())
	require.Equal(t, "connected\n", line)
	// setpriv execs python3: the pid is the connection owner's.
	return cmd.Process.Pid
}

// connectOnceAs runs python3 as another user: it connects to
// 127.0.0.1:port, sends a few bytes, closes and exits at once. It returns
// the pid the connection was made by and the bytes it sent.
func connectOnceAs(t *testing.T, username string, port int) (pid, sent int) {
	t.Helper()
	u, err := user.Lookup(username)
	require.NoError(t, err)
	const payload = 1234
	cmd := exec.Command("setpriv", "--reuid", u.Uid, "--regid", u.Gid, "--clear-groups",
		"/usr/bin/python3", "-c",
		`import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"x" * int(sys.argv[2]))
s.close()`, strconv.Itoa(port), strconv.Itoa(payload))
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "python3 as %s: %s", username, out)
	// setpriv execs python3: the pid is the connection owner's.
	return cmd.Process.Pid, payload
}
