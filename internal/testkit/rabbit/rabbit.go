// Package rabbit runs a private RabbitMQ broker (Debian's rabbitmq-server)
// for tests: its own node name, ports, epmd and data directory, so that
// several can run at once on one machine, and a stop/start on the same
// port and data keeps durable exchanges, queues and persistent messages.
package rabbit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/connbeat/connbeat/internal/testkit"
	"github.com/connbeat/connbeat/internal/testkit/certs"
)

// Binaries of Debian's rabbitmq-server package. /usr/sbin/rabbitmq-server
// is a wrapper that switches to the rabbitmq user; these run as the caller.
const (
	serverBin = "/usr/lib/rabbitmq/bin/rabbitmq-server"
	ctlBin    = "/usr/lib/rabbitmq/bin/rabbitmqctl"
)

// ErrUnavailable says a broker cannot run here.
var ErrUnavailable = errors.New("rabbitmq-server unavailable")

// Require stops the test unless a broker can be started here: without
// root it skips (the package's Erlang files and cookie handling assume
// root); without Debian's rabbitmq-server it stops it with
// testkit.Missing, which fails in CI, where tools/test-deps.sh installs it.
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the tests start rabbitmq-server as root")
	}
	for _, b := range []string{serverBin, ctlBin, "epmd"} {
		testkit.RequireTool(t, b)
	}
}

// Available returns nil when a broker can be started: the Debian package
// is installed and the process runs as root.
func Available() error {
	for _, b := range []string{serverBin, ctlBin} {
		if _, err := os.Stat(b); err != nil {
			return fmt.Errorf("%w: %s missing (Debian package rabbitmq-server)", ErrUnavailable, b)
		}
	}
	if _, err := exec.LookPath("epmd"); err != nil {
		return fmt.Errorf("%w: epmd not on PATH (Debian package erlang-base)", ErrUnavailable)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: the tests start rabbitmq-server as root", ErrUnavailable)
	}
	return nil
}

// TLS is a TLS listener that requires client certificates signed by CA.
type TLS struct {
	CAFile, CertFile, KeyFile string // PEM files
}

// TLSFor is the broker's TLS listener for certificates certs wrote.
func TLSFor(c certs.Files) *TLS {
	return &TLS{CAFile: c.CA, CertFile: c.ServerCert, KeyFile: c.ServerKey}
}

// Options configure a broker.
type Options struct {
	User, Password string // default guest/guest (loopback only)
	TLS            *TLS   // nil: no TLS listener
}

// Broker is a running (or stopped) private RabbitMQ node.
type Broker struct {
	Dir      string
	Port     int // AMQP
	TLSPort  int // AMQPS, 0 without TLS
	distPort int
	epmdPort int
	node     string
	opts     Options

	mu     sync.Mutex
	cmd    *exec.Cmd
	out    *bytes.Buffer
	exited chan struct{} // closed when cmd has exited
}

// Start runs a new broker with its data in dir and waits (up to a minute)
// for its AMQP port to accept connections.
func Start(dir string, opts Options) (*Broker, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	// The ports were free a moment ago; another test may take one
	// before the broker or its epmd binds it: then again, on others.
	var err error
	for try := 0; try < 3; try++ {
		var b *Broker
		b, err = start(dir, opts)
		if err == nil || !errors.Is(err, errPortTaken) {
			return b, err
		}
		b.Close()
	}
	return nil, err
}

// errPortTaken marks a start that failed because a port it was given was
// taken meanwhile.
var errPortTaken = errors.New("a port was taken by another process")

func start(dir string, opts Options) (*Broker, error) {
	ports, err := testkit.FreePorts(4)
	if err != nil {
		return nil, err
	}
	b := &Broker{
		Dir: dir, Port: ports[0], distPort: ports[1], epmdPort: ports[2],
		node: fmt.Sprintf("cbtest%d@localhost", ports[0]), opts: opts,
	}
	if opts.TLS != nil {
		b.TLSPort = ports[3]
	}
	if err := b.writeConfig(); err != nil {
		return nil, err
	}
	return b, b.Restart()
}

// URL is the broker's amqp:// URL (without credentials).
func (b *Broker) URL() string { return fmt.Sprintf("amqp://127.0.0.1:%d/", b.Port) }

// TLSURL is the broker's amqps:// URL for the host name localhost, which
// the test's server certificate must name.
func (b *Broker) TLSURL() string { return fmt.Sprintf("amqps://localhost:%d/", b.TLSPort) }

// UserURL is URL with the configured credentials.
func (b *Broker) UserURL() string {
	u, p := b.opts.User, b.opts.Password
	if u == "" {
		u, p = "guest", "guest"
	}
	return fmt.Sprintf("amqp://%s:%s@127.0.0.1:%d/", u, p, b.Port)
}

func (b *Broker) writeConfig() error {
	conf := []string{
		"listeners.tcp.default = " + strconv.Itoa(b.Port),
		"log.console = true",
		"log.file = false",
		// A stopped-and-restarted test broker must not refuse publishes
		// because the shared test machine's disk is fuller than 50 MB free.
		"disk_free_limit.absolute = 1MB",
	}
	if b.opts.User != "" {
		conf = append(conf, "default_user = "+b.opts.User, "default_pass = "+b.opts.Password)
	}
	if t := b.opts.TLS; t != nil {
		conf = append(conf,
			"listeners.ssl.default = "+strconv.Itoa(b.TLSPort),
			"ssl_options.cacertfile = "+t.CAFile,
			"ssl_options.certfile = "+t.CertFile,
			"ssl_options.keyfile = "+t.KeyFile,
			"ssl_options.verify = verify_peer",
			"ssl_options.fail_if_no_peer_cert = true",
		)
	}
	if err := os.WriteFile(filepath.Join(b.Dir, "rabbitmq.conf"), []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
		return fmt.Errorf("writing rabbitmq.conf: %w", err)
	}
	if err := os.WriteFile(filepath.Join(b.Dir, "enabled_plugins"), []byte("[].\n"), 0o600); err != nil {
		return fmt.Errorf("writing enabled_plugins: %w", err)
	}
	return nil
}

func (b *Broker) env() []string {
	return append(os.Environ(),
		"HOME="+b.Dir, // the Erlang cookie goes here
		"RABBITMQ_NODENAME="+b.node,
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_NODE_PORT="+strconv.Itoa(b.Port),
		"RABBITMQ_DIST_PORT="+strconv.Itoa(b.distPort),
		"ERL_EPMD_PORT="+strconv.Itoa(b.epmdPort),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(b.Dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(b.Dir, "log"),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(b.Dir, "rabbitmq"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(b.Dir, "enabled_plugins"),
		"RABBITMQ_PID_FILE="+filepath.Join(b.Dir, "rabbitmq.pid"),
	)
}

// startEpmd starts the broker's epmd (a no-op when it runs) and waits
// until it listens: left to the Erlang VM, a node that asks before epmd
// listens fails its start with "register/listen error: econnrefused".
func (b *Broker) startEpmd() error {
	cmd := exec.Command("epmd", "-daemon")
	cmd.Env = b.env()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("starting epmd on port %d: %w: %s", b.epmdPort, err, out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", b.epmdPort), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			// epmd -daemon says nothing when it cannot bind its port.
			return fmt.Errorf("epmd not listening on port %d after 10 s (%w?): %v", b.epmdPort, errPortTaken, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Restart starts the broker again on the same ports and data after Stop.
func (b *Broker) Restart() error {
	if err := b.startEpmd(); err != nil {
		return err
	}
	cmd := exec.Command(serverBin)
	cmd.Dir = b.Dir
	cmd.Env = b.env()
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = &syncWriter{w: out, mu: &b.mu}, &syncWriter{w: out, mu: &b.mu}
	// Its own process group: Kill reaches the Erlang VM it execs.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting rabbitmq-server: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	b.mu.Lock()
	b.cmd, b.out, b.exited = cmd, out, exited
	b.mu.Unlock()

	deadline := time.Now().Add(time.Minute)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", b.Port), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			out := b.Output()
			if strings.Contains(out, "eaddrinuse") || strings.Contains(out, "dist_port_already_used") {
				return fmt.Errorf("rabbitmq-server exited while starting (%w): %s", errPortTaken, out)
			}
			return fmt.Errorf("rabbitmq-server exited while starting: %s", out)
		default:
		}
		if time.Now().After(deadline) {
			b.Kill()
			return fmt.Errorf("rabbitmq-server did not open port %d within a minute: %s", b.Port, b.Output())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Output returns what the broker printed (its log goes to the console).
func (b *Broker) Output() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.out == nil {
		return ""
	}
	return b.out.String()
}

// Ctl runs rabbitmqctl against the broker.
func (b *Broker) Ctl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, ctlBin, append([]string{"-n", b.node}, args...)...)
	cmd.Env = b.env()
	cmd.Dir = b.Dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("rabbitmqctl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Stop stops the node with rabbitmqctl (killing it if that fails) and
// waits until its AMQP port is closed; epmd stays for a Restart.
func (b *Broker) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := b.Ctl(ctx, "stop")
	if err != nil {
		b.Kill()
	}
	b.mu.Lock()
	exited := b.exited
	b.mu.Unlock()
	if exited != nil {
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			b.Kill()
			<-exited
		}
	}
	return err
}

// Kill ends the broker's process group at once.
func (b *Broker) Kill() {
	b.mu.Lock()
	cmd := b.cmd
	b.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}

// Close stops the broker for good and the epmd it started.
func (b *Broker) Close() {
	_ = b.Stop()
	b.Kill()
	cmd := exec.Command("epmd", "-kill")
	cmd.Env = b.env()
	_ = cmd.Run()
}

type syncWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
