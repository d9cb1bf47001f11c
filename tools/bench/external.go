package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/connbeat/connbeat/internal/testkit/proccpu"
)

// ssResult is the cost of one ss command line, medians over runs.
type ssResult struct {
	Args   string
	WallMS float64
	CPUMS  float64 // the child's user+system time
	Err    string  `json:",omitempty"`
}

// runSS runs ss with its output thrown away and takes the medians.
func runSS(ctx context.Context, runs int, args ...string) ssResult {
	res := ssResult{Args: "ss " + strings.Join(args, " ")}
	var walls, cpus []float64
	for range runs {
		cmd := exec.CommandContext(ctx, "ss", args...) // stdout: /dev/null
		w0 := time.Now()
		if err := cmd.Run(); err != nil {
			res.Err = err.Error()
			return res
		}
		walls = append(walls, ms(time.Since(w0)))
		ps := cmd.ProcessState
		cpus = append(cpus, ms(ps.UserTime()+ps.SystemTime()))
	}
	res.WallMS, res.CPUMS = median(walls), median(cpus)
	return res
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	sort.Float64s(v)
	return v[len(v)/2]
}

// agentResult is the built connbeat binary's cost over a steady run.
type agentResult struct {
	Interval   time.Duration
	Seconds    float64
	CPUPercent float64 // of one core, over the steady window
	RSSMB      float64
	HWMMB      float64
	AnonMB     float64 // heap and stacks: what the agent allocated
	FileMB     float64 // mapped binary pages, shared with the page cache
	Err        string  `json:",omitempty"`
}

// runAgent starts the built agent with the discard output, lets it do its
// first polls, then measures its CPU use over window and its memory.
func runAgent(ctx context.Context, bin, source string, interval, window time.Duration) agentResult {
	res := agentResult{Interval: interval}
	dir, err := os.MkdirTemp("", "connbeat-bench-agent")
	if err != nil {
		res.Err = err.Error()
		return res
	}
	defer os.RemoveAll(dir)
	cfg := fmt.Sprintf(`connbeat:
  poll_interval: %s
  socket_source: %s
output.discard:
  enabled: true
path.home: %[3]s
path.data: %[3]s/data
path.logs: %[3]s/logs
logging.level: warning
logging.to_files: false
`, interval, source, dir)
	cfgPath := filepath.Join(dir, "connbeat.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		res.Err = err.Error()
		return res
	}
	logf, err := os.Create(filepath.Join(dir, "stderr.log"))
	if err != nil {
		res.Err = err.Error()
		return res
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, bin, "-e", "-c", cfgPath, "--strict.perms=false")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		res.Err = err.Error()
		return res
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	pid := cmd.Process.Pid

	// Settle: startup, the cold poll and a few warm ones.
	time.Sleep(3*interval + 2*time.Second)
	t0, w0, err := procCPU(pid)
	if err != nil {
		res.Err = fmt.Sprintf("agent exited early: %v (log in %s)", err, logf.Name())
		return res
	}
	time.Sleep(window)
	t1, w1, err := procCPU(pid)
	if err != nil {
		res.Err = fmt.Sprintf("agent exited: %v", err)
		return res
	}
	res.Seconds = w1.Sub(w0).Seconds()
	res.CPUPercent = 100 * (t1 - t0).Seconds() / res.Seconds
	status := fmt.Sprintf("/proc/%d/status", pid)
	res.RSSMB, res.HWMMB = procStatusMB(status, "VmRSS"), procStatusMB(status, "VmHWM")
	res.AnonMB, res.FileMB = procStatusMB(status, "RssAnon"), procStatusMB(status, "RssFile")
	return res
}

// procCPU returns a process's user+system time and when it was read.
func procCPU(pid int) (time.Duration, time.Time, error) { return proccpu.Of(pid) }
