package testkit

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// FreePorts returns n distinct TCP ports that were free a moment ago on
// every address, for a server a test starts on a port of its choosing
// (a broker, a container's published port). They come from below the
// kernel's ephemeral range (net.ipv4.ip_local_port_range), which the
// kernel never hands to a connect or a bind to port 0: the tests' own
// connections, thousands of them, cannot take one between this call and
// the server's bind, as they could a port a listen on port 0 found.
func FreePorts(n int) ([]int, error) {
	lo, hi := 10000, ephemeralLow("/proc/sys/net/ipv4/ip_local_port_range")
	if hi-lo < 4*n {
		return nil, fmt.Errorf("finding %d free ports: only %d below the ephemeral range", n, hi-lo)
	}
	ports := make([]int, 0, n)
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for tries := 0; len(ports) < n; tries++ {
		if tries > 1000 {
			return nil, errors.New("finding free ports: 1,000 candidates below the ephemeral range were taken")
		}
		l, err := net.Listen("tcp", ":"+strconv.Itoa(lo+rand.IntN(hi-lo)))
		if err != nil {
			continue // taken
		}
		held = append(held, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// ephemeralLow is the first port of the kernel's ephemeral range, 32768
// (its default) when the file cannot be read.
func ephemeralLow(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 32768
	}
	v, err := strconv.Atoi(f[0])
	if err != nil || v <= 10000 || v > 65535 {
		return 32768
	}
	return v
}
