package jobspec

import (
	"net/netip"
	"testing"
)

func TestIsPrivateAddr(t *testing.T) {
	tests := []struct {
		addr    string
		private bool
	}{
		{"127.0.0.1", true},
		{"127.5.6.7", true},
		{"0.0.0.0", true},
		{"0.1.2.3", true},
		{"10.1.2.3", true},
		{"172.16.0.1", true},
		{"172.31.255.255", true},
		{"192.168.1.1", true},
		{"169.254.169.254", true},
		{"100.64.0.1", true},
		{"100.127.255.254", true},
		{"224.0.0.1", true},
		{"255.255.255.255", true},
		{"::", true},
		{"::1", true},
		{"fd00:ec2::254", true},
		{"fc00::1", true},
		{"fe80::1", true},
		{"fe80::1%eth0", true},
		{"ff02::1", true},
		{"::ffff:127.0.0.1", true},
		{"::ffff:169.254.169.254", true},
		{"64:ff9b::a9fe:a9fe", true}, // NAT64 of 169.254.169.254
		{"140.82.112.3", false},      // github.com
		{"100.63.255.255", false},
		{"100.128.0.0", false},
		{"172.32.0.1", false},
		{"8.8.8.8", false},
		{"2606:4700::1111", false},
		{"::ffff:8.8.8.8", false},
		{"64:ff9b::808:808", false}, // NAT64 of 8.8.8.8
	}
	for _, tc := range tests {
		if got := IsPrivateAddr(netip.MustParseAddr(tc.addr)); got != tc.private {
			t.Errorf("IsPrivateAddr(%s) = %v, want %v", tc.addr, got, tc.private)
		}
	}
	if !IsPrivateAddr(netip.Addr{}) {
		t.Error("IsPrivateAddr(invalid) = false, want true")
	}
}

func TestIsPrivateHostLiterals(t *testing.T) {
	for host, want := range map[string]bool{
		"100.64.1.1":          true,
		"[fe80::1%25eth0]":    true,
		"fe80::1%eth0":        true,
		"[::ffff:10.0.0.1]":   true,
		"[fd12::1]":           true,
		"github.com":          false,
		"metadata":            true,
		"git.internal":        true,
		"140.82.112.3":        false,
		"[2606:4700::1111]":   false,
		"127.0.0.1.nip.io":    false, // a name: where it resolves is checked at connect time
		"localhost":           true,
		"svc.cluster.local":   true,
		"169.254.169.254":     true,
		"[64:ff9b::7f00:1]":   true,
		"[64:ff9b::808:808]":  false,
		"0.0.0.0":             true,
		"255.255.255.255":     true,
		"example.localhost":   true,
		"example.com":         false,
		"[::]":                true,
		"[::1]":               true,
		"224.0.0.251":         true,
		"ff02::fb":            true,
		"[fec0::1]":           true,
		"[fc00::1]":           true,
		"192.168.0.1":         true,
		"172.20.0.1":          true,
		"10.255.255.255":      true,
		"100.100.100.200":     true, // Alibaba Cloud metadata (CGNAT range)
		"[::ffff:8.8.8.8]":    false,
		"[::ffff:100.64.0.1]": true,
	} {
		if got := IsPrivateHost(host); got != want {
			t.Errorf("IsPrivateHost(%q) = %v, want %v", host, got, want)
		}
	}
}
