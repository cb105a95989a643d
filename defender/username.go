package defender

import (
	"strings"
	"unicode"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// MaxUsernameBytes bounds the username input: longer input is cut (on a rune
// boundary) before canonicalisation. No real username is that long, and the
// bound keeps the work per request small.
const MaxUsernameBytes = 1024

// CanonicalUsername returns the canonical form of a username: Unicode white
// space trimmed, NFKC-normalised, case-folded, repeated until stable, so
// that "Alice", " alice ", "ALICE" and fullwidth "ａｌｉｃｅ" are one
// identity. It is idempotent.
func CanonicalUsername(s string) string {
	if len(s) > MaxUsernameBytes {
		s = cutUTF8(s, MaxUsernameBytes)
	}
	if isCanonicalASCII(s) {
		return s
	}
	for i := 0; i < 4; i++ {
		t := strings.TrimFunc(s, unicode.IsSpace)
		t = norm.NFKC.String(t)
		t = cases.Fold().String(t)
		t = norm.NFKC.String(t)
		t = strings.TrimFunc(t, unicode.IsSpace)
		if t == s {
			break
		}
		s = t
	}
	return s
}

// isCanonicalASCII reports an ASCII string without upper case, control
// bytes or surrounding space: already canonical (the common fast path).
func isCanonicalASCII(s string) bool {
	if s == "" {
		return true
	}
	if s[0] == ' ' || s[len(s)-1] == ' ' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || ('A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

func cutUTF8(s string, n int) string {
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// TrimUsername returns the username as typed, trimmed of Unicode white
// space and bounded, as the audit log records it.
func TrimUsername(s string) string {
	if len(s) > MaxUsernameBytes {
		s = cutUTF8(s, MaxUsernameBytes)
	}
	return strings.TrimFunc(s, unicode.IsSpace)
}
