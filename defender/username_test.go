package defender

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/language"
	"golang.org/x/text/unicode/norm"
)

func TestCanonicalUsername(t *testing.T) {
	for in, want := range map[string]string{
		"alice":         "alice",
		"Alice":         "alice",
		" alice ":       "alice",
		"ALICE":         "alice",
		"ａｌｉｃｅ":         "alice",
		"\u00a0alice\t": "alice",
		"Straße":        "strasse",
		"ǅ":             "dž",
		"":              "",
		"   ":           "",
		"Ω":             "ω",
		"ﬁle":           "file",
		"a\x00b":        "a\x00b",
		"alİce":         "alice", // strings.ToLower("İ") == "i"
		"alıce":         "alice", // strings.ToUpper("ı") == "I"
		"ali\u0307ce":   "alice", // cases.Fold("İ") == "i\u0307"
		"ALİCE":         "alice",
		"\u212aelvin":   "kelvin", // Kelvin sign, EqualFold with k
		"ſam":           "sam",    // long s, EqualFold with s
	} {
		if got := CanonicalUsername(in); got != want {
			t.Errorf("CanonicalUsername(%q) = %q, want %q", in, got, want)
		}
	}
	if got := TrimUsername("  Bob\n"); got != "Bob" {
		t.Errorf("TrimUsername = %q", got)
	}
	// Trim, then measure; never cut.
	padded := strings.Repeat(" ", 1030) + "alice"
	if err := checkUsername(padded); err != nil || CanonicalUsername(padded) != "alice" {
		t.Errorf("padded alice: %v, %q", err, CanonicalUsername(padded))
	}
	long1 := strings.Repeat("x", MaxUsernameBytes) + "1"
	long2 := strings.Repeat("x", MaxUsernameBytes) + "2"
	if checkUsername(long1) != ErrUsernameTooLong || checkUsername(strings.Repeat("x", MaxUsernameBytes)) != nil {
		t.Errorf("the bound is not MaxUsernameBytes after trimming")
	}
	if CanonicalUsername(long1) == CanonicalUsername(long2) {
		t.Errorf("two long names share a canonical form: they were cut")
	}
}

// comparisons are the ways Go code commonly decides that two usernames are
// the same; the canonical form must merge every pair any of them merges.
var comparisons = map[string]func(string) string{
	"strings.ToLower": strings.ToLower,
	"strings.ToUpper": strings.ToUpper,
	"strings.ToTitle": strings.ToTitle,
	"cases.Fold":      cases.Fold().String,
	"cases.Lower":     cases.Lower(language.Und).String,
	"cases.Upper":     cases.Upper(language.Und).String,
	"cases.Lower(tr)": cases.Lower(language.Turkish).String,
	"cases.Upper(tr)": cases.Upper(language.Turkish).String,
	"NFC":             norm.NFC.String,
	"NFD":             norm.NFD.String,
	"NFKC":            norm.NFKC.String,
	"NFKD":            norm.NFKD.String,
}

// equalFoldVariant returns s with each rune replaced by a member of its
// strings.EqualFold orbit, picked by pick.
func equalFoldVariant(s string, pick func() int) string {
	var b strings.Builder
	for _, r := range s {
		for k := pick(); k > 0; k-- {
			r = unicode.SimpleFold(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// checkMerges fails when the canonical form splits x from any name that one
// of the comparisons (or strings.EqualFold) treats as x.
func checkMerges(t testing.TB, x string, pick func() int) {
	c := CanonicalUsername(x)
	if c2 := CanonicalUsername(c); c2 != c {
		t.Fatalf("not idempotent: %+q -> %+q -> %+q", x, c, c2)
	}
	for name, f := range comparisons {
		if y := f(x); CanonicalUsername(y) != c {
			t.Fatalf("%s(%+q) = %+q: canonical %+q, but %+q for the original", name, x, y, CanonicalUsername(y), c)
		}
	}
	if y := equalFoldVariant(x, pick); !strings.EqualFold(x, y) || CanonicalUsername(y) != c {
		t.Fatalf("strings.EqualFold(%+q, %+q): canonical %+q vs %+q", x, y, c, CanonicalUsername(y))
	}
}

// TestCanonicalMergesEveryRune: every code point, between two letters,
// keeps its canonical form under every comparison.
func TestCanonicalMergesEveryRune(t *testing.T) {
	n := 0
	for r := rune(0x20); r <= unicode.MaxRune; r++ {
		if !utf8.ValidRune(r) || !unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S, unicode.Z) {
			continue
		}
		k := 0
		checkMerges(t, "a"+string(r)+"b", func() int { k++; return k % 3 })
		n++
	}
	t.Logf("%d code points checked", n)
}

// tricky are the runes whose case mappings and normalisations interact.
var tricky = []rune{'a', 'i', 'I', 'İ', 'ı', 'ß', 'ẞ', 's', 'S', 'ſ', 'k', 'K', 'K', 'ﬃ', 'ﬁ', 'Å', 'Å', 'å',
	'\u0307', '\u0301', '\u0300', '\u0308', '\u030a', '\u0345', 'ι', 'Ι', 'ΐ', 'ς', 'σ', 'Σ', 'ǅ', 'Ǆ', 'ǆ',
	'가', '\u1100', '\u1161', '\u11a8', 'ｱ', 'ｶ', 'ﾞ', 'カ', '\u3099', '①', '㎏', 'Ⅸ', 'ⅸ', 'ǰ', 'j', 'J', 'ŉ', 'ʼ',
	'Ω', 'Ω', 'ω', 'µ', 'μ', ' ', '\u00a0', '\u3000', 'ｅ', 'Ｅ', 'é', 'É', 'ᾳ', 'ᾼ', '\u0344', '\u0313', 'Ꭰ',
	'ꭰ', 'ẛ', 'ṡ', 'Ṡ', 'ﬅ', 'ﬆ', 'ǈ', '\u05b4', '\u0591', 'ﷺ', '\u1fbe', '\u0385', '\u1e9e'}

// TestCanonicalMergesTrickyStrings: random strings of the tricky runes keep
// their canonical form under every comparison.
func TestCanonicalMergesTrickyStrings(t *testing.T) {
	n := 30000
	if testing.Short() {
		n = 3000
	}
	rng := rand.New(rand.NewPCG(7, 11))
	for i := 0; i < n; i++ {
		var b strings.Builder
		for j, k := 0, 1+rng.IntN(6); j < k; j++ {
			b.WriteRune(tricky[rng.IntN(len(tricky))])
		}
		checkMerges(t, b.String(), func() int { return rng.IntN(4) })
	}
	t.Logf("%d strings checked", n)
}

func FuzzCanonicalUsername(f *testing.F) {
	for _, s := range []string{"Alice", " ａｌｉｃｅ ", "Straße", "ǅ", "\u0345", "ﬃ", "İ", "\u1e9e", "a\u0301", "alİce", "\u0345\u0591ι"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 64 {
			s = s[:64]
		}
		i := 0
		checkMerges(t, s, func() int { i++; return i % 3 })
	})
}
