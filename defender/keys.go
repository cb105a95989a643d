package defender

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"strings"
)

// Key layout (every key is printable ASCII without spaces, at most
// backend.MaxKeyLen bytes, and carries its identity as a Redis Cluster hash
// tag so that all keys of one identity live in one slot):
//
//	<prefix>:f:{<identity>}   failure counter
//	<prefix>:b:{<identity>}   block
//	<prefix>:n:{<identity>}   lockout count (escalation)
//
// where <identity> is "i:<ip>" (an IPv4 address or an IPv6 network such as
// 2001:db8::/64), "u:<name>" or "p:<ip>|<name>", and <name> is the
// canonical username percent-encoded outside [a-z0-9._@+-] (so no glob,
// brace, colon, bar, slash, space or control byte reaches a store), or "~"
// followed by the hex SHA-256 of the canonical username when the encoding
// would exceed maxNameKey bytes. Percent-encoding is injective and "~" never
// starts an encoding, so distinct canonical names never share a key (up to
// a SHA-256 collision for very long names).
const maxNameKey = 110

const (
	slotCounter  = 'f'
	slotBlock    = 'b'
	slotLockouts = 'n'
)

func safeNameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '@' || c == '+' || c == '-'
}

// appendName appends the key form of a canonical username.
func appendName(b []byte, name string) []byte {
	n := 0
	for i := 0; i < len(name); i++ {
		if safeNameByte(name[i]) {
			n++
		} else {
			n += 3
		}
	}
	if n > maxNameKey {
		sum := sha256.Sum256([]byte(name))
		b = append(b, '~')
		return hex.AppendEncode(b, sum[:])
	}
	const hexdigits = "0123456789ABCDEF"
	for i := 0; i < len(name); i++ {
		c := name[i]
		if safeNameByte(c) {
			b = append(b, c)
		} else {
			b = append(b, '%', hexdigits[c>>4], hexdigits[c&15])
		}
	}
	return b
}

// decodeName reverses appendName; hashed names are returned as they are
// (the block value keeps the display name).
func decodeName(s string) string {
	if strings.HasPrefix(s, "~") || !strings.Contains(s, "%") {
		return s
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if v, err := hex.DecodeString(s[i+1 : i+3]); err == nil {
				out = append(out, v[0])
				i += 2
				continue
			}
		}
		out = append(out, s[i])
	}
	return string(out)
}

// identity is one thing that is counted and blocked.
type identity struct {
	kind     Kind
	ip       string     // IP identity (KindIP, KindPair), or empty: see addr
	addr     netip.Addr // the client address, formatted under bits on demand
	bits     int
	username string // canonical username (KindUsername, KindPair)
	limit    int64
}

// appendIdentity appends "<prefix>:<slot>:{<identity>}".
func appendKey(b []byte, prefix string, slot byte, id *identity) []byte {
	b = append(b, prefix...)
	b = append(b, ':', slot, ':', '{')
	switch id.kind {
	case KindIP:
		b = append(b, "i:"...)
		b = id.appendIP(b)
	case KindUsername:
		b = append(b, "u:"...)
		b = appendName(b, id.username)
	case KindPair:
		b = append(b, "p:"...)
		b = id.appendIP(b)
		b = append(b, '|')
		b = appendName(b, id.username)
	}
	return append(b, '}')
}

// appendIP appends the IP identity without allocating.
func (id *identity) appendIP(b []byte) []byte {
	if id.ip != "" || !id.addr.IsValid() {
		return append(b, id.ip...)
	}
	if id.addr.Is4() || id.bits >= 128 {
		return id.addr.AppendTo(b)
	}
	p, _ := id.addr.Prefix(id.bits)
	return p.AppendTo(b)
}

// ipString returns the IP identity as a string.
func (id *identity) ipString() string {
	if id.ip == "" && id.addr.IsValid() {
		return string(id.appendIP(nil))
	}
	return id.ip
}

func (id *identity) key(prefix string, slot byte) string {
	return string(appendKey(make([]byte, 0, 64), prefix, slot, id))
}

// parseKey reads a key of the layout back into its slot and identity. The
// username of a hashed name is its key form; callers take the display name
// from the block value.
func parseKey(prefix, key string) (slot byte, id identity, ok bool) {
	rest, found := strings.CutPrefix(key, prefix+":")
	if !found || len(rest) < 6 || rest[1] != ':' || rest[2] != '{' || rest[len(rest)-1] != '}' {
		return 0, identity{}, false
	}
	slot = rest[0]
	body := rest[3 : len(rest)-1]
	kind, val, found := strings.Cut(body, ":")
	if !found {
		return 0, identity{}, false
	}
	switch kind {
	case "i":
		id = identity{kind: KindIP, ip: val}
	case "u":
		id = identity{kind: KindUsername, username: decodeName(val)}
	case "p":
		ip, name, found := strings.Cut(val, "|")
		if !found {
			return 0, identity{}, false
		}
		id = identity{kind: KindPair, ip: ip, username: decodeName(name)}
	default:
		return 0, identity{}, false
	}
	return slot, id, true
}
