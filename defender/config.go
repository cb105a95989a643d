package defender

import (
	"net/netip"
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
