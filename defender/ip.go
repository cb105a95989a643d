package defender

import (
	"net/http"
	"net/netip"
	"strings"
)

// Header parsing bounds: a forged header cannot make ClientIP do unbounded
// work.
const (
	maxHeaderBytes = 4096 // bytes of proxy header looked at, all lines together
	maxHeaderItems = 32   // entries looked at, from the right
	maxItemBytes   = 64   // longest entry accepted (an IPv6 address with port fits)
)

// ParseIP parses one address strictly: IPv4 dotted quad without leading
// zeros, or IPv6, optionally with a port (1.2.3.4:80, [::1]:80) or brackets;
// zones are dropped, IPv4-mapped IPv6 is unmapped, and the unspecified
// addresses (0.0.0.0, ::) are rejected. It reports false for anything else.
func ParseIP(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if len(s) == 0 || len(s) > maxItemBytes {
		return netip.Addr{}, false
	}
	var a netip.Addr
	var err error
	switch {
	case s[0] == '[':
		if ap, e := netip.ParseAddrPort(s); e == nil {
			a = ap.Addr()
		} else if s[len(s)-1] == ']' {
			a, err = netip.ParseAddr(s[1 : len(s)-1])
		} else {
			err = e
		}
	case strings.Count(s, ":") == 1:
		var ap netip.AddrPort
		ap, err = netip.ParseAddrPort(s)
		a = ap.Addr()
	default:
		a, err = netip.ParseAddr(s)
	}
	if err != nil || !a.IsValid() {
		return netip.Addr{}, false
	}
	a = a.Unmap().WithZone("")
	if a.IsUnspecified() {
		return netip.Addr{}, false
	}
	return a, true
}

// ClientIP returns the client address of r per the proxy settings
// (behaviour section 3): the socket peer; or, when BehindReverseProxy is set
// and the peer is a trusted proxy, the right-most entry of the proxy header
// that is not itself a trusted proxy, across all lines of the header. A
// garbage entry met on the way falls back to the peer. The result is
// canonical (unmapped, no zone, no port); it is the zero Addr when the peer
// itself is not a valid address.
func (d *Defender) ClientIP(r *http.Request) netip.Addr {
	return clientIP(&d.cfg, r.RemoteAddr, r.Header)
}

func clientIP(c *Config, remoteAddr string, h http.Header) netip.Addr {
	peer, ok := ParseIP(remoteAddr)
	if !ok {
		return netip.Addr{}
	}
	if !c.BehindReverseProxy || !inPrefixes(c.TrustedProxies, peer) {
		return peer
	}
	values := h.Values(c.ReverseProxyHeader)
	forwarded := strings.EqualFold(c.ReverseProxyHeader, "Forwarded")
	budget, items := maxHeaderBytes, 0
	var leftmost netip.Addr
	for i := len(values) - 1; i >= 0; i-- {
		line := values[i]
		if len(line) > budget {
			line = line[len(line)-budget:] // keep the right-most part
			if j := strings.IndexByte(line, ','); j >= 0 {
				line = line[j+1:]
			} else {
				return peer
			}
		}
		budget -= len(line)
		for line != "" {
			var item string
			if j := strings.LastIndexByte(line, ','); j >= 0 {
				item, line = line[j+1:], line[:j]
			} else {
				item, line = line, ""
			}
			if strings.TrimSpace(item) == "" {
				continue
			}
			if items++; items > maxHeaderItems {
				return peer
			}
			if forwarded {
				var found bool
				if item, found = forwardedFor(item); !found {
					return peer
				}
			}
			a, ok := ParseIP(item)
			if !ok {
				return peer
			}
			if !inPrefixes(c.TrustedProxies, a) {
				return a
			}
			leftmost = a
		}
		if budget <= 0 {
			break
		}
	}
	if leftmost.IsValid() {
		return leftmost // every hop is a trusted proxy: the client is the first
	}
	return peer
}

// forwardedFor extracts the for= parameter of one RFC 7239 element.
func forwardedFor(elem string) (string, bool) {
	for _, pair := range strings.Split(elem, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if ok && strings.EqualFold(strings.TrimSpace(k), "for") {
			return strings.Trim(strings.TrimSpace(v), `"`), true
		}
	}
	return "", false
}

func inPrefixes(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ipIdentity returns the string an address is counted under: the address
// for IPv4, the /IPv6Prefix network ("2001:db8::/64") for IPv6, or the
// address itself with prefix 128.
func ipIdentity(a netip.Addr, bits int) string {
	if a.Is4() || bits >= 128 {
		return a.String()
	}
	p, _ := a.Prefix(bits)
	return p.String()
}

// parseIPIdentity reads an address or prefix given to the admin and returns
// its identity string under bits.
func parseIPIdentity(s string, bits int) (string, bool) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := ParsePrefix(s)
		if err != nil {
			return "", false
		}
		if p.Addr().Is4() {
			if p.Bits() != 32 {
				return "", false
			}
			return p.Addr().String(), true
		}
		if p.Bits() < bits {
			return "", false
		}
		return ipIdentity(p.Addr(), bits), true
	}
	a, ok := ParseIP(s)
	if !ok {
		return "", false
	}
	return ipIdentity(a, bits), true
}
