// Package workload holds many idle, established loopback TCP connections in
// child processes, so benchmarks can measure socket sources and the process
// join against a busy host. A program that starts a workload must serve
// Helper first thing in main (or TestMain): the children are that same
// executable started again.
package workload

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Spec is what one child process holds.
type Spec struct {
	// Conns is how many connections the child opens to itself; it holds
	// both ends, so it uses 2*Conns file descriptors.
	Conns int
	// Listeners is how many listening sockets it holds, at least 2 (one on
	// 127.0.0.1 and one on ::1 receive the connections).
	Listeners int
	// IPv6Every puts every IPv6Every-th connection on ::1 (0: none).
	IPv6Every int
}

func (s Spec) encode() string {
	return fmt.Sprintf("%d,%d,%d", s.Conns, s.Listeners, s.IPv6Every)
}

func decodeSpec(v string) (Spec, error) {
	parts := strings.Split(v, ",")
	if len(parts) != 3 {
		return Spec{}, fmt.Errorf("workload spec %q: want conns,listeners,ipv6every", v)
	}
	var n [3]int
	for i, p := range parts {
		x, err := strconv.Atoi(p)
		if err != nil || x < 0 {
			return Spec{}, fmt.Errorf("workload spec %q: field %d is not a count", v, i+1)
		}
		n[i] = x
	}
	return Spec{Conns: n[0], Listeners: max(n[1], 2), IPv6Every: n[2]}, nil
}

// Options size a workload.
type Options struct {
	// Conns is the total number of established connections (2*Conns
	// established sockets on the host).
	Conns int
	// PerProcess caps the connections one child holds (2 fds each; the
	// open-file limit is per process). Default 7000.
	PerProcess int
	// ListenersPerProcess is the listeners each child holds. Default 10.
	ListenersPerProcess int
	// IPv6Every puts every IPv6Every-th connection on ::1. Default 4;
	// negative: IPv4 only.
	IPv6Every int
	// NetnsPerProcess starts each child in a network namespace of its own
	// (root only): the same processes, sockets and fds as without it,
	// spread over as many namespaces as there are children.
	NetnsPerProcess bool
}

// Workload is a set of running children.
type Workload struct {
	children []*proc
	// Sockets is how many sockets the children hold (connections count
	// twice, listeners once).
	Sockets int
}

// proc is one running child.
type proc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

// Start launches the children and waits until each holds its connections.
func Start(ctx context.Context, opts Options) (*Workload, error) {
	if opts.PerProcess <= 0 {
		opts.PerProcess = 7000
	}
	if opts.ListenersPerProcess <= 0 {
		opts.ListenersPerProcess = 10
	}
	switch {
	case opts.IPv6Every == 0:
		opts.IPv6Every = 4
	case opts.IPv6Every < 0:
		opts.IPv6Every = 0
	}
	w := &Workload{}
	for left := opts.Conns; left > 0 || len(w.children) == 0; {
		n := min(left, opts.PerProcess)
		left -= n
		spec := Spec{Conns: n, Listeners: opts.ListenersPerProcess, IPv6Every: opts.IPv6Every}
		c, err := startChild(ctx, spec, opts.NetnsPerProcess)
		if err != nil {
			w.Stop()
			return nil, err
		}
		w.children = append(w.children, c)
		w.Sockets += 2*n + spec.Listeners
	}
	return w, nil
}

func startChild(ctx context.Context, spec Spec, ownNetns bool) (*proc, error) {
	cmd, err := Helper().Command(ctx, spec.encode())
	if err != nil {
		return nil, err
	}
	if ownNetns {
		// The whole process, every thread, from its first instruction:
		// its /proc/PID/net is the namespace's.
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting workload child: %w", err)
	}
	c := &proc{cmd: cmd, stdin: stdin}
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err == nil && !strings.HasPrefix(line, "ready") {
			err = fmt.Errorf("workload child said %q", line)
		}
		ready <- err
	}()
	select {
	case err = <-ready:
	case <-time.After(2 * time.Minute):
		err = errors.New("workload child not ready after 2 minutes")
	}
	if err != nil {
		c.stop()
		return nil, fmt.Errorf("workload child (%d connections): %w", spec.Conns, err)
	}
	return c, nil
}

// PIDs lists the children's process ids.
func (w *Workload) PIDs() []int {
	pids := make([]int, len(w.children))
	for i, c := range w.children {
		pids[i] = c.cmd.Process.Pid
	}
	return pids
}

// Stop ends the children (closing their stdin tells them to exit) and
// waits for them.
func (w *Workload) Stop() {
	for _, c := range w.children {
		c.stop()
	}
	w.children = nil
}

func (c *proc) stop() {
	c.stdin.Close()
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
	}
}
