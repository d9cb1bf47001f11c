package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/connbeat/connbeat/internal/testkit/proccpu"
)

// Metricbeat is built from the beats module version connbeat's go.mod
// requires, with the same replace lines, in a directory outside the
// repository: its code is never part of connbeat. The binary is kept in
// the cache directory for the next run.

// beatsModule is the module whose version go.mod pins.
const beatsModule = "github.com/elastic/beats/v7"

// buildMetricbeat returns the path of a Metricbeat binary built from the
// beats version in gomod, building it into cacheDir if it is not there.
func buildMetricbeat(ctx context.Context, gomod, cacheDir string) (string, error) {
	version, replaces, err := beatsRequirement(gomod)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(cacheDir, "metricbeat-"+version)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "connbeat-metricbeat-build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	mod := fmt.Sprintf("module connbeat.invalid/metricbeat-bench\n\ngo 1.26.0\n\nrequire %s %s\n", beatsModule, version)
	if len(replaces) > 0 {
		mod += "\nreplace (\n\t" + strings.Join(replaces, "\n\t") + "\n)\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(mod), 0o644); err != nil {
		return "", err
	}
	// connbeat's go.sum holds most of what Metricbeat needs; the rest is
	// fetched (-mod=mod) from the module proxy.
	if sum, err := os.ReadFile(filepath.Join(filepath.Dir(gomod), "go.sum")); err == nil {
		_ = os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644)
	}
	fmt.Fprintf(os.Stderr, "bench-lifecycle: building Metricbeat %s in %s (a cold build takes minutes)...\n", version, dir)
	cmd := exec.CommandContext(ctx, "go", "build", "-mod=mod", "-trimpath", "-ldflags", "-s -w", "-o", bin, beatsModule+"/metricbeat")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GONOSUMDB=github.com/elastic", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s/metricbeat: %w: %s", beatsModule, err, lastLines(string(out), 5))
	}
	return bin, nil
}

// beatsRequirement reads the beats version and the replace lines from a
// go.mod.
func beatsRequirement(gomod string) (version string, replaces []string, err error) {
	f, err := os.Open(gomod)
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	inReplace := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "replace (":
			inReplace = true
		case inReplace && line == ")":
			inReplace = false
		case inReplace && strings.Contains(line, "=>"):
			replaces = append(replaces, line)
		case strings.HasPrefix(line, "replace ") && strings.Contains(line, "=>"):
			replaces = append(replaces, strings.TrimPrefix(line, "replace "))
		default:
			fields := strings.Fields(strings.TrimPrefix(line, "require "))
			if len(fields) >= 2 && fields[0] == beatsModule {
				version = fields[1]
			}
		}
	}
	if err := sc.Err(); err != nil {
		return "", nil, err
	}
	if version == "" {
		return "", nil, errors.New(gomod + " does not require " + beatsModule)
	}
	return version, replaces, nil
}

// metricbeat is a running Metricbeat: system/socket every period, its
// events discarded.
type metricbeat struct {
	cmd *exec.Cmd
	dir string
	log string
}

func startMetricbeat(ctx context.Context, bin string, period time.Duration) (*metricbeat, error) {
	dir, err := os.MkdirTemp("", "connbeat-bench-metricbeat-")
	if err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`metricbeat.modules:
- module: system
  metricsets: [socket]
  period: %s
  socket.reverse_lookup.enabled: false
output.discard.enabled: true
path.home: %s
logging.level: warning
logging.to_files: false
logging.metrics.enabled: false
`, period, dir)
	path := filepath.Join(dir, "metricbeat.yml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "metricbeat.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, bin, "-e", "-c", path, "--strict.perms=false")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &metricbeat{cmd: cmd, dir: dir, log: logf.Name()}, nil
}

func (m *metricbeat) pid() int { return m.cmd.Process.Pid }

func (m *metricbeat) lastLog() string {
	b, _ := os.ReadFile(m.log)
	return lastLines(string(b), 5)
}

func (m *metricbeat) stop() {
	_ = m.cmd.Process.Kill()
	_ = m.cmd.Wait()
	os.RemoveAll(m.dir)
}

// runMetricbeat runs Metricbeat's system/socket metricset every period,
// its events discarded, for settle then window, and measures it as the
// agent is measured.
func runMetricbeat(ctx context.Context, bin string, period, settle time.Duration, windows int, window time.Duration) idleResult {
	res := idleResult{Agent: "Metricbeat system/socket", Settings: "period: " + period.String(), Mode: "poll"}
	m, err := startMetricbeat(ctx, bin, period)
	if err != nil {
		res.Err = err.Error()
		return res
	}
	defer m.stop()
	time.Sleep(settle)
	measureIdle(&res, m.pid(), windows, window, m.lastLog)
	return res
}

// metricbeatChurn is Metricbeat system/socket (period 1 s) under one
// churn rate: what a user would otherwise run on that host.
type metricbeatChurn struct {
	Rate   int
	Made   int
	CPU    time.Duration // from the start of the churn to its end
	AnonMB float64       // at the end of the churn
	Err    string        `json:",omitempty"`
}

func runMetricbeatChurn(ctx context.Context, f flags, bin string, rate int) metricbeatChurn {
	r := metricbeatChurn{Rate: rate}
	m, err := startMetricbeat(ctx, bin, time.Second)
	if err != nil {
		r.Err = err.Error()
		return r
	}
	defer m.stop()
	time.Sleep(f.settle)
	c0, _, err0 := proccpu.Of(m.pid())
	res, err := churnOnce(ctx, f, rate, nil)
	c1, _, err1 := proccpu.Of(m.pid())
	switch {
	case err != nil:
		r.Err = err.Error()
	case err0 != nil || err1 != nil:
		r.Err = "Metricbeat exited: " + m.lastLog()
	}
	r.Made, r.CPU = res.Made, c1-c0
	r.AnonMB = statusMB(fmt.Sprintf("/proc/%d/status", m.pid()), "RssAnon")
	return r
}

// measureIdle measures a settled process's CPU over n consecutive
// windows (res.CPU the median window, res.Windows each) and its private
// memory at the end.
func measureIdle(res *idleResult, pid, n int, window time.Duration, log func() string) {
	t0, w0, err := proccpu.Of(pid)
	if err != nil {
		res.Err = fmt.Sprintf("exited before the window: %s", log())
		return
	}
	start := w0
	for range max(n, 1) {
		time.Sleep(window)
		t1, w1, err := proccpu.Of(pid)
		if err != nil {
			res.Err = fmt.Sprintf("exited during the window: %s", log())
			return
		}
		res.Windows = append(res.Windows, t1-t0)
		t0, w0 = t1, w1
	}
	res.Seconds = w0.Sub(start).Seconds() / float64(len(res.Windows))
	sorted := slices.Clone(res.Windows)
	slices.Sort(sorted)
	res.CPU = sorted[len(sorted)/2]
	res.AnonMB = statusMB(fmt.Sprintf("/proc/%d/status", pid), "RssAnon")
}
