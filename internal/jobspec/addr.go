package jobspec

import "net/netip"

// privatePrefixes are the address ranges a job's git traffic must not
// reach unless the operator allows private git hosts: this host, its
// networks and the cloud metadata service, in IPv4 and IPv6.
var privatePrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),      // "this network": 0.0.0.0 reaches the local host
	netip.MustParsePrefix("10.0.0.0/8"),     // private
	netip.MustParsePrefix("100.64.0.0/10"),  // carrier-grade NAT, also some clouds' internal ranges
	netip.MustParsePrefix("127.0.0.0/8"),    // loopback
	netip.MustParsePrefix("169.254.0.0/16"), // link-local: cloud metadata at 169.254.169.254
	netip.MustParsePrefix("172.16.0.0/12"),  // private
	netip.MustParsePrefix("192.168.0.0/16"), // private
	netip.MustParsePrefix("224.0.0.0/4"),    // multicast
	netip.MustParsePrefix("240.0.0.0/4"),    // reserved, and the broadcast address
	netip.MustParsePrefix("::/128"),         // unspecified
	netip.MustParsePrefix("::1/128"),        // loopback
	netip.MustParsePrefix("fc00::/7"),       // unique local (ULA)
	netip.MustParsePrefix("fe80::/10"),      // link-local
	netip.MustParsePrefix("fec0::/10"),      // site-local (deprecated, still routed by some stacks)
	netip.MustParsePrefix("ff00::/8"),       // multicast
}

// nat64Prefix is the well-known NAT64 prefix: its addresses carry an IPv4
// address in their last 32 bits, which a NAT64 gateway connects to.
var nat64Prefix = netip.MustParsePrefix("64:ff9b::/96")

// IsPrivateAddr reports whether a is loopback, private, link-local
// (cloud metadata), unspecified, multicast, carrier-grade NAT, IPv6 ULA or
// reserved, looking through IPv4-mapped and NAT64 IPv6 forms to the IPv4
// address they carry. Invalid addresses count as private.
func IsPrivateAddr(a netip.Addr) bool {
	if !a.IsValid() {
		return true
	}
	a = a.WithZone("").Unmap()
	if nat64Prefix.Contains(a) {
		b := a.As16()
		a = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	}
	for _, p := range privatePrefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
