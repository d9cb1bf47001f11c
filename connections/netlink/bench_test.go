package netlink

import (
	"testing"

	"github.com/connbeat/connbeat/model"
)

// synthetic builds the datagrams of a dump of n connections (2n sockets,
// a quarter IPv6) as the kernel sends them: messages packed into datagrams
// of at most 32 KiB, the last one ended by NLMSG_DONE. With udp it is a
// UDP dump of 2n connected IPv4 sockets instead (without attributes, as
// UDP dumps come).
func synthetic(n int, withInfo, udp bool) [][]byte {
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
		if udp {
			add(v4msg(1, "127.0.0.1", port, "127.0.0.1", 53))
			add(v4msg(1, "127.0.0.1", port, "127.0.0.2", 53))
			continue
		}
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
// into a reused slice, as the source does every poll; udp decodes a UDP
// dump of 80,000 connected sockets.
func BenchmarkDecode(b *testing.B) {
	for _, name := range []string{"plain", "tcp_info", "udp"} {
		withInfo, udp := name == "tcp_info", name == "udp"
		b.Run(name, func(b *testing.B) {
			frames := synthetic(40000, withInfo, udp)
			d := decoder{wantInfo: withInfo}
			if udp {
				d.transport = model.UDP
			}
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
