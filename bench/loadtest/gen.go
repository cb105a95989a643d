package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// request is one login POST: the form and the client address the demo sees
// (X-Forwarded-For, trusted from loopback when the demo runs with
// DEFENDER_BEHIND_REVERSE_PROXY=1), and what its answer should be.
type request struct {
	username, password, ip string
	want                   expect
}

// expect is what a request should be answered; an answer it rules out is
// counted as an error of the cell.
type expect uint8

const (
	// expectAny: no expectation; only the error outcome is an error.
	expectAny expect = iota
	// expectSuccess: the right password, from a client that never sent a
	// wrong one: anything but "success" (or "shed") is an error.
	expectSuccess
	// expectFailure: a wrong password: "success" is an error.
	expectFailure
)

// source returns the i-th request of a scenario. It must be safe for
// concurrent use.
type source func(i int64) request

// outcome classifies a response.
type outcome int

const (
	outSuccess     outcome = iota // 302/303 (not to the lockout URL): logged in
	outWrong                      // 200 or 401: wrong password ("failure")
	outLocked                     // 429, 403, or a redirect to the lockout URL: locked out
	outError                      // anything else, or no response
	outShed                       // 503 X-Defender-Reason: shed: the verification admission control refused it
	outUnavailable                // 503 without a reason, or X-Defender-Reason: unavailable: the store is down, fail mode closed
	numOutcomes
)

// outcomeNames are the keys of Result.Outcomes.
var outcomeNames = [numOutcomes]string{"success", "wrong_password", "locked", "error", "shed", "unavailable"}

func (o outcome) String() string {
	if o >= 0 && o < numOutcomes {
		return outcomeNames[o]
	}
	return fmt.Sprintf("outcome(%d)", int(o))
}

// reasonHeader marks every answer that defender itself generated in the
// demo: locked, unavailable, shed or refused.
const reasonHeader = "X-Defender-Reason"

// classify returns the outcome of a login answer. X-Defender-Reason, when
// present, decides (refused, an attempt refused before verification,
// counts as locked); it must agree with the status: shed and unavailable
// come with 503, locked and refused with a 3xx or 4xx. Without it the
// status decides, and a redirect to lockoutURL (when not empty) is a
// lockout. err explains an error outcome.
func classify(status int, h http.Header, lockoutURL string) (outcome, error) {
	if reason := h.Get(reasonHeader); reason != "" {
		var o outcome
		ok := false
		switch reason {
		case "locked", "refused":
			o, ok = outLocked, status >= 300 && status < 500
		case "unavailable":
			o, ok = outUnavailable, status == http.StatusServiceUnavailable
		case "shed":
			o, ok = outShed, status == http.StatusServiceUnavailable
		default:
			return outError, fmt.Errorf("HTTP %d with an unknown %s %q", status, reasonHeader, reason)
		}
		if !ok {
			return outError, fmt.Errorf("HTTP %d with %s %q", status, reasonHeader, reason)
		}
		return o, nil
	}
	switch status {
	case http.StatusSeeOther, http.StatusFound:
		if lockoutURL != "" && h.Get("Location") == lockoutURL {
			return outLocked, nil
		}
		return outSuccess, nil
	case http.StatusOK, http.StatusUnauthorized:
		return outWrong, nil
	case http.StatusTooManyRequests, http.StatusForbidden:
		return outLocked, nil
	case http.StatusServiceUnavailable:
		return outUnavailable, nil
	}
	return outError, &statusError{status}
}

// response is a classified answer.
type response struct {
	o      outcome
	status int    // 0 without an answer
	reason string // X-Defender-Reason
	err    error  // why o is outError
}

// unexpected says why r is an error for a request that wants w, or "".
func unexpected(w expect, r response) string {
	if r.o == outError {
		if r.err != nil {
			return r.err.Error()
		}
		return "error"
	}
	var what string
	switch {
	case w == expectSuccess && r.o != outSuccess && r.o != outShed:
		what = "the right password answered " + r.o.String()
	case w == expectFailure && r.o == outSuccess:
		what = "a wrong password logged in"
	default:
		return ""
	}
	what += fmt.Sprintf(" (HTTP %d", r.status)
	if r.reason != "" {
		what += ", " + reasonHeader + ": " + r.reason
	}
	return what + ")"
}

// Result is what one load cell measured.
type Result struct {
	Requests int64   `json:"requests"`
	Seconds  float64 `json:"seconds"`
	RPS      float64 `json:"rps"`
	P50      float64 `json:"p50_ms"`
	P90      float64 `json:"p90_ms"`
	P99      float64 `json:"p99_ms"`
	Max      float64 `json:"max_ms"`
	// Outcomes counts the answers by outcome (outcomeNames).
	Outcomes map[string]int64 `json:"outcomes"`
	// Errors counts the "error" outcomes and the answers a request ruled
	// out: anything but logged in (or shed) for the right password of a
	// legitimate user, a login for a wrong password.
	Errors  int64 `json:"errors"`
	Dropped int64 `json:"dropped,omitempty"`
	// Reasons counts the X-Defender-Reason headers of the answers.
	Reasons   map[string]int64 `json:"reasons,omitempty"`
	FirstErrs []string         `json:"first_errors,omitempty"`
}

// recorder collects latencies and outcomes; safe for concurrent use.
type recorder struct {
	mu      sync.Mutex
	lat     []time.Duration
	out     [numOutcomes]int64
	errors  int64
	reasons map[string]int64
	errs    []string
	drops   atomic.Int64
}

// add records one answer r, after d, to a request that wants w.
func (r *recorder) add(d time.Duration, w expect, resp response) {
	why := unexpected(w, resp)
	r.mu.Lock()
	r.lat = append(r.lat, d)
	r.out[resp.o]++
	if resp.reason != "" {
		if r.reasons == nil {
			r.reasons = map[string]int64{}
		}
		r.reasons[resp.reason]++
	}
	if why != "" {
		r.errors++
		if len(r.errs) < 5 {
			r.errs = append(r.errs, why)
		}
	}
	r.mu.Unlock()
}

func (r *recorder) result(elapsed time.Duration) Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	lat := slices.Clone(r.lat)
	slices.Sort(lat)
	res := Result{
		Requests:  int64(len(lat)),
		Seconds:   elapsed.Seconds(),
		Outcomes:  map[string]int64{},
		Errors:    r.errors,
		Dropped:   r.drops.Load(),
		FirstErrs: slices.Clone(r.errs),
	}
	for k, v := range r.reasons {
		if res.Reasons == nil {
			res.Reasons = map[string]int64{}
		}
		res.Reasons[k] = v
	}
	for i, n := range r.out {
		res.Outcomes[outcomeNames[i]] = n
	}
	if elapsed > 0 {
		res.RPS = float64(len(lat)) / elapsed.Seconds()
	}
	if len(lat) > 0 {
		res.P50 = ms(quantile(lat, 0.50))
		res.P90 = ms(quantile(lat, 0.90))
		res.P99 = ms(quantile(lat, 0.99))
		res.Max = ms(lat[len(lat)-1])
	}
	return res
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// quantile of sorted durations (nearest rank).
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted))+0.999999) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	return sorted[i]
}

// client posts login forms to one base URL.
type client struct {
	base string
	hc   *http.Client
	// lockoutURL is the site's lockout redirect target, if it has one.
	lockoutURL string
}

func newClient(base string, conns int) *client {
	tr := &http.Transport{
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		IdleConnTimeout:     30 * time.Second,
	}
	return &client{
		base: base,
		hc: &http.Client{
			Transport: tr,
			Timeout:   30 * time.Second,
			// Report the redirect of a success; do not follow it.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

func (c *client) close() { c.hc.CloseIdleConnections() }

// do posts one login and classifies the answer.
func (c *client) do(ctx context.Context, r request) response {
	form := url.Values{"username": {r.username}, "password": {r.password}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/login", strings.NewReader(form))
	if err != nil {
		return response{o: outError, err: err}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if r.ip != "" {
		req.Header.Set("X-Forwarded-For", r.ip)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return response{o: outError, err: err}
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	o, err := classify(resp.StatusCode, resp.Header, c.lockoutURL)
	return response{o: o, status: resp.StatusCode, reason: resp.Header.Get(reasonHeader), err: err}
}

type statusError struct{ code int }

func (e *statusError) Error() string {
	return fmt.Sprintf("HTTP %d %s", e.code, http.StatusText(e.code))
}

// saturate runs workers concurrent closed loops for d (or until max
// requests) and returns the measurements.
func saturate(ctx context.Context, c *client, src source, workers int, d time.Duration, max int64) Result {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	rec := &recorder{}
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if max > 0 && i >= max {
					return
				}
				t := time.Now()
				req := src(i)
				resp := c.do(ctx, req)
				if ctx.Err() != nil {
					return // cut by the deadline: not a measurement
				}
				rec.add(time.Since(t), req.want, resp)
			}
		}()
	}
	wg.Wait()
	return rec.result(time.Since(start))
}

// constantRate sends rate requests per second for d (open loop: a slow
// answer does not delay the next request; at most maxInFlight are pending,
// beyond which requests are counted as dropped) and returns the
// measurements. Latency is measured from each request's scheduled time.
func constantRate(ctx context.Context, c *client, src source, rate float64, d time.Duration, maxInFlight int) Result {
	rec := &recorder{}
	sem := make(chan struct{}, maxInFlight)
	var wg sync.WaitGroup
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	n := int64(d.Seconds() * rate)
	for i := int64(0); i < n; i++ {
		at := start.Add(time.Duration(i) * interval)
		if w := time.Until(at); w > 0 {
			select {
			case <-time.After(w):
			case <-ctx.Done():
				i = n
				continue
			}
		}
		select {
		case sem <- struct{}{}:
		default:
			rec.drops.Add(1)
			continue
		}
		wg.Add(1)
		go func(i int64, at time.Time) {
			defer wg.Done()
			defer func() { <-sem }()
			req := src(i)
			resp := c.do(ctx, req)
			rec.add(time.Since(at), req.want, resp)
		}(i, at)
	}
	wg.Wait()
	return rec.result(time.Since(start))
}

// pairedRate sends rate requests per second for d, alternately to a and b
// (request i of the source goes to both: a gets it at 2i, b at 2i+1), so
// that both sites are measured under the same machine load. Latency is
// measured from each request's scheduled time.
func pairedRate(ctx context.Context, a, b *client, src source, rate float64, d time.Duration, maxInFlight int) (Result, Result) {
	recs := [2]*recorder{{}, {}}
	cls := [2]*client{a, b}
	sem := make(chan struct{}, maxInFlight)
	var wg sync.WaitGroup
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	n := int64(d.Seconds() * rate)
	for i := int64(0); i < n && ctx.Err() == nil; i++ {
		at := start.Add(time.Duration(i) * interval)
		if w := time.Until(at); w > 0 {
			select {
			case <-time.After(w):
			case <-ctx.Done():
				continue
			}
		}
		side := i % 2
		select {
		case sem <- struct{}{}:
		default:
			recs[side].drops.Add(1)
			continue
		}
		wg.Add(1)
		go func(i int64, at time.Time) {
			defer wg.Done()
			defer func() { <-sem }()
			req := src(i / 2)
			resp := cls[side].do(ctx, req)
			recs[side].add(time.Since(at), req.want, resp)
		}(i, at)
	}
	wg.Wait()
	el := time.Since(start)
	return recs[0].result(el), recs[1].result(el)
}
