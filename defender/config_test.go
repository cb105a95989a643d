package defender

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

func lookup(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestDefaultConfigIsValid(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.FailureLimit != 3 || c.CooloffTime != 300*time.Second || c.attemptTTL() != 300*time.Second ||
		!reflect.DeepEqual(c.lockoutTimes(), []time.Duration{300 * time.Second}) || c.ReverseProxyHeader != "X-Forwarded-For" ||
		c.CachePrefix != "defender" || c.FailMode != FailClosed || c.StoreTimeout != 100*time.Millisecond ||
		c.LockoutStatus != 429 || !c.StoreAccessAttempts || !c.ResetIPOnSuccess || c.IPv6Prefix != 64 ||
		c.AccessAttemptExpiration != 24*time.Hour || c.UsernameFormField != "username" {
		t.Fatalf("defaults %+v", c)
	}
	if err := (Config{}).Validate(); err == nil {
		t.Fatal("zero Config validated")
	}
}

func TestConfigFromLookup(t *testing.T) {
	c, err := ConfigFromLookup(lookup(map[string]string{
		"DEFENDER_LOGIN_FAILURE_LIMIT":          "5",
		"DEFENDER_LOGIN_FAILURE_LIMIT_USERNAME": "7",
		"DEFENDER_LOGIN_FAILURE_LIMIT_IP":       "9",
		"DEFENDER_BEHIND_REVERSE_PROXY":         "True",
		"DEFENDER_REVERSE_PROXY_HEADER":         "HTTP_X_REAL_IP",
		"DEFENDER_TRUSTED_PROXIES":              "10.0.0.0/8, 192.0.2.1",
		"DEFENDER_IPV6_PREFIX":                  "56",
		"DEFENDER_COOLOFF_TIME":                 "0.2",
		"DEFENDER_ATTEMPT_COOLOFF_TIME":         "5m",
		"DEFENDER_LOCKOUT_COOLOFF_TIME":         "[60, 300, 0]",
		"DEFENDER_LOCKOUT_TEMPLATE":             "lockout.html",
		"DEFENDER_LOCKOUT_URL":                  "/locked",
		"DEFENDER_LOCKOUT_STATUS":               "403",
		"DEFENDER_USERNAME_FORM_FIELD":          "email",
		"DEFENDER_CACHE_PREFIX":                 "app1",
		"DEFENDER_REDIS_URL":                    "redis://localhost:6379/0",
		"DEFENDER_STORE_TIMEOUT":                "250ms",
		"DEFENDER_FAIL_MODE":                    "LOCAL",
		"DEFENDER_AUDIT_URL":                    "file:///tmp/a.jsonl",
		"DEFENDER_STORE_ACCESS_ATTEMPTS":        "0",
		"DEFENDER_USE_CELERY":                   "False",
		"DEFENDER_ACCESS_ATTEMPT_EXPIRATION":    "48",
		"DEFENDER_ALLOWLIST_IPS":                "::1",
		"DEFENDER_ALLOWLIST_USERNAMES":          "admin, ops",
		"DEFENDER_BLOCKLIST_IPS":                "198.18.0.0/15",
		"DEFENDER_RESET_IP_ON_SUCCESS":          "no",
		"DEFENDER_DISABLE_USERNAME_LOCKOUT":     "on",
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.FailureLimit, want.FailureLimitUsername, want.FailureLimitIP = 5, 7, 9
	want.BehindReverseProxy, want.ReverseProxyHeader = true, "X-Real-Ip"
	want.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.1/32")}
	want.IPv6Prefix = 56
	want.CooloffTime, want.AttemptCooloffTime = 200*time.Millisecond, 5*time.Minute
	want.LockoutCooloffTimes = []time.Duration{time.Minute, 5 * time.Minute, 0}
	want.LockoutTemplate, want.LockoutURL, want.LockoutStatus = "lockout.html", "/locked", 403
	want.UsernameFormField, want.CachePrefix = "email", "app1"
	want.StoreURL, want.StoreTimeout, want.FailMode = "redis://localhost:6379/0", 250*time.Millisecond, FailLocal
	want.AuditURL, want.StoreAccessAttempts, want.AccessAttemptExpiration = "file:///tmp/a.jsonl", false, 48*time.Hour
	want.AllowlistIPs = []netip.Prefix{netip.MustParsePrefix("::1/128")}
	want.AllowlistUsernames = []string{"admin", "ops"}
	want.BlocklistIPs = []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15")}
	want.ResetIPOnSuccess, want.DisableUsernameLockout = false, true
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got  %+v\nwant %+v", c, want)
	}
	if c.limitIP() != 9 || c.limitUsername() != 7 {
		t.Fatal("per-kind limits")
	}
	c2, err := ConfigFromLookup(lookup(map[string]string{"DEFENDER_STORE_URL": "memory://", "DEFENDER_REDIS_URL": "redis://x"}))
	if err != nil || c2.StoreURL != "memory://" {
		t.Fatalf("STORE_URL must win over REDIS_URL: %q %v", c2.StoreURL, err)
	}
	c3, err := ConfigFromLookup(lookup(map[string]string{"DEFENDER_COOLOFF_TIME": "60"}))
	if err != nil || c3.attemptTTL() != time.Minute || c3.lockoutTimes()[0] != time.Minute {
		t.Fatalf("COOLOFF_TIME must set both cooloffs: %+v %v", c3, err)
	}
	c4, err := ConfigFromLookup(lookup(map[string]string{"DEFENDER_ATTEMPT_COOLOFF_TIME": "0"}))
	if err != nil || c4.attemptTTL() != 0 {
		t.Fatalf("ATTEMPT_COOLOFF_TIME=0 must mean never: %v %v", c4.attemptTTL(), err)
	}
}

func TestConfigErrorsNameTheSetting(t *testing.T) {
	bad := map[string]map[string]string{
		"DEFENDER_LOGIN_FAILURE_LIMIT":          {"DEFENDER_LOGIN_FAILURE_LIMIT": "-1"},
		"DEFENDER_LOGIN_FAILURE_LIMIT_USERNAME": {"DEFENDER_LOGIN_FAILURE_LIMIT_USERNAME": "-2"},
		"DEFENDER_LOGIN_FAILURE_LIMIT_IP":       {"DEFENDER_LOGIN_FAILURE_LIMIT_IP": "x"},
		"DEFENDER_BEHIND_REVERSE_PROXY":         {"DEFENDER_BEHIND_REVERSE_PROXY": "maybe"},
		"DEFENDER_REVERSE_PROXY_HEADER":         {"DEFENDER_BEHIND_REVERSE_PROXY": "1", "DEFENDER_REVERSE_PROXY_HEADER": " "},
		"DEFENDER_TRUSTED_PROXIES":              {"DEFENDER_TRUSTED_PROXIES": "10.0.0.0/33"},
		"DEFENDER_IPV6_PREFIX":                  {"DEFENDER_IPV6_PREFIX": "16"},
		"DEFENDER_LOCK_OUT_BY_IP_AND_USERNAME":  {"DEFENDER_LOCK_OUT_BY_IP_AND_USERNAME": "1", "DEFENDER_DISABLE_IP_LOCKOUT": "1"},
		"DEFENDER_DISABLE_USERNAME_LOCKOUT":     {"DEFENDER_LOCK_OUT_BY_IP_AND_USERNAME": "1", "DEFENDER_DISABLE_USERNAME_LOCKOUT": "1"},
		"DEFENDER_DISABLE_IP_LOCKOUT":           {"DEFENDER_DISABLE_IP_LOCKOUT": "1", "DEFENDER_DISABLE_USERNAME_LOCKOUT": "1"},
		"DEFENDER_COOLOFF_TIME":                 {"DEFENDER_COOLOFF_TIME": "-5"},
		"DEFENDER_ATTEMPT_COOLOFF_TIME":         {"DEFENDER_ATTEMPT_COOLOFF_TIME": "soon"},
		"DEFENDER_LOCKOUT_COOLOFF_TIME":         {"DEFENDER_LOCKOUT_COOLOFF_TIME": "[]"},
		"DEFENDER_LOCKOUT_STATUS":               {"DEFENDER_LOCKOUT_STATUS": "200"},
		"DEFENDER_USERNAME_FORM_FIELD":          {"DEFENDER_USERNAME_FORM_FIELD": " "},
		"DEFENDER_CACHE_PREFIX":                 {"DEFENDER_CACHE_PREFIX": "a b"},
		"DEFENDER_STORE_TIMEOUT":                {"DEFENDER_STORE_TIMEOUT": "0"},
		"DEFENDER_FAIL_MODE":                    {"DEFENDER_FAIL_MODE": "sideways"},
		"DEFENDER_STORE_ACCESS_ATTEMPTS":        {"DEFENDER_STORE_ACCESS_ATTEMPTS": "2"},
		"DEFENDER_ACCESS_ATTEMPT_EXPIRATION":    {"DEFENDER_ACCESS_ATTEMPT_EXPIRATION": "-1"},
		"DEFENDER_ALLOWLIST_IPS":                {"DEFENDER_ALLOWLIST_IPS": " , "},
		"DEFENDER_ALLOWLIST_USERNAMES":          {"DEFENDER_ALLOWLIST_USERNAMES": ","},
		"DEFENDER_BLOCKLIST_IPS":                {"DEFENDER_BLOCKLIST_IPS": "1.2.3"},
		"DEFENDER_RESET_IP_ON_SUCCESS":          {"DEFENDER_RESET_IP_ON_SUCCESS": "yes please"},
		"DEFENDER_LOCKOUT_URL":                  {"DEFENDER_LOCKOUT_URL": "http://[::1"},
		"DEFENDER_USE_CELERY":                   {"DEFENDER_USE_CELERY": "celery"},
	}
	for setting, env := range bad {
		_, err := ConfigFromLookup(lookup(env))
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), setting) {
			t.Errorf("%v: error %v does not name %s", env, err, setting)
		}
	}
	for _, lst := range []string{"60,-1", "60,x"} {
		if _, err := ConfigFromLookup(lookup(map[string]string{"DEFENDER_LOCKOUT_COOLOFF_TIME": lst})); err == nil {
			t.Errorf("lockout list %q accepted", lst)
		}
	}
	for name, mut := range map[string]func(*Config){
		"DEFENDER_ATTEMPT_COOLOFF_TIME": func(c *Config) { c.AttemptCooloffTime = -5 },
		"DEFENDER_LOCKOUT_COOLOFF_TIME": func(c *Config) { c.LockoutCooloffTimes = []time.Duration{-1} },
		"DEFENDER_CACHE_PREFIX":         func(c *Config) { c.CachePrefix = "" },
		"DEFENDER_TRUSTED_PROXIES":      func(c *Config) { c.TrustedProxies = []netip.Prefix{{}} },
		"DEFENDER_ALLOWLIST_IPS":        func(c *Config) { c.AllowlistIPs = []netip.Prefix{{}} },
		"DEFENDER_BLOCKLIST_IPS":        func(c *Config) { c.BlocklistIPs = []netip.Prefix{{}} },
	} {
		c := DefaultConfig()
		mut(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("Validate: %v does not name %s", err, name)
		}
	}
}

func TestConfigFromEnv(t *testing.T) {
	t.Setenv("DEFENDER_LOGIN_FAILURE_LIMIT", "11")
	c, err := ConfigFromEnv()
	if err != nil || c.FailureLimit != 11 {
		t.Fatalf("%+v %v", c.FailureLimit, err)
	}
}

func TestParsePrefix(t *testing.T) {
	for in, want := range map[string]string{
		"10.1.2.3":            "10.1.2.3/32",
		"10.1.2.3/8":          "10.0.0.0/8",
		"::ffff:10.0.0.0/104": "10.0.0.0/8",
		"2001:db8::1":         "2001:db8::1/128",
		"fe80::1%eth0":        "fe80::1/128",
		" 2001:db8::/32 ":     "2001:db8::/32",
	} {
		p, err := ParsePrefix(in)
		if err != nil || p.String() != want {
			t.Errorf("ParsePrefix(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
	for _, in := range []string{"", "10.0.0.0/40", "x", "1.2.3.4.5"} {
		if _, err := ParsePrefix(in); err == nil {
			t.Errorf("ParsePrefix(%q) accepted", in)
		}
	}
}

func FuzzConfigFromLookup(f *testing.F) {
	f.Add("DEFENDER_LOCKOUT_COOLOFF_TIME", "60,300,0")
	f.Add("DEFENDER_TRUSTED_PROXIES", "10.0.0.0/8, ::1")
	f.Add("DEFENDER_COOLOFF_TIME", "0.2")
	f.Add("DEFENDER_FAIL_MODE", "open")
	f.Add("DEFENDER_ACCESS_ATTEMPT_EXPIRATION", "1e308")
	f.Fuzz(func(t *testing.T, name, value string) {
		c, err := ConfigFromLookup(func(k string) (string, bool) {
			if k == name {
				return value, true
			}
			return "", false
		})
		if err != nil {
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "DEFENDER_") {
				t.Fatalf("error %v does not name a setting", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted config does not validate: %v", err)
		}
		if c.attemptTTL() < 0 || len(c.lockoutTimes()) == 0 {
			t.Fatalf("bad derived values: %+v", c)
		}
	})
}

// TestUnknownSettings: a misspelt DEFENDER_* variable is an error naming it
// and the setting meant; other variables and test-harness ones are not.
func TestUnknownSettings(t *testing.T) {
	for name, want := range map[string]string{
		"DEFENDER_LOCKOUT_BY_IP_USERNAME":  "DEFENDER_LOCK_OUT_BY_IP_AND_USERNAME",
		"DEFENDER_FAILURE_LIMIT":           "DEFENDER_LOGIN_FAILURE_LIMIT",
		"DEFENDER_STORE":                   "DEFENDER_STORE_URL",
		"DEFENDER_DISABLE_IP_LOCK_OUT":     "DEFENDER_DISABLE_IP_LOCKOUT",
		"DEFENDER_RESET_IP_ON_SUCCES":      "DEFENDER_RESET_IP_ON_SUCCESS",
		"DEFENDER_BEHIND_REVERSE_PROXIES":  "DEFENDER_BEHIND_REVERSE_PROXY",
		"DEFENDER_lockout_cooloff_time":    "DEFENDER_LOCKOUT_COOLOFF_TIME",
		"DEFENDER_TRUSTED_PROXY":           "DEFENDER_TRUSTED_PROXIES",
		"DEFENDER_ALLOWLIST_USERNAME":      "DEFENDER_ALLOWLIST_USERNAMES",
		"DEFENDER_LOGIN_FAILURE_LIMIT_IPS": "DEFENDER_LOGIN_FAILURE_LIMIT_IP",
	} {
		err := CheckSettingNames([]string{"PATH", envFailureLimit, name})
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), name+": unknown setting") ||
			!strings.Contains(err.Error(), "did you mean "+want+"?") {
			t.Errorf("%s: %v, want a suggestion of %s", name, err, want)
		}
	}
	if err := CheckSettingNames(append(SettingNames(), "HOME", "DEFENDER_TEST_MONGO_URI", "DEFENDERX")); err != nil {
		t.Errorf("known names refused: %v", err)
	}
	t.Setenv("DEFENDER_LOCKOUT_BY_IP_USERNAME", "true")
	if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), "DEFENDER_LOCK_OUT_BY_IP_AND_USERNAME") {
		t.Fatalf("ConfigFromEnv with a misspelt setting: %v", err)
	}
}
