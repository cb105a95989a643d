package defender

import (
	"net/http"
	"testing"
)

func FuzzParseIP(f *testing.F) {
	for _, s := range []string{"192.0.2.1", "[::1]:80", "::ffff:1.2.3.4", "fe80::1%eth0", "010.1.1.1", "0.0.0.0", "1.2.3.4:99999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, ok := ParseIP(s)
		if !ok {
			return
		}
		if a.Is4In6() || a.Zone() != "" || a.IsUnspecified() || !a.IsValid() {
			t.Fatalf("ParseIP(%q) = %v: not canonical", s, a)
		}
		b, ok := ParseIP(a.String())
		if !ok || b != a {
			t.Fatalf("canonical form %q does not round-trip: %v %v", a, b, ok)
		}
	})
}

func FuzzClientIPHeader(f *testing.F) {
	f.Add("10.0.0.1:1", "1.2.3.4, 10.0.0.2", "")
	f.Add("127.0.0.1:9", "unknown", "for=1.2.3.4")
	cfg := proxyCfg()
	fcfg := proxyCfg()
	fcfg.ReverseProxyHeader = "Forwarded"
	f.Fuzz(func(t *testing.T, remote, xff, fwd string) {
		peer, peerOK := ParseIP(remote)
		h := http.Header{}
		h.Add("X-Forwarded-For", xff)
		h.Add("Forwarded", fwd)
		for _, c := range []*Config{cfg, fcfg} {
			got := clientIP(c, remote, h)
			if !peerOK {
				if got.IsValid() {
					t.Fatalf("invalid peer %q gave %v", remote, got)
				}
				continue
			}
			if !got.IsValid() || got.Is4In6() || got.Zone() != "" || got.IsUnspecified() {
				t.Fatalf("clientIP gave non-canonical %v", got)
			}
			if !inPrefixes(c.TrustedProxies, peer) && got != peer {
				t.Fatalf("untrusted peer %v: header %q was believed (%v)", peer, xff, got)
			}
		}
	})
}
