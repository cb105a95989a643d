package defender_test

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/go-defender/defender/backend/memory"
	"github.com/go-defender/defender/defender"
)

// The engine around an application's own password check: three wrong
// passwords are answered normally, the fourth gets the lockout, and later
// attempts are refused without checking the password.
func Example() {
	ctx := context.Background()
	store, _ := memory.New(nil)
	defer store.Close()
	d, err := defender.New(store, defender.DefaultConfig(), nil)
	if err != nil {
		panic(err)
	}
	defer d.Close()

	login := defender.Login{IP: netip.MustParseAddr("203.0.113.9"), Username: "Alice"}
	for i := 1; i <= 5; i++ {
		a := d.Attempt(ctx, login)
		if !a.Decision().Allowed() {
			fmt.Printf("attempt %d: locked, retry after %v\n", i, a.Decision().RetryAfter.Round(time.Second))
			continue
		}
		passwordOK := false // the application's bcrypt check goes here
		if passwordOK {
			a.Succeeded(ctx)
		} else if dec := a.Failed(ctx); dec.Verdict == defender.Locked {
			fmt.Printf("attempt %d: wrong password, now locked for %v\n", i, dec.RetryAfter)
		} else {
			fmt.Printf("attempt %d: wrong password\n", i)
		}
	}
	// Output:
	// attempt 1: wrong password
	// attempt 2: wrong password
	// attempt 3: wrong password
	// attempt 4: wrong password, now locked for 5m0s
	// attempt 5: locked, retry after 5m0s
}

// Settings come from DEFENDER_* variables, as in django-defender; errors
// name the setting.
func ExampleConfigFromLookup() {
	env := map[string]string{
		"DEFENDER_LOGIN_FAILURE_LIMIT":  "5",
		"DEFENDER_LOCKOUT_COOLOFF_TIME": "60,600,0",
	}
	cfg, err := defender.ConfigFromLookup(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	fmt.Println(cfg.FailureLimit, cfg.LockoutCooloffTimes, err)

	env["DEFENDER_FAIL_MODE"] = "sideways"
	_, err = defender.ConfigFromLookup(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	fmt.Println(err)
	// Output:
	// 5 [1m0s 10m0s 0s] <nil>
	// defender: bad setting DEFENDER_FAIL_MODE: unknown mode "sideways" (want closed, open or local)
}

// Usernames are canonicalised so that spelling variants share one counter.
func ExampleCanonicalUsername() {
	for _, s := range []string{"Alice", " alice ", "ALICE", "ａｌｉｃｅ"} {
		fmt.Printf("%q ", defender.CanonicalUsername(s))
	}
	fmt.Println()
	// Output:
	// "alice" "alice" "alice" "alice"
}

// An admin lists blocks a page at a time and unblocks by any spelling.
func ExampleDefender_Blocks() {
	ctx := context.Background()
	store, _ := memory.New(nil)
	defer store.Close()
	cfg := defender.DefaultConfig()
	cfg.FailureLimit = 1
	cfg.DisableIPLockout = true
	d, _ := defender.New(store, cfg, nil)
	defer d.Close()
	for i := 0; i < 2; i++ {
		d.Attempt(ctx, defender.Login{Username: "Bob"}).Failed(ctx)
	}
	blocks, _, _ := d.Blocks(ctx, "", 50)
	for _, b := range blocks {
		fmt.Println(b.Kind, b.Username, b.Count, b.Remaining.Round(time.Minute))
	}
	ok, _ := d.UnblockUsername(ctx, "BOB")
	fmt.Println("unblocked:", ok)
	// Output:
	// username bob 2 5m0s
	// unblocked: true
}

// Hooks receive events on real transitions (django-defender's signals).
func ExampleDefender_OnEvent() {
	ctx := context.Background()
	store, _ := memory.New(nil)
	defer store.Close()
	cfg := defender.DefaultConfig()
	cfg.FailureLimit = 1
	cfg.DisableUsernameLockout = true
	d, _ := defender.New(store, cfg, nil)
	d.OnEvent(func(ev defender.Event) { fmt.Println(ev.Kind, ev.IP, ev.Count) })
	ip := netip.MustParseAddr("2001:db8::1")
	for i := 0; i < 3; i++ {
		d.Attempt(ctx, defender.Login{IP: ip}).Failed(ctx)
	}
	d.Close() // delivers the queued events
	// Output:
	// ip_blocked 2001:db8::/64 2
}

// AttemptInto settles an attempt held in a variable of the caller: the
// allocation-free form of Attempt, for hot paths.
func ExampleDefender_AttemptInto() {
	store, _ := memory.New(nil)
	defer store.Close()
	d, _ := defender.New(store, defender.DefaultConfig(), nil)
	defer d.Close()
	ctx := context.Background()

	var a defender.Attempt
	for i := 0; i < 5; i++ {
		d.AttemptInto(ctx, defender.Login{Username: "alice"}, &a)
		if !a.Decision().Allowed() {
			fmt.Println(i+1, a.Decision().Verdict)
			continue
		}
		fmt.Println(i+1, a.Failed(ctx).Verdict) // the password was wrong
	}
	// Output:
	// 1 allow
	// 2 allow
	// 3 allow
	// 4 locked
	// 5 locked
}
