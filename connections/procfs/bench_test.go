package procfs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/connbeat/connbeat/model"
)

// writeNetTCP writes a /proc/net/tcp{,6} pair holding n established
// loopback connections (2n lines) and a few listeners, as the kernel
// formats them.
func writeNetTCP(tb testing.TB, dir string, n int) {
	tb.Helper()
	const header4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	const header6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	var v4, v6 strings.Builder
	v4.WriteString(header4)
	v6.WriteString(header6)
	ino := 100000
	line4 := func(sl int, lport, rport, st int) {
		fmt.Fprintf(&v4, "%4d: 0100007F:%04X 0100007F:%04X %02X 00000000:00000000 00:00000000 00000000     0        0 %d 1 0000000000000000 20 4 30 10 -1\n", sl, lport, rport, st, ino)
		ino++
	}
	line6 := func(sl int, lport, rport, st int) {
		fmt.Fprintf(&v6, "%4d: 00000000000000000000000001000000:%04X 00000000000000000000000001000000:%04X %02X 00000000:00000000 00:00000000 00000000     0        0 %d 1 0000000000000000 20 4 30 10 -1\n", sl, lport, rport, st, ino)
		ino++
	}
	line4(0, 8080, 0, 0x0A)
	line6(0, 8443, 0, 0x0A)
	for i := 0; i < n; i++ {
		port := 20000 + i%40000
		if i%4 == 3 {
			line6(i, port, 8443, 1)
			line6(i, 8443, port, 1)
		} else {
			line4(i, port, 8080, 1)
			line4(i, 8080, port, 1)
		}
	}
	net := filepath.Join(dir, "net")
	if err := os.MkdirAll(net, 0o755); err != nil {
		tb.Fatal(err)
	}
	for name, body := range map[string]string{"tcp": v4.String(), "tcp6": v6.String()} {
		if err := os.WriteFile(filepath.Join(net, name), []byte(body), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

// writeNetUDP writes a /proc/net/udp{,6} pair holding n connected UDP
// sockets (a quarter IPv6) and two bound ones, as the kernel formats them.
func writeNetUDP(tb testing.TB, dir string, n int) {
	tb.Helper()
	const header4 = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops            \n"
	const header6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n"
	var v4, v6 strings.Builder
	v4.WriteString(header4)
	v6.WriteString(header6)
	ino := 500000
	fmt.Fprintf(&v4, "%5d: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 %d 2 0000000000000000 0\n", 0, ino)
	fmt.Fprintf(&v6, "%5d: 00000000000000000000000000000000:14E9 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 %d 2 0000000000000000 0\n", 0, ino+1)
	ino += 2
	for i := 0; i < n; i++ {
		port := 20000 + i%40000
		if i%4 == 3 {
			fmt.Fprintf(&v6, "%5d: 00000000000000000000000001000000:%04X 00000000000000000000000001000000:14E9 01 00000000:00000000 00:00000000 00000000     0        0 %d 2 0000000000000000 0\n", i, port, ino)
		} else {
			fmt.Fprintf(&v4, "%5d: 0100007F:%04X 0100007F:0035 01 00000000:00000000 00:00000000 00000000     0        0 %d 2 0000000000000000 0\n", i, port, ino)
		}
		ino++
	}
	net := filepath.Join(dir, "net")
	if err := os.MkdirAll(net, 0o755); err != nil {
		tb.Fatal(err)
	}
	for name, body := range map[string]string{"udp": v4.String(), "udp6": v6.String()} {
		if err := os.WriteFile(filepath.Join(net, name), []byte(body), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchmarkProcFSSocketsUDP parses /proc/net/udp and udp6 files holding
// 80,000 connected UDP sockets through the procfs source with UDP alone:
// the UDP dump beside BenchmarkProcFSSockets' TCP one.
func BenchmarkProcFSSocketsUDP(b *testing.B) {
	dir := b.TempDir()
	writeNetUDP(b, dir, 80000)
	src, err := OpenWith(dir, Options{Transports: model.TransportsOf(model.UDP)})
	if err != nil {
		b.Fatal(err)
	}
	var dst []model.Socket
	b.ReportAllocs()
	for b.Loop() {
		dst, err = src.Sockets(context.Background(), dst[:0])
		if err != nil {
			b.Fatal(err)
		}
	}
	if len(dst) != 80002 {
		b.Fatalf("parsed %d sockets, want 80002", len(dst))
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(dst)), "ns/socket")
}

// BenchmarkProcFSSockets parses /proc/net/tcp and tcp6 files holding 40,000
// connections (80,000 sockets) through the procfs source with TCP alone.
func BenchmarkProcFSSockets(b *testing.B) {
	dir := b.TempDir()
	writeNetTCP(b, dir, 40000)
	src, err := OpenWith(dir, Options{Transports: model.TransportsOf(model.TCP)})
	if err != nil {
		b.Fatal(err)
	}
	var dst []model.Socket
	b.ReportAllocs()
	for b.Loop() {
		dst, err = src.Sockets(context.Background(), dst[:0])
		if err != nil {
			b.Fatal(err)
		}
	}
	if len(dst) != 80002 {
		b.Fatalf("parsed %d sockets, want 80002", len(dst))
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(dst)), "ns/socket")
}
