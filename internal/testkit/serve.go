package testkit

import "net"

// Serve accepts connections on ln until ln is closed, running handle for
// each in a goroutine of its own and closing the connection after it: the
// accept loop of the tests' fake servers (hostile brokers and endpoints,
// TLS handshake servers).
func Serve(ln net.Listener, handle func(net.Conn)) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
}
