// Command cbpeer is the integration tests' TCP peer: a real process that
// listens or connects on loopback and holds its sockets until killed, so the
// agent has something to join to a pid, a binary and a command line.
//
//	cbpeer listen ADDR              listen, accept and hold every connection
//	cbpeer connect ADDR [SRC] [N]   open N connections (from source ip SRC) and hold them
//	cbpeer flash ADDR               connect, then exit at once
//	cbpeer dial udp ADDR N          connect N UDP sockets to ADDR and hold them
//	cbpeer serve tcp|udp ADDR N M   answer each client's first N bytes (a
//	                                datagram, for udp) with M bytes
//	cbpeer exchange tcp|udp ADDR N M  send N bytes, read M, then hold the
//	                                socket until stdin ends, and exit
//	cbpeer once tcp|udp ADDR N M    connect (udp: no connect, sendto), send
//	                                N bytes, read M, close and exit at once;
//	                                prints "done LOCAL" (tcp), "refused"
//	                                when the connect was refused
//
// It prints one line when its sockets are ready: "ready ADDR" with the
// listening or local address.
package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "cbpeer:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: cbpeer listen|connect|flash ADDR [SRC] [N]")
	}
	switch args[0] {
	case "listen":
		ln, err := net.Listen("tcp", args[1])
		if err != nil {
			return err
		}
		fmt.Println("ready", ln.Addr())
		var held []net.Conn
		for {
			c, err := ln.Accept()
			if err != nil {
				return err
			}
			held = append(held, c)
		}
	case "dial":
		if len(args) < 4 {
			return fmt.Errorf("usage: cbpeer dial udp ADDR N")
		}
		n, err := strconv.Atoi(args[3])
		if err != nil {
			return err
		}
		var held []net.Conn
		for range n {
			c, err := net.Dial(args[1], args[2])
			if err != nil {
				return err
			}
			held = append(held, c)
		}
		fmt.Println("ready", held[0].LocalAddr())
		for {
			time.Sleep(time.Hour)
		}
	case "serve", "exchange", "once":
		if len(args) < 5 {
			return fmt.Errorf("usage: cbpeer %s tcp|udp ADDR N M", args[0])
		}
		n, err := strconv.Atoi(args[3])
		if err != nil {
			return err
		}
		m, err := strconv.Atoi(args[4])
		if err != nil {
			return err
		}
		switch args[0] {
		case "serve":
			return serve(args[1], args[2], n, m)
		case "once":
			return once(args[1], args[2], n, m)
		}
		return exchange(args[1], args[2], n, m)
	case "connect", "flash":
		d := net.Dialer{Timeout: 10 * time.Second}
		if len(args) > 2 && args[2] != "" {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(args[2])}
		}
		n := 1
		if len(args) > 3 {
			var err error
			if n, err = strconv.Atoi(args[3]); err != nil {
				return err
			}
		}
		var held []net.Conn
		for i := 0; i < n; i++ {
			c, err := d.Dial("tcp", args[1])
			if err != nil {
				return err
			}
			held = append(held, c)
		}
		fmt.Println("ready", held[0].LocalAddr())
		if args[0] == "flash" {
			return nil
		}
		// Not select{}: with nothing else runnable, a binary built without
		// cgo dies of "all goroutines are asleep" and drops its sockets.
		for {
			time.Sleep(time.Hour)
		}
	}
	return fmt.Errorf("unknown mode %q", args[0])
}

// serve answers every client's first n bytes with m bytes: the conntrack
// tests know each direction's payload.
func serve(network, addr string, n, m int) error {
	if network == "udp" {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return err
		}
		fmt.Println("ready", pc.LocalAddr())
		buf := make([]byte, 65536)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return err
			}
			if _, err := pc.WriteTo(make([]byte, m), from); err != nil {
				return err
			}
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Println("ready", ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			if _, err := io.ReadFull(c, make([]byte, n)); err != nil {
				return
			}
			if _, err := c.Write(make([]byte, m)); err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, c) // until the client closes
		}()
	}
}

// exchange sends n bytes, reads m, says so, and holds the socket until its
// stdin ends: the test decides when the flow closes and the process goes.
func exchange(network, addr string, n, m int) error {
	c, err := net.DialTimeout(network, addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write(make([]byte, n)); err != nil {
		return err
	}
	if network == "udp" {
		buf := make([]byte, 65536)
		if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			return err
		}
		got, err := c.Read(buf)
		if err != nil {
			return err
		}
		if got != m {
			return fmt.Errorf("read a datagram of %d bytes, want %d", got, m)
		}
	} else if _, err := io.ReadFull(c, make([]byte, m)); err != nil {
		return err
	}
	fmt.Println("ready", c.LocalAddr())
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

// once is a short-lived client: one exchange of n bytes out and m back,
// then the socket closes and the process exits. For udp it sends from an
// unconnected socket (sendto), as a DNS client does.
func once(network, addr string, n, m int) error {
	if network == "udp" {
		to, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			return err
		}
		pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: to.IP, Port: 0})
		if err != nil {
			return err
		}
		defer pc.Close()
		if _, err := pc.WriteTo(make([]byte, n), to); err != nil {
			return err
		}
		if err := pc.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			return err
		}
		buf := make([]byte, 65536)
		got, _, err := pc.ReadFrom(buf)
		if err != nil {
			return err
		}
		if got != m {
			return fmt.Errorf("read a datagram of %d bytes, want %d", got, m)
		}
		fmt.Println("done", pc.LocalAddr())
		return nil
	}
	c, err := net.DialTimeout(network, addr, 10*time.Second)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			fmt.Println("refused")
			return nil
		}
		return err
	}
	defer c.Close()
	if _, err := c.Write(make([]byte, n)); err != nil {
		return err
	}
	if _, err := io.ReadFull(c, make([]byte, m)); err != nil {
		return err
	}
	fmt.Println("done", c.LocalAddr())
	return nil
}
