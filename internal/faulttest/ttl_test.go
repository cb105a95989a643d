package faulttest

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/backend/bolt"
	"github.com/go-defender/defender/defender"
)

// seedEnv overrides the random seed of the property tests (the seed of
// every run is logged, so a failure can be replayed).
const seedEnv = "FAULTTEST_SEED"

func testSeed(t testing.TB) uint64 {
	if v := os.Getenv(seedEnv); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", seedEnv, v, err)
		}
		return s
	}
	return uint64(time.Now().UnixNano())
}

// ttlConfig is one configuration of the key-lifetime property.
type ttlConfig struct {
	name string
	cfg  func(prefix string) defender.Config
}

var ttlConfigs = []ttlConfig{
	{"escalating", func(prefix string) defender.Config {
		c := defender.DefaultConfig()
		c.LockoutCooloffTimes = []time.Duration{60 * time.Second, 120 * time.Second, 600 * time.Second}
		return ttlBase(c, prefix)
	}},
	{"permanent-second", func(prefix string) defender.Config {
		c := defender.DefaultConfig()
		c.LockoutCooloffTimes = []time.Duration{60 * time.Second, 0}
		return ttlBase(c, prefix)
	}},
	{"pair-no-window", func(prefix string) defender.Config {
		c := defender.DefaultConfig()
		c.LockOutByIPAndUsername = true
		c.AccessAttemptExpiration = 0
		c.ResetIPOnSuccess = false
		return ttlBase(c, prefix)
	}},
}

func ttlBase(c defender.Config, prefix string) defender.Config {
	c.CachePrefix = prefix
	c.FailureLimit = 2
	c.StoreTimeout = 5 * time.Second
	c.StoreAccessAttempts = false
	return c
}

func ttlConfigNamed(name string) ttlConfig {
	for _, c := range ttlConfigs {
		if c.name == name {
			return c
		}
	}
	panic("no ttl config " + name)
}

var (
	propIPs   = []string{"192.0.2.1", "192.0.2.2", "2001:db8::1", "2001:db8::2:1"}
	propUsers = []string{"alice", "Bob", "carol@example.com", "ｄａｖｅ", "e v e"}
)

// drive runs steps random operations on d (forever when steps < 0):
// failures, successes, page views, attempts abandoned before they are
// settled (a crash between the reservation and the settlement), settlements
// under a deadline too short to finish (a crash between the store calls of
// a block), and admin unblocks. ready, when not nil, is called after the
// first operation.
func drive(d *defender.Defender, rng *rand.Rand, steps int, ready func()) {
	for i := 0; steps < 0 || i < steps; i++ {
		if i == 1 && ready != nil {
			ready()
		}
		ip := propIPs[rng.IntN(len(propIPs))]
		user := propUsers[rng.IntN(len(propUsers))]
		l := defender.Login{IP: netip.MustParseAddr(ip), Username: user}
		switch op := rng.IntN(100); {
		case op < 50:
			a := d.Attempt(ctxBG, l)
			a.Failed(ctxBG)
		case op < 60:
			a := d.Attempt(ctxBG, l)
			a.Succeeded(ctxBG)
		case op < 65:
			d.Check(ctxBG, l)
		case op < 72:
			d.Attempt(ctxBG, l) // abandoned: never settled
		case op < 80:
			a := d.Attempt(ctxBG, l)
			ctx, cancel := context.WithTimeout(ctxBG, time.Duration(rng.IntN(300))*time.Microsecond)
			a.Failed(ctx)
			cancel()
		case op < 86:
			_, _ = d.UnblockIP(ctxBG, ip)
		case op < 92:
			_, _ = d.UnblockUsername(ctxBG, user)
		default:
			_, _ = d.UnblockPair(ctxBG, ip, user)
		}
	}
}

// checkTTLs scans every key under cfg's prefix and asserts that counters
// and blocks expire (except permanent blocks, when the escalation list
// holds 0) and that lockout counts expire within the escalation window
// (persistent only when AccessAttemptExpiration is 0). It returns the
// number of keys of each slot.
func checkTTLs(t testing.TB, b backend.Backend, cfg defender.Config) map[byte]int {
	t.Helper()
	permanentOK := false
	maxBlock := time.Duration(0)
	for _, d := range cfg.LockoutCooloffTimes {
		if d == 0 {
			permanentOK = true
		}
		maxBlock = max(maxBlock, d)
	}
	if len(cfg.LockoutCooloffTimes) == 0 {
		maxBlock = cfg.CooloffTime
	}
	counterTTL := cfg.AttemptCooloffTime
	if counterTTL == defender.UseCooloffTime {
		counterTTL = cfg.CooloffTime
	}
	prefix := cfg.CachePrefix + ":"
	seen := map[byte]int{}
	cursor := ""
	for {
		ctx, cancel := context.WithTimeout(ctxBG, 10*time.Second)
		es, next, err := b.Scan(ctx, prefix, cursor, 100)
		cancel()
		if err != nil {
			t.Fatalf("scan: %v", err)
		}
		for _, e := range es {
			if len(e.Key) < len(prefix)+2 || e.Key[len(prefix)+1] != ':' {
				t.Errorf("unexpected key %q", e.Key)
				continue
			}
			slot := e.Key[len(prefix)]
			seen[slot]++
			// TTLs are rounded up to the store's resolution (a second on
			// Memcached).
			const slack = time.Second
			switch slot {
			case 'f':
				if e.TTL <= 0 || e.TTL > counterTTL+slack {
					t.Errorf("counter %s has TTL %v, want in (0, %v]", e.Key, e.TTL, counterTTL)
				}
			case 'b':
				if e.TTL == 0 && !permanentOK {
					t.Errorf("block %s never expires, but no lockout is permanent", e.Key)
				}
				if e.TTL > maxBlock+slack && maxBlock > 0 {
					t.Errorf("block %s has TTL %v, longer than any lockout (%v)", e.Key, e.TTL, maxBlock)
				}
			case 'n':
				if cfg.AccessAttemptExpiration == 0 {
					break // persistent by configuration
				}
				if e.TTL <= 0 || e.TTL > cfg.AccessAttemptExpiration+slack {
					t.Errorf("lockout count %s has TTL %v, want in (0, %v]", e.Key, e.TTL, cfg.AccessAttemptExpiration)
				}
			default:
				t.Errorf("unexpected key %q", e.Key)
			}
		}
		if next == "" {
			return seen
		}
		cursor = next
	}
}

// TestNoImmortalKeys drives random sequences on every backend, under three
// configurations, then asserts the lifetime of every key.
func TestNoImmortalKeys(t *testing.T) {
	for _, bk := range allKits {
		t.Run(bk.name, func(t *testing.T) {
			k := bk.make(t)
			for _, tc := range ttlConfigs {
				t.Run(tc.name, func(t *testing.T) {
					seed := testSeed(t)
					t.Logf("seed %d (%s=%d to replay)", seed, seedEnv, seed)
					cfg := tc.cfg(uniquePrefix())
					d, rec := newDefender(t, k.direct, cfg)
					drive(d, rand.New(rand.NewPCG(seed, seed)), 300, nil)
					d.Close()
					seen := checkTTLs(t, k.direct, cfg)
					t.Logf("%s/%s: %d blocks set; keys left by slot: counters %d, blocks %d, lockout counts %d", k.name, tc.name, rec.blocks.Load(), seen['f'], seen['b'], seen['n'])
					if rec.blocks.Load() == 0 {
						t.Errorf("no block was set: the sequence did not exercise blocks")
					}
				})
			}
		})
	}
}

// TestBoltKill9 runs the random sequence in a child process (this test
// binary re-executed) on a bolt file and kills it with SIGKILL at a random
// moment, three times on the same file: each time the file reopens cleanly
// and every key has its lifetime.
func TestBoltKill9(t *testing.T) {
	path := filepath.Join(t.TempDir(), "defender.db")
	for _, tc := range ttlConfigs {
		t.Run(tc.name, func(t *testing.T) {
			seed := testSeed(t)
			t.Logf("seed %d (%s=%d to replay)", seed, seedEnv, seed)
			rng := rand.New(rand.NewPCG(seed, 1))
			prefix := uniquePrefix()
			for round := 0; round < 3; round++ {
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Env = append(os.Environ(),
					childEnv+"="+path,
					"FAULTTEST_CHILD_CONFIG="+tc.name,
					"FAULTTEST_CHILD_PREFIX="+prefix,
					"FAULTTEST_CHILD_SEED="+strconv.FormatUint(seed+uint64(round), 10))
				out, err := cmd.StdoutPipe()
				if err != nil {
					t.Fatal(err)
				}
				var stderr strings.Builder
				cmd.Stderr = &stderr
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				line, err := bufio.NewReader(out).ReadString('\n')
				if err != nil || strings.TrimSpace(line) != "ready" {
					_ = cmd.Process.Kill()
					_ = cmd.Wait()
					t.Fatalf("child: %q %v\n%s", line, err, stderr.String())
				}
				time.Sleep(time.Duration(20+rng.IntN(200)) * time.Millisecond)
				_ = cmd.Process.Signal(syscall.SIGKILL)
				_ = cmd.Wait()
				st, err := bolt.Open(path, &bolt.Options{Timeout: 5 * time.Second})
				if err != nil {
					t.Fatalf("round %d: reopening after kill -9: %v", round, err)
				}
				seen := checkTTLs(t, st, tc.cfg(prefix))
				t.Logf("round %d: keys by slot after kill -9: counters %d, blocks %d, lockout counts %d", round, seen['f'], seen['b'], seen['n'])
				if err := st.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// boltChild is the crash child of TestBoltKill9: it drives random
// operations on the bolt file named by childEnv until it is killed.
func boltChild() int {
	path := os.Getenv(childEnv)
	seed, err := strconv.ParseUint(os.Getenv("FAULTTEST_CHILD_SEED"), 10, 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: bad seed:", err)
		return 2
	}
	cfg := ttlConfigNamed(os.Getenv("FAULTTEST_CHILD_CONFIG")).cfg(os.Getenv("FAULTTEST_CHILD_PREFIX"))
	st, err := bolt.Open(path, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	d, err := defender.New(st, cfg, &defender.Options{Logger: quiet})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	drive(d, rand.New(rand.NewPCG(seed, seed)), -1, func() { fmt.Println("ready") })
	return 0
}
