package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	users        = 16
	userPassword = "correct-horse-battery"
	attackerIPs  = 16
	victims      = 10000
	failureLimit = 3
)

// scenarios are the three login mixes of the load test.
var scenarios = map[string]source{
	// success: 16 users log in with their password, in turn, from many
	// addresses (one username per concurrent client: defender refuses more
	// than limit+1 concurrent attempts on one username before the first
	// ones are settled, by design, see docs/benchmarks.md).
	"success": successReq,
	// failure: a flood of wrong passwords from 16 attacking IPs, each on a
	// new username (10,000 rotate): the IPs are blocked after their 4th
	// failure, the usernames are never blocked.
	"failure": failureReq,
	// mixed: every other request is a user's success, the others the flood.
	"mixed": func(i int64) request {
		if i%2 == 0 {
			return successReq(i / 2)
		}
		return failureReq(i / 2)
	},
}

func successReq(i int64) request {
	return request{username: userName(i), password: userPassword, ip: fmt.Sprintf("10.1.%d.%d", (i>>8)&0xff, i&0xff), want: expectSuccess}
}

func userName(i int64) string { return fmt.Sprintf("user%02d", i%users) }

// userFlags are the demo's --user flags for the users.
func userFlags() []string {
	var out []string
	for i := range int64(users) {
		out = append(out, "--user", userName(i)+":"+userPassword)
	}
	return out
}

func failureReq(i int64) request {
	return request{username: fmt.Sprintf("victim%d", i%victims), password: "wrong-guess", ip: fmt.Sprintf("10.66.0.%d", i%attackerIPs), want: expectFailure}
}

// Cell is one measurement: a site, a scenario and a load mode.
type Cell struct {
	Backend  string  `json:"backend"`
	Scenario string  `json:"scenario"`
	Mode     string  `json:"mode"` // "rate", "saturation", "paired"; "attack" (stuffing), "flood" (locked)
	Rate     float64 `json:"rate,omitempty"`
	Workers  int     `json:"workers,omitempty"`
	// Admission is, for stuffing cells, the demo's verification admission
	// control: "off", or "CONCURRENCY/QUEUE/TIMEOUT".
	Admission string `json:"admission,omitempty"`
	Result    Result `json:"result"`
	// Baseline is, for mode "paired", the --no-defender site's result
	// measured in the same cell, its requests interleaved with Result's;
	// for mode "flood", the bare 429 handler's flood, run just before.
	Baseline *Result `json:"baseline,omitempty"`
	// Legit is, for stuffing cells, the legitimate logins at Rate per
	// second during the attack (Result is the attack).
	Legit *Result `json:"legit,omitempty"`
	// RatioToBare is, for mode "flood", Result.RPS / Baseline.RPS.
	RatioToBare float64 `json:"ratio_to_bare,omitempty"`
	// Audit is, for mode "flood" on a defender site, the audit log's
	// growth during the flood.
	Audit *AuditGrowth `json:"audit,omitempty"`
}

// key identifies a cell for -merge.
func (c Cell) key() string {
	return fmt.Sprintf("%s|%s|%s|%d|%s", c.Backend, c.Scenario, c.Mode, c.Workers, c.Admission)
}

// Report is the whole load test.
type Report struct {
	Date     time.Time `json:"date"`
	CPUs     int       `json:"cpus"`
	Duration string    `json:"cell_duration"`
	Cells    []Cell    `json:"cells"`
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// parseWorkers parses the -workers list of client counts.
func parseWorkers(s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-workers: %q is not a positive number of clients", f)
		}
		if slices.Contains(out, n) {
			return nil, fmt.Errorf("-workers: %d given twice", n)
		}
		out = append(out, n)
	}
	return out, nil
}

// classic are the scenarios run in the -modes load modes; stuffing and
// locked have their own load.
var classic = []string{"success", "mixed", "failure"}

// siteOpts are the settings of one cell's site beyond its backend.
type siteOpts struct {
	env        []string // extra environment (admission control)
	audit      bool     // the default file audit sink instead of --audit none
	lockoutURL string   // DEFENDER_LOCKOUT_URL of the defender sites
}

func runLoad(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	root := fs.String("root", "", "the defender repository (default: found from the working directory)")
	backends := fs.String("backends", "none,memory,bolt,redis,redis-cluster,memcached,axes", "sites to test: none (--no-defender), axes (the SQLite baseline) and defender backends")
	scen := fs.String("scenarios", "success,mixed,failure,stuffing,locked", "scenarios: success, mixed, failure (run in each -modes load mode), stuffing (credential stuffing with legitimate logins), locked (flood of one blocked identity, against a bare 429 handler)")
	modes := fs.String("modes", "rate,saturation", "load modes of the success, mixed and failure scenarios: rate (fixed rate) and saturation (closed loops)")
	merge := fs.Bool("merge", false, "keep the cells of the existing loadtest.json that this run does not measure again (for example -scenarios stuffing -merge reruns only the stuffing cells)")
	pairedOn := fs.Bool("paired", true, "also run each site's success scenario interleaved with --no-defender's (mode paired: the 1% target)")
	dur := fs.Duration("duration", 8*time.Second, "length of each cell")
	rate := fs.Float64("rate", 10, "requests per second of the fixed-rate cells")
	workersFlag := fs.String("workers", "8,16,32", "concurrent clients of the saturation cells: one cell per count")
	stuffWorkers := fs.Int("stuffing-workers", 32, "concurrent attackers of the stuffing cells")
	legitRate := fs.Float64("legit-rate", 2, "legitimate logins per second during the stuffing attack")
	admissionFlag := fs.String("admission", "off,on", "the demo's verification admission control in the stuffing cells, one cell per setting: off, on (2 × CPUs checks at a time, 4 × CPUs waiting, 1s at most) or CONCURRENCY:QUEUE:TIMEOUT (4:8:1s)")
	lockedWorkers := fs.Int("locked-workers", 8, "concurrent keep-alive clients of the locked flood")
	lockoutURL := fs.String("lockout-url", "", "DEFENDER_LOCKOUT_URL of the defender sites (a redirect there is counted as locked)")
	maxReq := fs.Int64("max", 200000, "at most this many requests per cell (not for the stuffing attack, which lasts as long as the legitimate logins)")
	out := fs.String("out", "", "directory for loadtest.md, loadtest.json and the PNG charts (default ROOT/bench/results)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	workers, err := parseWorkers(*workersFlag)
	if err != nil {
		return err
	}
	admissions, err := parseAdmissions(*admissionFlag, numCPU())
	if err != nil {
		return err
	}
	switch {
	case *dur <= 0:
		return fmt.Errorf("-duration %v: want a positive duration", *dur)
	case *rate <= 0:
		return fmt.Errorf("-rate %v: want a positive rate", *rate)
	case *legitRate <= 0:
		return fmt.Errorf("-legit-rate %v: want a positive rate", *legitRate)
	case *stuffWorkers < 1:
		return fmt.Errorf("-stuffing-workers %d: want at least 1", *stuffWorkers)
	case *lockedWorkers < 1:
		return fmt.Errorf("-locked-workers %d: want at least 1", *lockedWorkers)
	}
	scens := splitList(*scen)
	for _, sc := range scens {
		if _, ok := scenarios[sc]; !ok && sc != "stuffing" && sc != "locked" {
			return fmt.Errorf("unknown scenario %q (want success, mixed, failure, stuffing, locked)", sc)
		}
	}
	for _, m := range splitList(*modes) {
		if m != "rate" && m != "saturation" {
			return fmt.Errorf("unknown mode %q (want rate, saturation)", m)
		}
	}
	if slices.Contains(splitList(*modes), "saturation") && len(workers) == 0 {
		return errors.New("-workers: empty list (want client counts, for example 8,16,32)")
	}
	if *root == "" {
		wd, _ := os.Getwd()
		r, err := rootDir(wd)
		if err != nil {
			return err
		}
		*root = r
	}
	if *out == "" {
		*out = filepath.Join(*root, "bench", "results")
	}
	tmp, err := os.MkdirTemp("", "defender-loadtest-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintf(stdout, "building the demo from %s\n", *root)
	bin, err := buildDemo(*root, tmp)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var stores []string
	for _, b := range splitList(*backends) {
		if b != "none" && b != "axes" {
			stores = append(stores, b)
		}
	}
	p := &processTB{}
	defer p.stop()
	urls, err := storeServers(p, stores, tmp)
	if err != nil {
		return err
	}
	rep := Report{Date: time.Now().UTC(), CPUs: numCPU(), Duration: dur.String()}
	cellN := 0
	start := func(b string, o siteOpts) (*server, error) {
		cellN++
		o.lockoutURL = *lockoutURL
		s, err := startSite(bin, self, b, urls, tmp, cellN, o)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", b, err)
		}
		return s, nil
	}
	maxConns := 64
	if len(workers) > 0 {
		maxConns = max(slices.Max(workers), 64)
	}
	for _, b := range splitList(*backends) {
		for _, sc := range scens {
			src, ok := scenarios[sc]
			if !ok {
				continue
			}
			for _, mode := range splitList(*modes) {
				ws := []int{0}
				if mode == "saturation" {
					ws = workers
				}
				for _, w := range ws {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					s, err := start(b, siteOpts{})
					if err != nil {
						return err
					}
					c := Cell{Backend: b, Scenario: sc, Mode: mode}
					cl := newClient(s.base, maxConns)
					cl.lockoutURL = *lockoutURL
					if mode == "rate" {
						c.Rate = *rate
						c.Result = constantRate(ctx, cl, src, *rate, *dur, 256)
					} else {
						c.Workers = w
						c.Result = saturate(ctx, cl, src, w, *dur, *maxReq)
					}
					cl.close()
					s.stop()
					printCell(stdout, c)
					rep.Cells = append(rep.Cells, c)
				}
			}
		}
		if slices.Contains(scens, "stuffing") {
			adms := admissions
			if b == "axes" {
				// The SQLite baseline has no admission control.
				adms = []admission{{label: "off"}}
			}
			for _, a := range adms {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				s, err := start(b, siteOpts{env: a.env})
				if err != nil {
					return err
				}
				ca, cl := newClient(s.base, *stuffWorkers), newClient(s.base, 64)
				ca.lockoutURL, cl.lockoutURL = *lockoutURL, *lockoutURL
				ra, rl := stuffing(ctx, ca, cl, *stuffWorkers, *legitRate, *dur)
				ca.close()
				cl.close()
				s.stop()
				c := Cell{Backend: b, Scenario: "stuffing", Mode: "attack", Workers: *stuffWorkers, Rate: *legitRate, Admission: a.label, Result: ra, Legit: &rl}
				printCell(stdout, c)
				rep.Cells = append(rep.Cells, c)
			}
		}
		if slices.Contains(scens, "locked") {
			if b == "none" {
				fmt.Fprintf(stdout, "%-14s locked   (skipped: --no-defender locks nobody)\n", b)
				continue
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			c, err := lockedCell(ctx, start, self, tmp, &cellN, b, *lockedWorkers, *dur, *maxReq)
			if err != nil {
				return err
			}
			printCell(stdout, c)
			rep.Cells = append(rep.Cells, c)
		}
	}
	if *pairedOn && slices.Contains(splitList(*backends), "none") && slices.Contains(scens, "success") {
		for _, b := range splitList(*backends) {
			if b == "none" || ctx.Err() != nil {
				continue
			}
			base, err := start("none", siteOpts{})
			if err != nil {
				return err
			}
			s, err := start(b, siteOpts{})
			if err != nil {
				base.stop()
				return err
			}
			cb, cs := newClient(base.base, 64), newClient(s.base, 64)
			cs.lockoutURL = *lockoutURL
			// The two sites share the rate: each gets rate/2 for twice the
			// cell duration (as many requests as a fixed-rate cell), so the
			// machine's bcrypt load stays that of one fixed-rate cell.
			rb, rs := pairedRate(ctx, cb, cs, scenarios["success"], *rate, 2**dur, 256)
			cb.close()
			cs.close()
			s.stop()
			base.stop()
			c := Cell{Backend: b, Scenario: "success", Mode: "paired", Rate: *rate / 2, Result: rs, Baseline: &rb}
			printCell(stdout, c)
			rep.Cells = append(rep.Cells, c)
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if *merge {
		if old, err := os.ReadFile(filepath.Join(*out, "loadtest.json")); err == nil {
			var prev Report
			if err := json.Unmarshal(old, &prev); err != nil {
				return fmt.Errorf("-merge: %w", err)
			}
			rep.Cells = mergeCells(prev.Cells, rep.Cells)
		}
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	js, _ := json.MarshalIndent(rep, "", "  ")
	if err := os.WriteFile(filepath.Join(*out, "loadtest.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	return writeLoadReport(rep, *out)
}

// mergeCells returns the cells of prev that cur does not measure again
// (same backend, scenario, mode, clients and admission), then cur.
func mergeCells(prev, cur []Cell) []Cell {
	measured := map[string]bool{}
	for _, c := range cur {
		measured[c.key()] = true
	}
	out := []Cell{}
	for _, c := range prev {
		if !measured[c.key()] {
			out = append(out, c)
		}
	}
	return append(out, cur...)
}

// lockedCell runs the locked flood of site b and, just before, the same
// flood against the bare 429 handler.
func lockedCell(ctx context.Context, start func(string, siteOpts) (*server, error), self, tmp string, cellN *int, b string, workers int, d time.Duration, maxReq int64) (Cell, error) {
	*cellN++
	dir := filepath.Join(tmp, fmt.Sprintf("cell%d", *cellN))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Cell{}, err
	}
	bare, err := startServer(self, []string{"bare-server", "--addr", "127.0.0.1:0"}, nil, dir)
	if err != nil {
		return Cell{}, fmt.Errorf("bare handler: %w", err)
	}
	cb := newClient(bare.base, workers)
	rb := saturate(ctx, cb, lockedReq, workers, d, maxReq)
	cb.close()
	bare.stop()
	s, err := start(b, siteOpts{audit: true})
	if err != nil {
		return Cell{}, err
	}
	auditDir := s.dir
	if b == "axes" {
		auditDir = "" // no audit log
	}
	res, audit, err := lockedFlood(ctx, s, auditDir, workers, d, maxReq)
	if err != nil {
		return Cell{}, fmt.Errorf("%s locked flood: %w", b, err)
	}
	c := Cell{Backend: b, Scenario: "locked", Mode: "flood", Workers: workers, Result: res, Baseline: &rb, Audit: audit}
	if rb.RPS > 0 {
		c.RatioToBare = res.RPS / rb.RPS
	}
	return c, nil
}

// printCell prints one line (two for a stuffing cell) about c.
func printCell(w io.Writer, c Cell) {
	r := c.Result
	counts := func(r Result) string {
		return fmt.Sprintf("ok %d wrong %d locked %d shed %d unavailable %d errors %d",
			r.Outcomes["success"], r.Outcomes["wrong_password"], r.Outcomes["locked"], r.Outcomes["shed"], r.Outcomes["unavailable"], r.Errors)
	}
	switch c.Mode {
	case "paired":
		fmt.Fprintf(w, "%-14s success  paired     p50 %8.2f ms (no defender %8.2f)  p99 %8.2f ms (no defender %8.2f)  errors %d/%d\n",
			c.Backend, r.P50, c.Baseline.P50, r.P99, c.Baseline.P99, r.Errors, c.Baseline.Errors)
	case "attack":
		l := c.Legit
		fmt.Fprintf(w, "%-14s stuffing admission %-10s attack %d clients %8.1f req/s  %s\n", c.Backend, c.Admission, c.Workers, r.RPS, counts(r))
		fmt.Fprintf(w, "%-14s stuffing admission %-10s legit %.1f/s  p50 %8.2f ms  p99 %8.2f ms  %s\n", c.Backend, c.Admission, c.Rate, l.P50, l.P99, counts(*l))
	case "flood":
		audit := "audit n/a"
		if c.Audit != nil {
			audit = fmt.Sprintf("audit %d B, %.2f B/request", c.Audit.Bytes, c.Audit.PerRequest)
		}
		fmt.Fprintf(w, "%-14s locked   flood %d clients %8.1f req/s  bare 429 handler %8.1f req/s  ratio %.3f  %s  %s\n",
			c.Backend, c.Workers, r.RPS, c.Baseline.RPS, c.RatioToBare, audit, counts(r))
	default:
		load := fmt.Sprintf("%d clients", c.Workers)
		if c.Mode == "rate" {
			load = fmt.Sprintf("%.0f req/s", c.Rate)
		}
		fmt.Fprintf(w, "%-14s %-8s %-10s %-10s %8.1f req/s  p50 %8.2f ms  p90 %8.2f ms  p99 %8.2f ms  %s\n",
			c.Backend, c.Scenario, c.Mode, load, r.RPS, r.P50, r.P90, r.P99, counts(r))
	}
	for _, x := range []*Result{&c.Result, c.Legit, c.Baseline} {
		if x != nil && len(x.FirstErrs) > 0 {
			fmt.Fprintf(w, "    first errors: %s\n", strings.Join(x.FirstErrs, "; "))
		}
	}
}

// startSite starts the site of backend b for cell n: the demo with
// --no-defender, the axes-like baseline, or the demo on the backend's store
// (a fresh bolt file, a fresh key prefix on shared servers), with the
// settings of o.
func startSite(bin, self, b string, urls map[string]string, tmp string, n int, o siteOpts) (*server, error) {
	dir := filepath.Join(tmp, fmt.Sprintf("cell%d", n))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	switch b {
	case "axes":
		return startServer(self, append([]string{"axes-server", "--addr", "127.0.0.1:0", "--db", filepath.Join(dir, "axes.db"), "--limit", fmt.Sprint(failureLimit)}, userFlags()...), nil, dir)
	case "none":
		return startServer(bin, append([]string{"demo", "--addr", "127.0.0.1:0", "--admin", "admin:admin-password", "--no-defender"}, userFlags()...), o.env, dir)
	}
	u := urls[b]
	if strings.Contains(u, "%d") {
		u = fmt.Sprintf(u, n)
	}
	env := append([]string{
		"DEFENDER_BEHIND_REVERSE_PROXY=1",
		fmt.Sprintf("DEFENDER_CACHE_PREFIX=lt%d", n),
		fmt.Sprintf("DEFENDER_LOGIN_FAILURE_LIMIT=%d", failureLimit),
	}, o.env...)
	if o.lockoutURL != "" {
		env = append(env, "DEFENDER_LOCKOUT_URL="+o.lockoutURL)
	}
	// The audit log: the default file sink (the JSON-lines file in the
	// working directory, named explicitly so that a DEFENDER_AUDIT_URL in
	// the environment does not replace it), or none.
	audit := "none"
	if o.audit {
		audit = "file://" + filepath.ToSlash(filepath.Join(dir, "defender-attempts.jsonl"))
	}
	return startServer(bin, append([]string{"demo", "--addr", "127.0.0.1:0", "--store", u, "--audit", audit, "--admin", "admin:admin-password"}, userFlags()...), env, dir)
}
