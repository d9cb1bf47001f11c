package netlink

import (
	"testing"

	"github.com/connbeat/connbeat/model"
)

// syntheticDump builds the datagrams of a dump of n connections (2n
// sockets, a quarter IPv6) as the kernel sends them: messages packed into
// datagrams of at most 32 KiB, the last one ended by NLMSG_DONE.
func syntheticDump(n int, withInfo bool) [][]byte {
	const maxDatagram = 32 << 10
	var (
		frames [][]byte
		cur    []byte
		info   *model.TCPInfo
	)
	if withInfo {
		info = &model.TCPInfo{RTTMicros: 40, BytesAcked: 1000, BytesReceived: 2000, SegsIn: 10, SegsOut: 12}
	}
	add := func(m message) {
		body := diagBody(m, info)
		if len(cur)+headerLen+len(body) > maxDatagram {
			frames = append(frames, cur)
			cur = nil
		}
		cur = appendMsg(cur, msgTypeDiag, 2, 1, body)
	}
	for i := 0; i < n; i++ {
		port := uint16(20000 + i%40000)
		if i%4 == 3 {
			add(v6msg(1, "::1", port, "::1", 8443))
			add(v6msg(1, "::1", 8443, "::1", port))
		} else {
			add(v4msg(1, "127.0.0.1", port, "127.0.0.1", 8080))
			add(v4msg(1, "127.0.0.1", 8080, "127.0.0.1", port))
		}
	}
	cur = appendMsg(cur, msgTypeDone, 2, 1, doneBody(0))
	return append(frames, cur)
}

// BenchmarkDecode decodes a dump of 40,000 connections (80,000 sockets)
// into a reused slice, as the source does every poll.
func BenchmarkDecode(b *testing.B) {
	for _, withInfo := range []bool{false, true} {
		name := "plain"
		if withInfo {
			name = "tcp_info"
		}
		b.Run(name, func(b *testing.B) {
			frames := syntheticDump(40000, withInfo)
			d := decoder{wantInfo: withInfo}
			var dst []model.Socket
			b.ReportAllocs()
			for b.Loop() {
				d.reset(dst[:0])
				for _, f := range frames {
					if _, err := d.feed(f, 1); err != nil {
						b.Fatal(err)
					}
				}
				dst = d.sockets
			}
			if len(dst) != 80000 || (withInfo && dst[0].Info == nil) {
				b.Fatalf("decoded %d sockets", len(dst))
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/80000, "ns/socket")
		})
	}
}
