package capture

import (
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/connbeat/connbeat/internal/testkit/kerneltest"
	"github.com/connbeat/connbeat/model"
)

// open opens a capture that keeps flows, skipping where the host cannot
// run it.
func open(t *testing.T, opts Options) *Capture {
	t.Helper()
	if opts.Sizes == (Sizes{}) {
		opts.Sizes = DefaultSizes
	}
	c, err := Open(opts)
	kerneltest.RequireBPF(t, err)
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	return c
}

func TestKernelProbe(t *testing.T) {
	c := open(t, Options{KeepFlows: true})
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		s, err := ln.Accept()
		if err == nil {
			io.Copy(io.Discard, s)
			s.Write(make([]byte, 777))
			s.Close()
		}
	}()
	d, err := net.Dial("tcp4", ln.Addr().String())
	require.NoError(t, err)
	d.Write(make([]byte, 1234))
	d.(*net.TCPConn).CloseWrite()
	io.Copy(io.Discard, d)
	d.Close()
	u, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	u.WriteTo([]byte("x"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9})
	time.Sleep(200 * time.Millisecond)
	for _, conn := range c.Drain(nil) {
		t.Logf("conn %+v", conn)
	}
	for _, f := range c.Flows(nil) {
		t.Logf("flow %+v proc %+v", f, f.Process)
	}
	st, err := c.Stats()
	t.Logf("stats %+v %v pid %d", st, err, os.Getpid())
	_ = model.UDP
}
