package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/connbeat/connbeat/internal/testkit/child"
)

// The churn workload runs in processes of its own, so that its CPU is
// measured apart from the tool's and connbeat's: a server that reads each
// connection's payload and closes it first (its end keeps the TIME_WAIT,
// so the clients never run out of ephemeral ports), and clients that
// connect at a fixed rate, send the payload, wait for the server's close
// and close. Plain blocking system calls, no runtime poller: the
// workload's cost is the kernel's and little else.

// payload is what each connection carries from client to server.
const payload = 64

// serverHelper listens on 127.0.0.1 (port 0), prints "ready PORT", and
// serves until its stdin closes.
var serverHelper = child.Helper{Name: "lifecycle-server", Main: func(args []string) error {
	fd, port, err := listen4()
	if err != nil {
		return err
	}
	for range 4 {
		go serve(fd)
	}
	fmt.Printf("ready %d\n", port)
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}}

func listen4() (fd, port int, err error) {
	fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, 0, fmt.Errorf("socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return 0, 0, fmt.Errorf("bind: %w", err)
	}
	if err := unix.Listen(fd, 4096); err != nil {
		return 0, 0, fmt.Errorf("listen: %w", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return 0, 0, fmt.Errorf("getsockname: %w", err)
	}
	return fd, sa.(*unix.SockaddrInet4).Port, nil
}

// serve accepts connections, reads each one's payload and closes it.
func serve(ln int) {
	buf := make([]byte, payload)
	for {
		c, _, err := unix.Accept4(ln, unix.SOCK_CLOEXEC)
		if err != nil {
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.ECONNABORTED) {
				continue
			}
			return
		}
		for got := 0; got < payload; {
			n, err := unix.Read(c, buf[got:])
			if n <= 0 || err != nil {
				break
			}
			got += n
		}
		unix.Close(c)
	}
}

// clientResult is what a client child prints when done.
type clientResult struct {
	Made, Failed int
	FirstError   string `json:",omitempty"`
}

// clientHelper's arguments: port, rate (connections a second), duration.
// It connects to 127.0.0.1:port at that rate for that long with a few
// workers, and prints a clientResult.
var clientHelper = child.Helper{Name: "lifecycle-client", Main: func(args []string) error {
	if len(args) != 3 {
		return fmt.Errorf("want port, rate and duration, got %q", args)
	}
	port, err1 := strconv.Atoi(args[0])
	rate, err2 := strconv.Atoi(args[1])
	d, err3 := time.ParseDuration(args[2])
	if err := errors.Join(err1, err2, err3); err != nil || rate <= 0 {
		return fmt.Errorf("bad arguments %q: %v", args, err)
	}
	var (
		next         atomic.Int64
		made, failed atomic.Int64
		firstErr     sync.Once
		res          clientResult
		wg           sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(d)
	interval := time.Second / time.Duration(rate)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, payload)
			for {
				due := start.Add(time.Duration(next.Add(1)-1) * interval)
				if !due.Before(end) {
					return
				}
				if w := time.Until(due); w > 0 {
					time.Sleep(w)
				}
				if err := connectOnce(port, buf); err != nil {
					failed.Add(1)
					firstErr.Do(func() { res.FirstError = err.Error() })
					continue
				}
				made.Add(1)
			}
		}()
	}
	wg.Wait()
	res.Made, res.Failed = int(made.Load()), int(failed.Load())
	return json.NewEncoder(os.Stdout).Encode(res)
}}

// connectOnce makes one connection: connect, send the payload, wait for
// the server to close, close.
func connectOnce(port int, buf []byte) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: port}); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	if _, err := unix.Write(fd, buf); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	for {
		n, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if n <= 0 || err != nil {
			return nil // the server's close (or reset): done
		}
	}
}

// churnResult is one run of the workload.
type churnResult struct {
	Port   int
	Made   int
	Failed int
	// Seconds is from the first client's start to the last one's end:
	// longer than asked when the clients could not keep the rate.
	Seconds  float64
	CPU      time.Duration // clients' and server's user+system time
	FirstErr string        `json:",omitempty"`
}

// server is a running server child.
type server struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	port  int
}

func startServer(ctx context.Context) (*server, error) {
	cmd, err := serverHelper.Command(ctx)
	if err != nil {
		return nil, err
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
		return nil, fmt.Errorf("starting the churn server: %w", err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	port, perr := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "ready ")))
	if err != nil || perr != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("the churn server said %q: %v", line, errors.Join(err, perr))
	}
	return &server{cmd: cmd, stdin: stdin, port: port}, nil
}

// stop ends the server and returns its CPU time.
func (s *server) stop() time.Duration {
	s.stdin.Close()
	_ = s.cmd.Wait()
	ps := s.cmd.ProcessState
	return ps.UserTime() + ps.SystemTime()
}

// churn runs clients processes sharing rate against the server for d
// and waits for them.
func churn(ctx context.Context, srv *server, rate, clients int, d time.Duration) (churnResult, error) {
	res := churnResult{Port: srv.port}
	type run struct {
		cmd *exec.Cmd
		out strings.Builder
	}
	runs := make([]*run, clients)
	t0 := time.Now()
	for i := range runs {
		share := rate / clients
		if i < rate%clients {
			share++
		}
		cmd, err := clientHelper.Command(ctx, strconv.Itoa(srv.port), strconv.Itoa(max(share, 1)), d.String())
		if err != nil {
			return res, err
		}
		r := &run{cmd: cmd}
		cmd.Stdout = &r.out
		if err := cmd.Start(); err != nil {
			return res, fmt.Errorf("starting a churn client: %w", err)
		}
		runs[i] = r
	}
	var errs []error
	for _, r := range runs {
		if err := r.cmd.Wait(); err != nil {
			errs = append(errs, fmt.Errorf("churn client: %w", err))
			continue
		}
		ps := r.cmd.ProcessState
		res.CPU += ps.UserTime() + ps.SystemTime()
		var cr clientResult
		if err := json.Unmarshal([]byte(r.out.String()), &cr); err != nil {
			errs = append(errs, fmt.Errorf("churn client said %q: %w", r.out.String(), err))
			continue
		}
		res.Made += cr.Made
		res.Failed += cr.Failed
		if res.FirstErr == "" {
			res.FirstErr = cr.FirstError
		}
	}
	res.Seconds = time.Since(t0).Seconds()
	return res, errors.Join(errs...)
}
