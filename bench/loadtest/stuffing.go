package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// stuffIPs is the size of the stuffing attack's address space,
// 10.128.0.0/9: at two attempts per address it repeats an address after
// 16 million requests, far more than a cell sends (-max).
const stuffIPs = 1 << 23

// stuffingReq is the i-th attempt of the credential-stuffing scenario: a
// leaked username (unknown to the site, so it costs a full bcrypt
// comparison, as a real one does) with a wrong password, from one of
// millions of addresses. Each address and each username makes
// failureLimit-1 attempts, and no (address, username) pair more, so no
// identity ever reaches the failure limit: lockout alone cannot stop it.
func stuffingReq(i int64) request {
	k := int64(max(failureLimit-1, 1))
	a := (i / k) % stuffIPs
	u := (i + 1) / k
	return request{
		username: "leaked" + strconv.FormatInt(u, 10),
		password: "stuffed-password",
		ip:       fmt.Sprintf("10.%d.%d.%d", 128+((a>>16)&0x7f), (a>>8)&0xff, a&0xff),
		want:     expectFailure,
	}
}

// legitReq is the i-th login of the legitimate users during the stuffing
// attack: the right password of the users in turn, each from its own
// address (10.200.0.1-16), which never sends a wrong password.
func legitReq(i int64) request {
	return request{username: userName(i), password: userPassword, ip: fmt.Sprintf("10.200.0.%d", i%users+1), want: expectSuccess}
}

// stuffing runs the credential-stuffing cell: workers attackers in closed
// loops on attack and, at the same time, the legitimate logins at
// legitRate per second on their own client legit for d. The attack goes
// on until the last legitimate login is answered, so that every one of
// them is measured under attack (it has no request bound: the legitimate
// logins' duration bounds it). It returns the attack's and the
// legitimate logins' results.
func stuffing(ctx context.Context, attack, legit *client, workers int, legitRate float64, d time.Duration) (Result, Result) {
	actx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	var a Result
	wg.Add(1)
	go func() {
		defer wg.Done()
		// The attack ends when stop is called (or at 2d + 1 minute,
		// a bound that is never reached unless a legitimate login hangs
		// until the client's timeout).
		a = saturate(actx, attack, stuffingReq, workers, 2*d+time.Minute, 0)
	}()
	l := constantRate(ctx, legit, legitReq, legitRate, d, 256)
	stop()
	wg.Wait()
	return a, l
}

// admission is one setting of the demo's verification admission control
// (DEFENDER_VERIFY_CONCURRENCY, _QUEUE, _QUEUE_TIMEOUT).
type admission struct {
	label string // "off", or "C/Q/T"
	env   []string
}

// parseAdmissions parses the -admission list: "off" (concurrency 0),
// "on" (2 × cpus password checks at a time, 4 × cpus waiting, at most 1s),
// or CONCURRENCY:QUEUE:TIMEOUT, for example 4:8:1s.
func parseAdmissions(list string, cpus int) ([]admission, error) {
	var out []admission
	seen := map[string]bool{}
	for _, f := range splitList(list) {
		var a admission
		switch f {
		case "off":
			a = admission{label: "off", env: []string{"DEFENDER_VERIFY_CONCURRENCY=0"}}
		case "on":
			a = admissionOn(2*cpus, 4*cpus, time.Second)
		default:
			parts := strings.Split(f, ":")
			if len(parts) != 3 {
				return nil, fmt.Errorf("-admission: %q is not off, on or CONCURRENCY:QUEUE:TIMEOUT (for example 4:8:1s)", f)
			}
			c, err1 := strconv.Atoi(parts[0])
			q, err2 := strconv.Atoi(parts[1])
			t, err3 := time.ParseDuration(parts[2])
			if err1 != nil || err2 != nil || err3 != nil || c < 1 || q < 0 || t <= 0 {
				return nil, fmt.Errorf("-admission: %q: want a concurrency >= 1, a queue >= 0 and a positive Go duration, as in 4:8:1s", f)
			}
			a = admissionOn(c, q, t)
		}
		if seen[a.label] {
			return nil, fmt.Errorf("-admission: %s given twice", a.label)
		}
		seen[a.label] = true
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-admission: empty list (want off, on or CONCURRENCY:QUEUE:TIMEOUT)")
	}
	return out, nil
}

func admissionOn(c, q int, t time.Duration) admission {
	return admission{
		label: fmt.Sprintf("%d/%d/%s", c, q, t),
		env: []string{
			fmt.Sprintf("DEFENDER_VERIFY_CONCURRENCY=%d", c),
			fmt.Sprintf("DEFENDER_VERIFY_QUEUE=%d", q),
			"DEFENDER_VERIFY_QUEUE_TIMEOUT=" + t.String(),
		},
	}
}
