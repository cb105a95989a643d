package defender

import (
	"strings"
	"testing"

	"github.com/go-defender/defender/backend"
)

func allKeys(prefix string, id identity) []string {
	return []string{id.key(prefix, slotCounter), id.key(prefix, slotBlock), id.key(prefix, slotLockouts)}
}

func TestKeysAreSafeBoundedAndParse(t *testing.T) {
	long := strings.Repeat("ü", 200)
	prefix := strings.Repeat("p", 32)
	ids := []identity{
		{kind: KindIP, ip: "192.0.2.1"},
		{kind: KindIP, ip: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
		{kind: KindUsername, username: "alice"},
		{kind: KindUsername, username: "a b:c%d{e}*?[x]|/\\\n\x00"},
		{kind: KindUsername, username: long},
		{kind: KindPair, ip: "2001:db8::/64", username: long},
		{kind: KindPair, ip: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", username: strings.Repeat("%", 36)},
	}
	for _, id := range ids {
		for _, k := range allKeys(prefix, id) {
			if err := backend.CheckKey(k); err != nil {
				t.Errorf("%+v: %v", id, err)
			}
			if strings.Count(k, "{") != 1 || strings.Count(k, "}") != 1 {
				t.Errorf("key %q must have exactly one hash tag", k)
			}
			slot, got, ok := parseKey(prefix, k)
			if !ok || slot != k[len(prefix)+1] || got.kind != id.kind || got.ip != id.ip {
				t.Errorf("parseKey(%q) = %c %+v %v", k, slot, got, ok)
			}
			if !strings.HasPrefix(got.username, "~") && got.username != id.username {
				t.Errorf("username round trip %q -> %q", id.username, got.username)
			}
		}
	}
	for _, bad := range []string{"x", prefix + ":f:", prefix + ":f:{q:zz}", prefix + ":f:{p:nobar}", prefix + ":f:{nocolon}", "other:f:{i:1.2.3.4}"} {
		if _, _, ok := parseKey(prefix, bad); ok {
			t.Errorf("parseKey(%q) accepted", bad)
		}
	}
	if got := decodeName("a%ZZb%4"); got != "a%ZZb%4" {
		t.Errorf("decodeName of bad escapes = %q", got)
	}
}

func TestKeysInjective(t *testing.T) {
	names := []string{"a", "a%", "a%25", "a%2525", "a b", "a%20b", "~a", "a|b", "a/b", "ab", "a.b", "a_b", "",
		strings.Repeat("x", 110), strings.Repeat("x", 111), strings.Repeat("é", 40), strings.Repeat("é", 41)}
	seen := map[string]string{}
	for _, n := range names {
		k := (&identity{kind: KindUsername, username: n}).key("d", slotCounter)
		if prev, dup := seen[k]; dup {
			t.Fatalf("names %q and %q share key %q", prev, n, k)
		}
		seen[k] = n
	}
	pairA := (&identity{kind: KindPair, ip: "1.2.3.4", username: "x|5.6.7.8"}).key("d", slotBlock)
	pairB := (&identity{kind: KindPair, ip: "1.2.3.4|x", username: "5.6.7.8"}).key("d", slotBlock)
	if pairA == pairB {
		t.Fatal("pair keys collide")
	}
}

func FuzzKeys(f *testing.F) {
	for _, s := range []string{"alice", "a b", "ü", "%41", "~x", "{}", strings.Repeat("z", 300)} {
		f.Add(s, s+"x")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ka := (&identity{kind: KindPair, ip: "2001:db8::/64", username: a}).key("defender", slotCounter)
		kb := (&identity{kind: KindPair, ip: "2001:db8::/64", username: b}).key("defender", slotCounter)
		for _, k := range []string{ka, kb} {
			if err := backend.CheckKey(k); err != nil {
				t.Fatalf("unsafe key for %q: %v", a, err)
			}
		}
		if a != b && ka == kb {
			t.Fatalf("distinct names %q %q share key %q", a, b, ka)
		}
		if a == b && ka != kb {
			t.Fatal("key not deterministic")
		}
		_, id, ok := parseKey("defender", ka)
		if !ok || (!strings.HasPrefix(id.username, "~") && id.username != a) {
			t.Fatalf("round trip %q -> %+v %v", a, id, ok)
		}
	})
}
