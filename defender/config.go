package defender

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// UseCooloffTime, as Config.AttemptCooloffTime, means "the same as
// CooloffTime" (django-defender's default).
const UseCooloffTime time.Duration = -1

// Config holds every setting of defender. Each field names its environment
// variable (read by ConfigFromEnv) and its default (set by DefaultConfig).
// Start from DefaultConfig: the zero Config does not validate.
type Config struct {
	// FailureLimit is the number of failures allowed before a block
	// (DEFENDER_LOGIN_FAILURE_LIMIT, 3). Failure FailureLimit+1 is blocked.
	// At least 1.
	FailureLimit int
	// FailureLimitUsername overrides FailureLimit for usernames
	// (DEFENDER_LOGIN_FAILURE_LIMIT_USERNAME; 0 = FailureLimit).
	FailureLimitUsername int
	// FailureLimitIP overrides FailureLimit for IPs
	// (DEFENDER_LOGIN_FAILURE_LIMIT_IP; 0 = FailureLimit).
	FailureLimitIP int

	// BehindReverseProxy honours ReverseProxyHeader from trusted proxies
	// (DEFENDER_BEHIND_REVERSE_PROXY, false).
	BehindReverseProxy bool
	// ReverseProxyHeader is the header naming the client
	// (DEFENDER_REVERSE_PROXY_HEADER, "X-Forwarded-For"; Django's
	// "HTTP_X_FORWARDED_FOR" spelling is accepted).
	ReverseProxyHeader string
	// TrustedProxies are the peers whose ReverseProxyHeader is believed
	// (DEFENDER_TRUSTED_PROXIES, comma-separated CIDRs or addresses;
	// default loopback and private ranges).
	TrustedProxies []netip.Prefix
	// IPv6Prefix groups IPv6 clients: addresses in one /IPv6Prefix are one
	// client (DEFENDER_IPV6_PREFIX, 64; 32..128).
	IPv6Prefix int

	// LockOutByIPAndUsername counts and blocks (IP, username) pairs only
	// (DEFENDER_LOCK_OUT_BY_IP_AND_USERNAME, false).
	LockOutByIPAndUsername bool
	// DisableIPLockout counts and blocks usernames only
	// (DEFENDER_DISABLE_IP_LOCKOUT, false).
	DisableIPLockout bool
	// DisableUsernameLockout counts and blocks IPs only
	// (DEFENDER_DISABLE_USERNAME_LOCKOUT, false).
	DisableUsernameLockout bool

	// CooloffTime is the default for AttemptCooloffTime and
	// LockoutCooloffTimes (DEFENDER_COOLOFF_TIME, 300s).
	CooloffTime time.Duration
	// AttemptCooloffTime is the sliding TTL of failure counters
	// (DEFENDER_ATTEMPT_COOLOFF_TIME; UseCooloffTime = CooloffTime; 0 =
	// never expires).
	AttemptCooloffTime time.Duration
	// LockoutCooloffTimes is the block duration, or the escalation list:
	// entry i for the (i+1)-th lockout within AccessAttemptExpiration, the
	// last entry past the end; 0 = permanent
	// (DEFENDER_LOCKOUT_COOLOFF_TIME, int or comma list; nil =
	// [CooloffTime]).
	LockoutCooloffTimes []time.Duration

	// LockoutTemplate is an html/template file for the lockout page
	// (DEFENDER_LOCKOUT_TEMPLATE; empty = built-in page).
	LockoutTemplate string
	// LockoutURL redirects locked requests there (DEFENDER_LOCKOUT_URL).
	LockoutURL string
	// LockoutStatus is the lockout page's status (DEFENDER_LOCKOUT_STATUS,
	// 429).
	LockoutStatus int
	// UsernameFormField is the form or JSON field holding the username
	// (DEFENDER_USERNAME_FORM_FIELD, "username").
	UsernameFormField string

	// CachePrefix starts every store key (DEFENDER_CACHE_PREFIX,
	// "defender"): 1..32 bytes of [A-Za-z0-9_.-].
	CachePrefix string
	// StoreURL names the store (DEFENDER_STORE_URL, or DEFENDER_REDIS_URL;
	// empty: the caller supplies a Backend).
	StoreURL string
	// StoreTimeout is the deadline of every store call
	// (DEFENDER_STORE_TIMEOUT, 100ms).
	StoreTimeout time.Duration
	// FailMode applies when the store fails (DEFENDER_FAIL_MODE, closed).
	FailMode FailMode

	// AuditURL names the audit sink (DEFENDER_AUDIT_URL; empty = none).
	AuditURL string
	// StoreAccessAttempts writes one audit record per attempt
	// (DEFENDER_STORE_ACCESS_ATTEMPTS, true). DEFENDER_USE_CELERY is
	// accepted and ignored: auditing is always asynchronous.
	StoreAccessAttempts bool
	// AccessAttemptExpiration is the audit retention and the escalation
	// window (DEFENDER_ACCESS_ATTEMPT_EXPIRATION, in hours; 24h).
	AccessAttemptExpiration time.Duration
	// BlockCacheTTL bounds how long a Defender over a network store keeps a
	// block it has seen in its near-cache, answering locked requests
	// without a store call (DEFENDER_BLOCK_CACHE_TTL, 2s; 0 = no cache).
	// It is the longest another process may go on refusing a user after
	// an unblock, on stores that cannot announce unblocks (Memcached,
	// custom backends); on Redis an unblock is announced to every process
	// at once, and entries live up to a minute. An entry never outlives
	// the block.
	BlockCacheTTL time.Duration

	// VerifyConcurrency bounds the password checks running at once under
	// the middleware (verification admission control,
	// DEFENDER_VERIFY_CONCURRENCY; 0 = no bound, the default). Past the
	// bound a check waits in a queue of VerifyQueue for at most
	// VerifyQueueTimeout; past those it is shed: answered 503 with
	// Retry-After at once, never counted as a failure, instead of piling
	// up hashing work that starves the rest of the site. For bcrypt or
	// argon2 checks, about 2 × the CPU count. See Attempt.Admit.
	VerifyConcurrency int
	// VerifyQueue is the number of password checks that may wait for a
	// slot (DEFENDER_VERIFY_QUEUE; 0 = 4 × VerifyConcurrency).
	VerifyQueue int
	// VerifyQueueTimeout is the longest a check waits for a slot
	// (DEFENDER_VERIFY_QUEUE_TIMEOUT, 1s).
	VerifyQueueTimeout time.Duration

	// AuditCoalesceWindow coalesces the audit records of locked attempts:
	// one record per identity and window, carrying the count, so that a
	// flood on a blocked identity writes a record a window, not a record a
	// request (DEFENDER_AUDIT_COALESCE_WINDOW, 1s; 0 = one record per
	// attempt). Failures and successes are never coalesced. See
	// auditlog.Coalescer.
	AuditCoalesceWindow time.Duration

	// AllowlistIPs are never counted or blocked (DEFENDER_ALLOWLIST_IPS).
	AllowlistIPs []netip.Prefix
	// AllowlistUsernames are never counted or blocked (compared in
	// canonical form; DEFENDER_ALLOWLIST_USERNAMES).
	AllowlistUsernames []string
	// BlocklistIPs are always locked, permanently
	// (DEFENDER_BLOCKLIST_IPS).
	BlocklistIPs []netip.Prefix
	// ResetIPOnSuccess resets the IP counter on a successful login
	// (DEFENDER_RESET_IP_ON_SUCCESS, true). When false the attempt's
	// reservation is refunded instead.
	ResetIPOnSuccess bool
}

// Setting names, as they appear in the environment and in errors.
const (
	envFailureLimit         = "DEFENDER_LOGIN_FAILURE_LIMIT"
	envFailureLimitUsername = "DEFENDER_LOGIN_FAILURE_LIMIT_USERNAME"
	envFailureLimitIP       = "DEFENDER_LOGIN_FAILURE_LIMIT_IP"
	envBehindProxy          = "DEFENDER_BEHIND_REVERSE_PROXY"
	envProxyHeader          = "DEFENDER_REVERSE_PROXY_HEADER"
	envTrustedProxies       = "DEFENDER_TRUSTED_PROXIES"
	envIPv6Prefix           = "DEFENDER_IPV6_PREFIX"
	envPairMode             = "DEFENDER_LOCK_OUT_BY_IP_AND_USERNAME"
	envDisableIP            = "DEFENDER_DISABLE_IP_LOCKOUT"
	envDisableUsername      = "DEFENDER_DISABLE_USERNAME_LOCKOUT"
	envCooloff              = "DEFENDER_COOLOFF_TIME"
	envAttemptCooloff       = "DEFENDER_ATTEMPT_COOLOFF_TIME"
	envLockoutCooloff       = "DEFENDER_LOCKOUT_COOLOFF_TIME"
	envLockoutTemplate      = "DEFENDER_LOCKOUT_TEMPLATE"
	envLockoutURL           = "DEFENDER_LOCKOUT_URL"
	envLockoutStatus        = "DEFENDER_LOCKOUT_STATUS"
	envUsernameField        = "DEFENDER_USERNAME_FORM_FIELD"
	envCachePrefix          = "DEFENDER_CACHE_PREFIX"
	envStoreURL             = "DEFENDER_STORE_URL"
	envRedisURL             = "DEFENDER_REDIS_URL"
	envStoreTimeout         = "DEFENDER_STORE_TIMEOUT"
	envFailMode             = "DEFENDER_FAIL_MODE"
	envAuditURL             = "DEFENDER_AUDIT_URL"
	envStoreAttempts        = "DEFENDER_STORE_ACCESS_ATTEMPTS"
	envUseCelery            = "DEFENDER_USE_CELERY"
	envAttemptExpiration    = "DEFENDER_ACCESS_ATTEMPT_EXPIRATION"
	envAllowIPs             = "DEFENDER_ALLOWLIST_IPS"
	envAllowUsernames       = "DEFENDER_ALLOWLIST_USERNAMES"
	envBlockIPs             = "DEFENDER_BLOCKLIST_IPS"
	envResetIP              = "DEFENDER_RESET_IP_ON_SUCCESS"
	envAuditCoalesce        = "DEFENDER_AUDIT_COALESCE_WINDOW"
	envBlockCacheTTL        = "DEFENDER_BLOCK_CACHE_TTL"
	envVerifyConcurrency    = "DEFENDER_VERIFY_CONCURRENCY"
	envVerifyQueue          = "DEFENDER_VERIFY_QUEUE"
	envVerifyQueueTimeout   = "DEFENDER_VERIFY_QUEUE_TIMEOUT"
)

// ErrConfig is wrapped by every configuration error; the message names the
// setting.
var ErrConfig = errors.New("defender: bad setting")

// DefaultTrustedProxies are the proxies trusted by default: loopback and the
// private ranges (RFC 1918, RFC 4193 unique local, link-local).
func DefaultTrustedProxies() []netip.Prefix {
	return []netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/8"),
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("172.16.0.0/12"),
		netip.MustParsePrefix("192.168.0.0/16"),
		netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("fc00::/7"),
	}
}

// DefaultConfig returns django-defender's defaults plus defender's own:
// limit 3, cooloff 300s for counters and blocks, X-Forwarded-For from
// loopback and private proxies only when BehindReverseProxy is set, IPv6
// clients grouped by /64, prefix "defender", fail mode closed with a 100ms
// store timeout, status 429, audit on with 24h retention, IP counter reset
// on success.
func DefaultConfig() Config {
	return Config{
		FailureLimit:            3,
		ReverseProxyHeader:      "X-Forwarded-For",
		TrustedProxies:          DefaultTrustedProxies(),
		IPv6Prefix:              64,
		CooloffTime:             300 * time.Second,
		AttemptCooloffTime:      UseCooloffTime,
		LockoutStatus:           http.StatusTooManyRequests,
		UsernameFormField:       "username",
		CachePrefix:             "defender",
		StoreTimeout:            100 * time.Millisecond,
		FailMode:                FailClosed,
		StoreAccessAttempts:     true,
		AccessAttemptExpiration: 24 * time.Hour,
		AuditCoalesceWindow:     time.Second,
		VerifyQueueTimeout:      time.Second,
		BlockCacheTTL:           2 * time.Second,
		ResetIPOnSuccess:        true,
	}
}

func cfgErr(setting, format string, args ...any) error {
	return fmt.Errorf("%w %s: %s", ErrConfig, setting, fmt.Sprintf(format, args...))
}

// Validate reports the first bad setting, naming its environment variable.
// It checks ranges, the combination of lockout modes (pair mode with a
// DISABLE flag, or both DISABLE flags, give no protection and are errors),
// the cache prefix alphabet, the fail mode and the status code.
func (c Config) Validate() error {
	switch {
	case c.FailureLimit < 1:
		return cfgErr(envFailureLimit, "must be at least 1, got %d", c.FailureLimit)
	case c.FailureLimitUsername < 0:
		return cfgErr(envFailureLimitUsername, "must not be negative, got %d", c.FailureLimitUsername)
	case c.FailureLimitIP < 0:
		return cfgErr(envFailureLimitIP, "must not be negative, got %d", c.FailureLimitIP)
	case c.LockOutByIPAndUsername && c.DisableIPLockout:
		return cfgErr(envPairMode, "cannot be combined with %s: no request would ever be locked", envDisableIP)
	case c.LockOutByIPAndUsername && c.DisableUsernameLockout:
		return cfgErr(envPairMode, "cannot be combined with %s: no request would ever be locked", envDisableUsername)
	case c.DisableIPLockout && c.DisableUsernameLockout:
		return cfgErr(envDisableIP, "and %s are both set: nothing would be counted", envDisableUsername)
	case c.BehindReverseProxy && strings.TrimSpace(c.ReverseProxyHeader) == "":
		return cfgErr(envProxyHeader, "is empty")
	case c.IPv6Prefix < 32 || c.IPv6Prefix > 128:
		return cfgErr(envIPv6Prefix, "must be in 32..128, got %d", c.IPv6Prefix)
	case c.CooloffTime < 0:
		return cfgErr(envCooloff, "must not be negative, got %v", c.CooloffTime)
	case c.AttemptCooloffTime < 0 && c.AttemptCooloffTime != UseCooloffTime:
		return cfgErr(envAttemptCooloff, "must not be negative, got %v", c.AttemptCooloffTime)
	case c.LockoutStatus < 400 || c.LockoutStatus > 599:
		return cfgErr(envLockoutStatus, "must be a 4xx or 5xx status, got %d", c.LockoutStatus)
	case c.StoreTimeout <= 0:
		return cfgErr(envStoreTimeout, "must be positive, got %v", c.StoreTimeout)
	case c.AccessAttemptExpiration < 0:
		return cfgErr(envAttemptExpiration, "must not be negative, got %v", c.AccessAttemptExpiration)
	case c.BlockCacheTTL < 0:
		return cfgErr(envBlockCacheTTL, "must not be negative, got %v", c.BlockCacheTTL)
	case c.VerifyConcurrency < 0:
		return cfgErr(envVerifyConcurrency, "must not be negative, got %d", c.VerifyConcurrency)
	case c.VerifyQueue < 0:
		return cfgErr(envVerifyQueue, "must not be negative, got %d", c.VerifyQueue)
	case c.VerifyQueueTimeout < 0:
		return cfgErr(envVerifyQueueTimeout, "must not be negative, got %v", c.VerifyQueueTimeout)
	case c.AuditCoalesceWindow < 0:
		return cfgErr(envAuditCoalesce, "must not be negative, got %v", c.AuditCoalesceWindow)
	case strings.TrimSpace(c.UsernameFormField) == "":
		return cfgErr(envUsernameField, "is empty")
	}
	if c.LockoutCooloffTimes != nil && len(c.LockoutCooloffTimes) == 0 {
		return cfgErr(envLockoutCooloff, "is an empty list")
	}
	for _, d := range c.LockoutCooloffTimes {
		if d < 0 {
			return cfgErr(envLockoutCooloff, "has a negative duration %v", d)
		}
	}
	if len(c.CachePrefix) == 0 || len(c.CachePrefix) > 32 {
		return cfgErr(envCachePrefix, "must be 1..32 bytes, got %d", len(c.CachePrefix))
	}
	for _, r := range c.CachePrefix {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return cfgErr(envCachePrefix, "%q has %q; use only letters, digits, _ - .", c.CachePrefix, r)
		}
	}
	switch c.FailMode {
	case FailClosed, FailOpen, FailLocal:
	default:
		return cfgErr(envFailMode, "unknown mode %q (want closed, open or local)", c.FailMode)
	}
	if c.LockoutURL != "" {
		if _, err := url.Parse(c.LockoutURL); err != nil {
			return cfgErr(envLockoutURL, "%v", err)
		}
	}
	for _, p := range c.TrustedProxies {
		if !p.IsValid() {
			return cfgErr(envTrustedProxies, "invalid prefix %v", p)
		}
	}
	for _, p := range c.AllowlistIPs {
		if !p.IsValid() {
			return cfgErr(envAllowIPs, "invalid prefix %v", p)
		}
	}
	for _, p := range c.BlocklistIPs {
		if !p.IsValid() {
			return cfgErr(envBlockIPs, "invalid prefix %v", p)
		}
	}
	return nil
}

// attemptTTL is the counters' TTL after defaults.
func (c Config) attemptTTL() time.Duration {
	if c.AttemptCooloffTime == UseCooloffTime {
		return c.CooloffTime
	}
	return c.AttemptCooloffTime
}

// lockoutTimes is the escalation list after defaults.
func (c Config) lockoutTimes() []time.Duration {
	if len(c.LockoutCooloffTimes) == 0 {
		return []time.Duration{c.CooloffTime}
	}
	return c.LockoutCooloffTimes
}

func (c Config) limitIP() int64 {
	if c.FailureLimitIP > 0 {
		return int64(c.FailureLimitIP)
	}
	return int64(c.FailureLimit)
}

func (c Config) limitUsername() int64 {
	if c.FailureLimitUsername > 0 {
		return int64(c.FailureLimitUsername)
	}
	return int64(c.FailureLimit)
}

// ConfigFromEnv returns DefaultConfig overridden by the DEFENDER_*
// environment variables. A bad value is an error naming the variable; the
// result is validated. A DEFENDER_* variable that is not a setting is an
// error too, naming the closest setting (see CheckSettingNames): a
// misspelt setting would otherwise leave its default in force without a
// word.
func ConfigFromEnv() (Config, error) {
	var names []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		names = append(names, name)
	}
	if err := CheckSettingNames(names); err != nil {
		return Config{}, err
	}
	return ConfigFromLookup(os.LookupEnv)
}

// settingNames are every variable ConfigFromLookup reads.
var settingNames = []string{
	envFailureLimit, envFailureLimitUsername, envFailureLimitIP, envBehindProxy, envProxyHeader,
	envTrustedProxies, envIPv6Prefix, envPairMode, envDisableIP, envDisableUsername, envCooloff,
	envAttemptCooloff, envLockoutCooloff, envLockoutTemplate, envLockoutURL, envLockoutStatus,
	envUsernameField, envCachePrefix, envStoreURL, envRedisURL, envStoreTimeout, envFailMode,
	envAuditURL, envStoreAttempts, envUseCelery, envAttemptExpiration, envAllowIPs,
	envAllowUsernames, envBlockIPs, envResetIP, envAuditCoalesce, envBlockCacheTTL, envVerifyConcurrency, envVerifyQueue,
	envVerifyQueueTimeout,
}

// SettingNames returns the names of every environment variable that
// ConfigFromEnv reads, sorted.
func SettingNames() []string {
	out := append([]string(nil), settingNames...)
	slices.Sort(out)
	return out
}

// CheckSettingNames returns an ErrConfig error for the first name in names
// that starts with DEFENDER_ but is not a setting (SettingNames), naming it
// and the closest setting: "DEFENDER_LOCKOUT_BY_IP_USERNAME: unknown
// setting (did you mean DEFENDER_LOCK_OUT_BY_IP_AND_USERNAME?)". Other
// names, and names starting with DEFENDER_TEST_ (kept for test harnesses),
// are ignored. ConfigFromEnv calls it on the environment; an application
// that reads its settings elsewhere (ConfigFromLookup) can call it on its
// own list.
func CheckSettingNames(names []string) error {
	for _, n := range names {
		if !strings.HasPrefix(n, "DEFENDER_") || strings.HasPrefix(n, "DEFENDER_TEST_") || slices.Contains(settingNames, n) {
			continue
		}
		return cfgErr(n, "unknown setting (did you mean %s?)", closestSetting(n))
	}
	return nil
}

// closestSetting returns the setting whose name is the fewest edits away
// from name, underscores ignored.
func closestSetting(name string) string {
	squash := func(s string) string {
		return strings.ReplaceAll(strings.TrimPrefix(strings.ToUpper(s), "DEFENDER_"), "_", "")
	}
	best, bestD := "", -1
	for _, s := range settingNames {
		if d := editDistance(squash(name), squash(s)); bestD < 0 || d < bestD {
			best, bestD = s, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b (bytes).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// ConfigFromLookup is ConfigFromEnv with another source of variables, such
// as a map in tests or a command line's flags. It cannot list the source,
// so it does not report unknown names: call CheckSettingNames for that. Durations are seconds
// ("300", "0.2") or Go durations ("200ms", "5m"); booleans are
// true/false/1/0/yes/no/on/off in any case (Python's True/False included);
// lists are comma-separated.
func ConfigFromLookup(lookup func(name string) (string, bool)) (Config, error) {
	c := DefaultConfig()
	p := envParser{lookup: lookup}
	p.int(envFailureLimit, &c.FailureLimit)
	p.int(envFailureLimitUsername, &c.FailureLimitUsername)
	p.int(envFailureLimitIP, &c.FailureLimitIP)
	p.bool(envBehindProxy, &c.BehindReverseProxy)
	if v, ok := p.get(envProxyHeader); ok {
		c.ReverseProxyHeader = proxyHeaderName(v)
	}
	p.prefixes(envTrustedProxies, &c.TrustedProxies)
	p.int(envIPv6Prefix, &c.IPv6Prefix)
	p.bool(envPairMode, &c.LockOutByIPAndUsername)
	p.bool(envDisableIP, &c.DisableIPLockout)
	p.bool(envDisableUsername, &c.DisableUsernameLockout)
	p.duration(envCooloff, &c.CooloffTime)
	p.duration(envAttemptCooloff, &c.AttemptCooloffTime)
	if v, ok := p.get(envLockoutCooloff); ok && p.err == nil {
		c.LockoutCooloffTimes = []time.Duration{}
		for _, item := range strings.Split(strings.Trim(strings.TrimSpace(v), "[]()"), ",") {
			if strings.TrimSpace(item) == "" {
				continue
			}
			d, err := parseDuration(item)
			if err != nil {
				p.fail(envLockoutCooloff, "%v", err)
				break
			}
			c.LockoutCooloffTimes = append(c.LockoutCooloffTimes, d)
		}
	}
	p.str(envLockoutTemplate, &c.LockoutTemplate)
	p.str(envLockoutURL, &c.LockoutURL)
	p.int(envLockoutStatus, &c.LockoutStatus)
	p.str(envUsernameField, &c.UsernameFormField)
	p.str(envCachePrefix, &c.CachePrefix)
	p.str(envRedisURL, &c.StoreURL)
	p.str(envStoreURL, &c.StoreURL) // DEFENDER_STORE_URL wins over DEFENDER_REDIS_URL
	p.duration(envStoreTimeout, &c.StoreTimeout)
	if v, ok := p.get(envFailMode); ok {
		c.FailMode = FailMode(strings.ToLower(strings.TrimSpace(v)))
	}
	p.str(envAuditURL, &c.AuditURL)
	p.bool(envStoreAttempts, &c.StoreAccessAttempts)
	var celery bool
	p.bool(envUseCelery, &celery) // accepted: auditing is always asynchronous
	if v, ok := p.get(envAttemptExpiration); ok && p.err == nil {
		h, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || h < 0 || math.IsInf(h, 0) || math.IsNaN(h) || h > 1e6 {
			p.fail(envAttemptExpiration, "want a number of hours >= 0, got %q", v)
		} else {
			c.AccessAttemptExpiration = time.Duration(h * float64(time.Hour))
		}
	}
	p.prefixes(envAllowIPs, &c.AllowlistIPs)
	if v, ok := p.get(envAllowUsernames); ok {
		c.AllowlistUsernames = splitList(v)
		if len(c.AllowlistUsernames) == 0 {
			p.fail(envAllowUsernames, "is an empty list")
		}
	}
	p.prefixes(envBlockIPs, &c.BlocklistIPs)
	p.bool(envResetIP, &c.ResetIPOnSuccess)
	p.duration(envAuditCoalesce, &c.AuditCoalesceWindow)
	p.duration(envBlockCacheTTL, &c.BlockCacheTTL)
	p.int(envVerifyConcurrency, &c.VerifyConcurrency)
	p.int(envVerifyQueue, &c.VerifyQueue)
	p.duration(envVerifyQueueTimeout, &c.VerifyQueueTimeout)
	if p.err != nil {
		return Config{}, p.err
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// proxyHeaderName turns Django's META spelling (HTTP_X_FORWARDED_FOR) into
// the header name (X-Forwarded-For).
func proxyHeaderName(v string) string {
	v = strings.TrimSpace(v)
	if rest, ok := strings.CutPrefix(strings.ToUpper(v), "HTTP_"); ok {
		v = strings.ReplaceAll(rest, "_", "-")
	}
	return http.CanonicalHeaderKey(v)
}

type envParser struct {
	lookup func(string) (string, bool)
	err    error
}

func (p *envParser) get(name string) (string, bool) {
	if p.err != nil {
		return "", false
	}
	return p.lookup(name)
}

func (p *envParser) fail(name, format string, args ...any) {
	if p.err == nil {
		p.err = cfgErr(name, format, args...)
	}
}

func (p *envParser) str(name string, dst *string) {
	if v, ok := p.get(name); ok {
		*dst = strings.TrimSpace(v)
	}
}

func (p *envParser) int(name string, dst *int) {
	if v, ok := p.get(name); ok {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			p.fail(name, "want an integer, got %q", v)
			return
		}
		*dst = n
	}
}

func (p *envParser) bool(name string, dst *bool) {
	if v, ok := p.get(name); ok {
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "1", "true", "t", "yes", "y", "on":
			*dst = true
		case "0", "false", "f", "no", "n", "off":
			*dst = false
		default:
			p.fail(name, "want true or false, got %q", v)
		}
	}
}

func (p *envParser) duration(name string, dst *time.Duration) {
	if v, ok := p.get(name); ok {
		d, err := parseDuration(v)
		if err != nil {
			p.fail(name, "%v", err)
			return
		}
		*dst = d
	}
}

func (p *envParser) prefixes(name string, dst *[]netip.Prefix) {
	v, ok := p.get(name)
	if !ok {
		return
	}
	items := splitList(v)
	if len(items) == 0 {
		p.fail(name, "is an empty list")
		return
	}
	out := make([]netip.Prefix, 0, len(items))
	for _, it := range items {
		pfx, err := ParsePrefix(it)
		if err != nil {
			p.fail(name, "%v", err)
			return
		}
		out = append(out, pfx)
	}
	*dst = out
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// parseDuration reads seconds ("300", "0.2") or a Go duration ("200ms").
// Negative values are errors.
func parseDuration(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if f < 0 || math.IsNaN(f) || f > 1e9 {
			return 0, fmt.Errorf("want seconds >= 0, got %q", v)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("want seconds (300, 0.2) or a duration (200ms, 5m), got %q", v)
	}
	if d < 0 {
		return 0, fmt.Errorf("want a duration >= 0, got %q", v)
	}
	return d, nil
}

// ParsePrefix reads a CIDR ("10.0.0.0/8") or a single address ("10.1.2.3",
// a /32 or /128), masked and with IPv4-mapped IPv6 unmapped.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("bad CIDR %q: %v", s, err)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad address %q: %v", s, err)
	}
	a = a.Unmap().WithZone("")
	return netip.PrefixFrom(a, a.BitLen()), nil
}
