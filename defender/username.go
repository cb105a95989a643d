package defender

import (
	"errors"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// MaxUsernameBytes is the longest username accepted, in bytes, after white
// space is trimmed. A longer one is refused (ErrUsernameTooLong), never cut:
// cutting would let two different names share a counter, and a name padded
// past the cut would escape its own.
const MaxUsernameBytes = 1024

// ErrUsernameTooLong reports a username longer than MaxUsernameBytes after
// trimming. The engine refuses such a login (Verdict Refused) without
// verifying the password; the middleware answers 400.
var ErrUsernameTooLong = errors.New("defender: username too long")

// CanonicalUsername returns the canonical form of a username, the identity
// it is counted and blocked under: Unicode white space trimmed, then
// NFKC-normalised and fully case-folded, every letter mapped to one member
// of its case class, repeated until stable. It is idempotent and never cuts
// its input (see MaxUsernameBytes).
//
// The canonical form merges every pair of names that the comparisons Go
// applications commonly use treat as the same: strings.ToLower,
// strings.ToUpper, strings.EqualFold, cases.Fold, cases.Lower and
// cases.Upper (any language), and the four Unicode normalisation forms
// (NFC, NFD, NFKC, NFKD). So "Alice", " alice ", "ALICE", fullwidth
// "ａｌｉｃｅ", "alİce" (which strings.ToLower makes "alice") and "alıce"
// (which strings.ToUpper makes "ALICE") are one identity. Merging is
// transitive, so a few names that no single comparison confuses merge too
// (a dot above after an i, combining marks next to a Greek iota, which the
// ypogegrammeni's case mapping moves): merging more only makes a lockout
// stricter, while splitting one name into several counters would be a way
// around it. Applications must look users up by this form (see
// Defender.Canonical and LoginFrom), so that the name they authenticate is
// the name that is counted.
func CanonicalUsername(s string) string {
	if isCanonicalASCII(s) {
		return s
	}
	s = strings.TrimFunc(s, unicode.IsSpace)
	if isCanonicalASCII(s) {
		return s
	}
	if isASCII(s) {
		return strings.ToLower(s)
	}
	classes := caseClasses()
	for i := 0; i < 8; i++ {
		t := norm.NFKC.String(s)
		t = cases.Fold().String(t)
		t = strings.Map(func(r rune) rune {
			if rep, ok := classes[r]; ok {
				return rep
			}
			return r
		}, t)
		t = mergeMarks(norm.NFD.String(t))
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

// isASCII reports printable ASCII with no surrounding white space, whose
// canonical form is its lower case.
func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			return false
		}
	}
	return s == "" || (s[0] != ' ' && s[len(s)-1] != ' ')
}

// caseClasses maps each rune that has a case mapping to the representative
// of its class: the runes that unicode.ToLower, ToUpper, ToTitle and
// SimpleFold connect. The representative is the smallest single-rune full
// case folding found in the class (the lowest member when none folds to
// one rune), so that the map agrees with cases.Fold.
var caseClasses = sync.OnceValue(func() map[rune]rune {
	parent := map[rune]rune{}
	var find func(rune) rune
	find = func(r rune) rune {
		p, ok := parent[r]
		if !ok || p == r {
			return r
		}
		root := find(p)
		parent[r] = root
		return root
	}
	union := func(a, b rune) {
		ra, rb := find(a), find(b)
		switch {
		case ra < rb:
			parent[rb] = ra
		case rb < ra:
			parent[ra] = rb
		}
	}
	for _, cr := range unicode.CaseRanges {
		for r := rune(cr.Lo); r <= rune(cr.Hi); r++ {
			union(r, unicode.ToLower(r))
			union(r, unicode.ToUpper(r))
			union(r, unicode.ToTitle(r))
			for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
				union(r, f)
			}
		}
	}
	members := map[rune][]rune{}
	for r := range parent {
		members[find(r)] = append(members[find(r)], r)
	}
	fold := cases.Fold()
	reps := make(map[rune]rune, len(parent))
	for root, ms := range members {
		best := rune(-1)
		for _, m := range ms {
			f := fold.String(string(m))
			if fr, n := utf8.DecodeRuneInString(f); n == len(f) && (best < 0 || fr < best) {
				best = fr
			}
		}
		if best < 0 {
			best = root
		}
		for _, m := range append(ms, root) {
			if m != best {
				reps[m] = best
			}
		}
	}
	return reps
})

// mergeMarks applies, to a string in NFD, the two merges that case mappings
// make unavoidable: a combining dot above (U+0307) in the marks of an "i"
// is dropped (cases.Fold turns "İ" into "i" + U+0307, strings.ToLower into
// "i"), and the combining marks just before and after a Greek iota are
// dropped (the ypogegrammeni U+0345 is a mark that case-maps to an iota, so
// normalisation and case mapping disagree on which letter its neighbours
// belong to).
func mergeMarks(s string) string {
	if !strings.ContainsRune(s, 'ι') && !strings.ContainsRune(s, 0x307) {
		return s
	}
	out := make([]rune, 0, len(s))
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch r {
		case 'ι':
			for len(out) > 0 && isMark(out[len(out)-1]) {
				out = out[:len(out)-1]
			}
			out = append(out, r)
			for i+1 < len(rs) && isMark(rs[i+1]) {
				i++
			}
			continue
		case 0x307:
			j := len(out) - 1
			for j >= 0 && isMark(out[j]) {
				j--
			}
			if j >= 0 && out[j] == 'i' {
				continue
			}
		}
		out = append(out, r)
	}
	return string(out)
}

func isMark(r rune) bool { return unicode.In(r, unicode.Mn, unicode.Mc, unicode.Me) }

// TrimUsername returns the username as typed with its surrounding Unicode
// white space trimmed: what the audit log records (cut to its field bound
// there) and what MaxUsernameBytes measures.
func TrimUsername(s string) string {
	return strings.TrimFunc(s, unicode.IsSpace)
}

// checkUsername returns ErrUsernameTooLong when the trimmed username is
// longer than MaxUsernameBytes.
func checkUsername(s string) error {
	if len(s) > MaxUsernameBytes && len(TrimUsername(s)) > MaxUsernameBytes {
		return ErrUsernameTooLong
	}
	return nil
}
