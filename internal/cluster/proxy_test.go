package cluster

import (
	"bufio"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// echoServer answers every line with the same line.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

func roundTrip(c net.Conn, r *bufio.Reader, msg string) (string, error) {
	if _, err := c.Write([]byte(msg + "\n")); err != nil {
		return "", err
	}
	_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	return r.ReadString('\n')
}

func TestProxy(t *testing.T) {
	tests := []struct {
		name string
		act  func(*Proxy)
		// wantTimeout: the reply never comes and the socket stays open
		// (partition); otherwise the connection ends (reset).
		wantTimeout bool
	}{
		{name: "partition drops silently", act: (*Proxy).Partition, wantTimeout: true},
		{name: "reset breaks the connection", act: (*Proxy).Reset},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := StartProxy(echoServer(t))
			if err != nil {
				t.Fatalf("StartProxy() = %v", err)
			}
			defer p.Close()
			c, err := net.Dial("tcp", p.Addr)
			if err != nil {
				t.Fatalf("Dial() = %v", err)
			}
			defer c.Close()
			r := bufio.NewReader(c)
			if got, err := roundTrip(c, r, "hello"); err != nil || got != "hello\n" {
				t.Fatalf("roundTrip() = %q, %v, want hello", got, err)
			}
			tt.act(p)
			_, err = roundTrip(c, r, "again")
			var ne net.Error
			timedOut := errors.As(err, &ne) && ne.Timeout()
			if timedOut != tt.wantTimeout || err == nil {
				t.Errorf("roundTrip() after the fault = %v, want timeout %v", err, tt.wantTimeout)
			}
		})
	}
}
