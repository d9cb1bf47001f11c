package capture

import (
	"io"
	"net"
	"testing"

	"github.com/connbeat/connbeat/internal/testkit/kerneltest"
	"github.com/connbeat/connbeat/model"
)

// BenchmarkKernelConnection times one loopback TCP connection (connect,
// accept, close at both ends) without the capture and with it, its
// records read and folded and its flows kept: the difference is the
// capture's cost per connection, the programs' share included (they run
// in the connecting and closing threads). Other processes' connections
// on the host add records too: run it on a quiet host.
func BenchmarkKernelConnection(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			var c *Capture
			if on {
				var err error
				sizes := DefaultSizes
				sizes.RingBuffer = 32 << 20
				c, err = Open(Options{Sizes: sizes, KeepFlows: true})
				kerneltest.RequireBPF(b, err)
				defer c.Close()
			}
			ln, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					s, err := ln.Accept()
					if err != nil {
						return
					}
					io.Copy(io.Discard, s)
					s.Close()
				}
			}()
			var flows []model.ConnFlow
			var conns []Conn
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				d, err := net.Dial("tcp4", ln.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				d.Close()
				if c != nil && i%100 == 99 {
					flows = c.Flows(flows[:0])
					conns = c.Drain(conns[:0])
				}
			}
			if c != nil {
				st, _ := c.Stats()
				b.ReportMetric(float64(st.Records)/float64(b.N), "records/op")
				b.ReportMetric(float64(st.Lost), "lost")
			}
		})
	}
}
