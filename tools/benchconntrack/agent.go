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
	"time"

	"github.com/connbeat/connbeat/internal/testkit/filetail"
	"github.com/connbeat/connbeat/internal/testkit/proccpu"
)

// agent is the built connbeat writing conntrack events to a file.
type agent struct {
	cmd            *exec.Cmd
	dir            string
	mon            *http.Client     // to the monitoring endpoint's unix socket
	out            *filetail.Reader // the file output's events counted so far
	seen, resynced int
}

// startAgent runs the agent with the conntrack input and the file
// output, polls practically off, a queue large enough for a burst and
// queue_full: block, so that what connbeat cannot take in time shows as
// kernel drops on its socket (counted) rather than as events dropped in
// its own queue. It runs in the namespace netns; its monitoring endpoint
// is a unix socket, which the namespace does not hide.
func startAgent(bin, dir, netns string) (*agent, error) {
	sock := filepath.Join(dir, "mon.sock")
	cfg := fmt.Sprintf(`connbeat:
  poll_interval: 1h
  aggregation: 1h
  queue_full: block
  conntrack:
    enabled: true
    set_sysctls: false
output.file:
  path: %[1]s/out
  filename: events
  rotate_every_kb: 10485760
  codec.json.pretty: false
queue.mem:
  events: 65536
  flush.min_events: 2048
  flush.timeout: 100ms
http.enabled: true
http.host: unix://%[2]s
path.home: %[1]s
logging.level: warning
logging.to_files: false
`, dir, sock)
	path := filepath.Join(dir, "connbeat.yml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		return nil, err
	}
	// ip execs connbeat: the pid is connbeat's.
	cmd := exec.Command("ip", "netns", "exec", netns, bin, "-e", "-c", path, "--strict.perms=false")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	mon := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	a := &agent{cmd: cmd, dir: dir, mon: mon, out: filetail.New(filepath.Join(dir, "out", "events*"))}
	// Up once its monitoring endpoint answers.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, err := a.stats(); err == nil {
			return a, nil
		}
		if time.Now().After(deadline) {
			a.stop()
			b, _ := os.ReadFile(logf.Name())
			return nil, fmt.Errorf("the agent did not come up within 30 s:\n%s", b)
		}
	}
}

func (a *agent) stop() {
	_ = a.cmd.Process.Kill()
	_ = a.cmd.Wait()
}

func (a *agent) cpu() (time.Duration, time.Time, error) { return proccpu.Of(a.cmd.Process.Pid) }

// count reads what the output files gained since the last call and
// returns the benchmark's events written so far, and how many of them a
// re-sync made up.
func (a *agent) count() (written, resynced int, err error) {
	err = a.out.Lines(func(line []byte) {
		if bytes.Contains(line, []byte(`"Src":"`+srcPrefix)) {
			a.seen++
			if bytes.Contains(line, []byte(`"resync":true`)) {
				a.resynced++
			}
		}
	})
	if err != nil {
		return 0, 0, err
	}
	return a.seen, a.resynced, nil
}

type agentStats struct{ lost, dropped int }

// stats reads the conntrack counters from the monitoring endpoint.
func (a *agent) stats() (agentStats, error) {
	resp, err := a.mon.Get("http://agent/stats")
	if err != nil {
		return agentStats{}, err
	}
	defer resp.Body.Close()
	var st struct {
		Connbeat struct {
			Conntrack struct {
				Lost   int `json:"lost"`
				Events struct {
					Dropped int `json:"dropped"`
				} `json:"events"`
			} `json:"conntrack"`
		} `json:"connbeat"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return agentStats{}, err
	}
	return agentStats{lost: st.Connbeat.Conntrack.Lost, dropped: st.Connbeat.Conntrack.Events.Dropped}, nil
}
