package cluster

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestStartToFile checks that a process started with StartToFile writes
// its output to the file itself and that Output reads it back.
func TestStartToFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.log")
	p, err := StartToFile("echo", "/bin/sh", []string{"-c", "echo to-stdout; echo to-stderr >&2"}, nil, path)
	if err != nil {
		t.Fatalf("StartToFile() = %v", err)
	}
	if code := p.ExitCode(); code != 0 {
		t.Fatalf("ExitCode() = %d, want 0", code)
	}
	for _, want := range []string{"to-stdout", "to-stderr"} {
		if !strings.Contains(p.Output(), want) {
			t.Errorf("Output() = %q, want it to contain %q", p.Output(), want)
		}
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != p.Output() {
		t.Errorf("file = %q (%v), want Output() %q", b, err, p.Output())
	}
	if _, err := StartToFile("x", "/bin/true", nil, nil, filepath.Join(t.TempDir(), "no", "such", "dir", "x.log")); err == nil {
		t.Errorf("StartToFile() into a missing directory = nil error, want one")
	}
}

func TestFreeAddr(t *testing.T) {
	addr, err := FreeAddr()
	if err != nil {
		t.Fatalf("FreeAddr() error = %v", err)
	}
	_, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("FreeAddr() = %q, want host:port: %v", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		t.Fatalf("FreeAddr() = %q, want a numeric port", addr)
	}
	// Below the ephemeral range, where outgoing connections take no ports.
	if lo := ephemeralLow(); lo > 10000 && (port >= lo || port < 10000) {
		t.Errorf("FreeAddr() port = %d, want in [10000, %d)", port, lo)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on FreeAddr() = %q: %v", addr, err)
	}
	ln.Close()
}
