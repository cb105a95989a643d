package defender

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

func TestParseIP(t *testing.T) {
	good := map[string]string{
		"192.0.2.1":                    "192.0.2.1",
		" 192.0.2.1 ":                  "192.0.2.1",
		"192.0.2.1:8080":               "192.0.2.1",
		"::ffff:192.0.2.128":           "192.0.2.128",
		"[::ffff:192.0.2.128]:80":      "192.0.2.128",
		"2001:DB8::1":                  "2001:db8::1",
		"[2001:db8::1]":                "2001:db8::1",
		"[2001:db8::1]:443":            "2001:db8::1",
		"fe80::1%eth0":                 "fe80::1",
		"2001:db8:85a3::8a2e:370:7334": "2001:db8:85a3::8a2e:370:7334",
	}
	for in, want := range good {
		a, ok := ParseIP(in)
		if !ok || a.String() != want {
			t.Errorf("ParseIP(%q) = %v, %v; want %s", in, a, ok, want)
		}
	}
	for _, in := range []string{"", "fish", "0x41.0x41.0x41.0x41", "192.168.100.34.y", "010.0.0.1", "0.0.0.0", "::",
		"[::]:80", "1.2.3.4:abc", "[::1", "unknown", "x:y", strings.Repeat("1", 65), "[::1]x"} {
		if a, ok := ParseIP(in); ok {
			t.Errorf("ParseIP(%q) = %v, want rejected", in, a)
		}
	}
}

func proxyCfg() *Config {
	c := DefaultConfig()
	c.BehindReverseProxy = true
	return &c
}

func TestClientIP(t *testing.T) {
	direct := DefaultConfig()
	fwd := proxyCfg()
	realIP := proxyCfg()
	realIP.ReverseProxyHeader = "X-Real-Ip"
	forwarded := proxyCfg()
	forwarded.ReverseProxyHeader = "Forwarded"
	cases := []struct {
		name   string
		cfg    *Config
		remote string
		header []string
		want   string
	}{
		{"direct peer", &direct, "203.0.113.5:1234", []string{"1.1.1.1"}, "203.0.113.5"},
		{"direct mapped", &direct, "[::ffff:203.0.113.5]:1234", nil, "203.0.113.5"},
		{"invalid peer", &direct, "garbage", nil, ""},
		{"forged XFF from untrusted peer ignored", fwd, "203.0.113.5:1", []string{"1.2.3.4"}, "203.0.113.5"},
		{"trusted proxy: right-most untrusted", fwd, "10.0.0.1:1", []string{"6.6.6.6, 198.51.100.7, 10.0.0.2"}, "198.51.100.7"},
		{"left-most forged entry ignored", fwd, "127.0.0.1:1", []string{"1.2.3.4, 198.51.100.7"}, "198.51.100.7"},
		{"across header lines", fwd, "10.0.0.1:1", []string{"6.6.6.6", "198.51.100.8, 10.0.0.3"}, "198.51.100.8"},
		{"garbage falls back to peer", fwd, "10.0.0.1:1", []string{"198.51.100.7, unknown"}, "10.0.0.1"},
		{"no header: peer", fwd, "10.0.0.1:1", nil, "10.0.0.1"},
		{"all trusted: left-most", fwd, "10.0.0.1:1", []string{"10.0.0.9, 10.0.0.8"}, "10.0.0.9"},
		{"port and brackets stripped", fwd, "10.0.0.1:1", []string{"[2001:db8::5]:443"}, "2001:db8::5"},
		{"mapped in header", fwd, "10.0.0.1:1", []string{"::ffff:198.51.100.9"}, "198.51.100.9"},
		{"unspecified in header", fwd, "10.0.0.1:1", []string{"0.0.0.0"}, "10.0.0.1"},
		{"empty items skipped", fwd, "10.0.0.1:1", []string{"198.51.100.7, , "}, "198.51.100.7"},
		{"other header", realIP, "10.0.0.1:1", []string{"198.51.100.10"}, "198.51.100.10"},
		{"rfc7239", forwarded, "10.0.0.1:1", []string{`for=198.51.100.11;proto=https, for="[2001:db8::7]:80"`}, "2001:db8::7"},
		{"rfc7239 without for", forwarded, "10.0.0.1:1", []string{`proto=https`}, "10.0.0.1"},
		{"too many items", fwd, "10.0.0.1:1", []string{strings.Repeat("10.0.0.5, ", 40) + "10.0.0.6"}, "10.0.0.1"},
		{"too long header keeps the right end", fwd, "10.0.0.1:1", []string{strings.Repeat("x", 5000) + ", 198.51.100.12"}, "198.51.100.12"},
		{"too long single item", fwd, "10.0.0.1:1", []string{strings.Repeat("x", 5000)}, "10.0.0.1"},
	}
	for _, c := range cases {
		h := http.Header{}
		for _, v := range c.header {
			h.Add(c.cfg.ReverseProxyHeader, v)
		}
		got := clientIP(c.cfg, c.remote, h)
		if (c.want == "" && got.IsValid()) || (c.want != "" && got.String() != c.want) {
			t.Errorf("%s: got %v, want %q", c.name, got, c.want)
		}
	}
	d := &Defender{cfg: *fwd}
	r, _ := http.NewRequest("GET", "/", nil)
	r.RemoteAddr = "10.0.0.1:5"
	r.Header.Set("X-Forwarded-For", "198.51.100.20")
	if got := d.ClientIP(r); got != netip.MustParseAddr("198.51.100.20") {
		t.Fatalf("ClientIP = %v", got)
	}
}

func TestIPIdentity(t *testing.T) {
	cases := []struct {
		in   string
		bits int
		want string
	}{
		{"192.0.2.1", 64, "192.0.2.1"},
		{"2001:db8:1:2:3:4:5:6", 64, "2001:db8:1:2::/64"},
		{"2001:db8:1:2:3:4:5:6", 48, "2001:db8:1::/48"},
		{"2001:db8:1:2:3:4:5:6", 128, "2001:db8:1:2:3:4:5:6"},
	}
	for _, c := range cases {
		if got := ipIdentity(netip.MustParseAddr(c.in), c.bits); got != c.want {
			t.Errorf("ipIdentity(%s,%d) = %s want %s", c.in, c.bits, got, c.want)
		}
	}
	for in, want := range map[string]string{
		"2001:db8:1:2::/64":  "2001:db8:1:2::/64",
		"2001:db8:1:2::9/80": "2001:db8:1:2::/64",
		"192.0.2.1/32":       "192.0.2.1",
		"192.0.2.1":          "192.0.2.1",
		"2001:db8:1:2::77":   "2001:db8:1:2::/64",
	} {
		if got, ok := parseIPIdentity(in, 64); !ok || got != want {
			t.Errorf("parseIPIdentity(%q) = %q %v, want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{"2001:db8::/32", "192.0.2.0/24", "x/1", "nope"} {
		if got, ok := parseIPIdentity(in, 64); ok {
			t.Errorf("parseIPIdentity(%q) = %q, want rejected", in, got)
		}
	}
}
