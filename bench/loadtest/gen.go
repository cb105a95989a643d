package main

import (
	"context"
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
// DEFENDER_BEHIND_REVERSE_PROXY=1).
type request struct {
	username, password, ip string
}

// source returns the i-th request of a scenario. It must be safe for
// concurrent use.
type source func(i int64) request

// outcome classifies a response.
type outcome int

const (
	outSuccess outcome = iota // 302/303: logged in
	outWrong                  // 200 or 401: wrong password
	outLocked                 // 429 (or 403): locked out
	outError                  // anything else, or no response
	numOutcomes
)

func classify(status int) outcome {
	switch status {
	case http.StatusSeeOther, http.StatusFound:
		return outSuccess
	case http.StatusOK, http.StatusUnauthorized:
		return outWrong
	case http.StatusTooManyRequests, http.StatusForbidden:
		return outLocked
	}
	return outError
}

// Result is what one load cell measured.
type Result struct {
	Requests  int64            `json:"requests"`
	Seconds   float64          `json:"seconds"`
	RPS       float64          `json:"rps"`
	P50       float64          `json:"p50_ms"`
	P90       float64          `json:"p90_ms"`
	P99       float64          `json:"p99_ms"`
	Max       float64          `json:"max_ms"`
	Outcomes  map[string]int64 `json:"outcomes"`
	Errors    int64            `json:"errors"`
	Dropped   int64            `json:"dropped,omitempty"`
	FirstErrs []string         `json:"first_errors,omitempty"`
}

var outcomeNames = [numOutcomes]string{"success", "wrong_password", "locked", "error"}

// recorder collects latencies and outcomes; safe for concurrent use.
type recorder struct {
	mu    sync.Mutex
	lat   []time.Duration
	out   [numOutcomes]int64
	errs  []string
	drops atomic.Int64
}

func (r *recorder) add(d time.Duration, o outcome, err error) {
	r.mu.Lock()
	r.lat = append(r.lat, d)
	r.out[o]++
	if err != nil && len(r.errs) < 5 {
		r.errs = append(r.errs, err.Error())
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
		Errors:    r.out[outError],
		Dropped:   r.drops.Load(),
		FirstErrs: r.errs,
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

// do posts one login and returns its outcome.
func (c *client) do(ctx context.Context, r request) (outcome, error) {
	form := url.Values{"username": {r.username}, "password": {r.password}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/login", strings.NewReader(form))
	if err != nil {
		return outError, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if r.ip != "" {
		req.Header.Set("X-Forwarded-For", r.ip)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return outError, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	o := classify(resp.StatusCode)
	if o == outError {
		return o, &statusError{resp.StatusCode}
	}
	return o, nil
}

type statusError struct{ code int }

func (e *statusError) Error() string { return "HTTP " + http.StatusText(e.code) }

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
				o, err := c.do(ctx, src(i))
				if ctx.Err() != nil {
					return // cut by the deadline: not a measurement
				}
				rec.add(time.Since(t), o, err)
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
			o, err := c.do(ctx, src(i))
			rec.add(time.Since(at), o, err)
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
			o, err := cls[side].do(ctx, src(i/2))
			recs[side].add(time.Since(at), o, err)
		}(i, at)
	}
	wg.Wait()
	el := time.Since(start)
	return recs[0].result(el), recs[1].result(el)
}
