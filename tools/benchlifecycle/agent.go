package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/connbeat/connbeat/internal/testkit/filetail"
	"github.com/connbeat/connbeat/internal/testkit/proccpu"
)

// agentOptions are the connbeat settings a run changes; everything else
// is connbeat's default.
type agentOptions struct {
	capture      string        // connbeat.capture
	flows        bool          // connbeat.flow_events
	pollInterval time.Duration // 0: the default
	// queue is the events libbeat's memory queue holds; 0: libbeat's
	// default.
	queue int
}

func (o agentOptions) String() string {
	s := "capture: " + o.capture
	if o.flows {
		s += ", flow_events"
	}
	if o.pollInterval > 0 {
		s += ", poll_interval: " + o.pollInterval.String()
	}
	return s
}

// agent is the built connbeat writing its events to a file, with its
// monitoring endpoint on a unix socket.
type agent struct {
	cmd *exec.Cmd
	dir string
	log string
	mon *http.Client
	out *filetail.Reader // the file output's events counted so far
	// Flows of the churn's connections seen in the output so far: the
	// clients' (outbound to the server's port) and the server's (inbound).
	flowsOut, flowsIn int
	// misdirected counts flows of the churn's server ends (local port the
	// server's) that did not say inbound.
	misdirected int
}

func startAgent(ctx context.Context, bin string, opts agentOptions) (*agent, error) {
	dir, err := os.MkdirTemp("", "connbeat-bench-lifecycle-")
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "mon.sock")
	extra, queue := "", ""
	if opts.pollInterval > 0 {
		extra = fmt.Sprintf("  poll_interval: %s\n", opts.pollInterval)
	}
	if opts.queue > 0 {
		queue = fmt.Sprintf("queue.mem:\n  events: %d\n  flush.min_events: 2048\n  flush.timeout: 100ms\n", opts.queue)
	}
	cfg := fmt.Sprintf(`connbeat:
  capture: %[3]s
  flow_events: %[4]t
%[5]soutput.file:
  path: %[1]s/out
  filename: events
  rotate_every_kb: 10485760
  codec.json.pretty: false
%[6]shttp.enabled: true
http.host: unix://%[2]s
path.home: %[1]s
logging.level: info
logging.to_files: false
logging.metrics.enabled: false
`, dir, sock, opts.capture, opts.flows, extra, queue)
	path := filepath.Join(dir, "connbeat.yml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, bin, "-e", "-c", path, "--strict.perms=false")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	mon := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	a := &agent{cmd: cmd, dir: dir, log: logf.Name(), mon: mon, out: filetail.New(filepath.Join(dir, "out", "events*"))}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if _, err := a.stats(); err == nil {
			return a, nil
		}
		if cmd.ProcessState != nil || time.Now().After(deadline) || !alive(cmd.Process.Pid) {
			a.stop()
			return nil, fmt.Errorf("connbeat (%s) did not come up: %s", opts, lastLines(a.logText(), 5))
		}
	}
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && !bytes.Contains(b, []byte(") Z "))
}

func (a *agent) stop() {
	_ = a.cmd.Process.Kill()
	_ = a.cmd.Wait()
	os.RemoveAll(a.dir)
}

func (a *agent) pid() int { return a.cmd.Process.Pid }

func (a *agent) cpu() (time.Duration, error) {
	d, _, err := proccpu.Of(a.pid())
	return d, err
}

func (a *agent) logText() string {
	b, _ := os.ReadFile(a.log)
	return string(b)
}

var captureMode = regexp.MustCompile(`capture[= :]+(events|poll)\b`)

// captureMode is the capture mode the agent's log says it runs, "?" when
// it does not say.
func (a *agent) captureMode() string {
	if m := captureMode.FindStringSubmatch(a.logText()); m != nil {
		return m[1]
	}
	return "?"
}

// stats returns the agent's monitoring counters, flattened to dotted
// names.
func (a *agent) stats() (map[string]float64, error) {
	resp, err := a.mon.Get("http://agent/stats")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var tree map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&tree); err != nil {
		return nil, err
	}
	flat := map[string]float64{}
	var walk func(string, map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			switch v := v.(type) {
			case map[string]any:
				walk(prefix+k+".", v)
			case float64:
				flat[prefix+k] = v
			}
		}
	}
	walk("", tree)
	return flat, nil
}

// anonMB is the agent's private (anonymous) resident memory.
func (a *agent) anonMB() float64 {
	return statusMB(fmt.Sprintf("/proc/%d/status", a.pid()), "RssAnon")
}

// countFlows reads what the output files gained since the last call and
// returns the churn's flows seen so far (classic events of a server on
// 127.0.0.1:port).
func (a *agent) countFlows(port int) (out, in int, err error) {
	err = a.out.Lines(func(line []byte) {
		if !bytes.Contains(line, []byte(`"kind":"flow"`)) {
			return
		}
		var ev struct {
			Connbeat   struct{ Direction string } `json:"connbeat"`
			LocalPort  int                        `json:"local_port"`
			RemotePort int                        `json:"remote_port"`
		}
		if json.Unmarshal(line, &ev) != nil {
			return
		}
		switch {
		case ev.Connbeat.Direction == "outbound" && ev.RemotePort == port:
			a.flowsOut++
		case ev.Connbeat.Direction == "inbound" && ev.LocalPort == port:
			a.flowsIn++
		case ev.LocalPort == port:
			a.misdirected++
		}
	})
	if err != nil {
		return 0, 0, err
	}
	return a.flowsOut, a.flowsIn, nil
}

// statusMB reads a "kB" field of a /proc/PID/status file, in MB.
func statusMB(path, key string) float64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
