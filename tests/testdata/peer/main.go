// Command cbpeer is the integration tests' TCP peer: a real process that
// listens or connects on loopback and holds its sockets until killed, so the
// agent has something to join to a pid, a binary and a command line.
//
//	cbpeer listen ADDR              listen, accept and hold every connection
//	cbpeer connect ADDR [SRC] [N]   open N connections (from source ip SRC) and hold them
//	cbpeer flash ADDR               connect, then exit at once
//
// It prints one line when its sockets are ready: "ready ADDR" with the
// listening or local address.
package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
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
