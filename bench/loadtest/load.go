package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
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
	return request{username: userName(i), password: userPassword, ip: fmt.Sprintf("10.1.%d.%d", (i>>8)&0xff, i&0xff)}
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
	return request{username: fmt.Sprintf("victim%d", i%victims), password: "wrong-guess", ip: fmt.Sprintf("10.66.0.%d", i%attackerIPs)}
}

// Cell is one measurement: a site, a scenario and a load mode.
type Cell struct {
	Backend  string  `json:"backend"`
	Scenario string  `json:"scenario"`
	Mode     string  `json:"mode"` // "rate" (fixed rate) or "saturation"
	Rate     float64 `json:"rate,omitempty"`
	Workers  int     `json:"workers,omitempty"`
	Result   Result  `json:"result"`
	// Baseline is, for mode "paired", the --no-defender site's result
	// measured in the same cell, its requests interleaved with Result's.
	Baseline *Result `json:"baseline,omitempty"`
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

func runLoad(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	root := fs.String("root", "", "the defender repository (default: found from the working directory)")
	backends := fs.String("backends", "none,memory,bolt,redis,redis-cluster,memcached,axes", "sites to test: none (--no-defender), axes (the SQLite baseline) and defender backends")
	scen := fs.String("scenarios", "success,mixed,failure", "scenarios")
	modes := fs.String("modes", "rate,saturation", "load modes: rate (fixed rate) and saturation (closed loop)")
	merge := fs.Bool("merge", false, "keep the cells of the existing loadtest.json that this run does not measure again (for example -modes '' -merge reruns only the paired cells)")
	pairedOn := fs.Bool("paired", true, "also run each site's success scenario interleaved with --no-defender's (mode paired: the 1% target)")
	dur := fs.Duration("duration", 8*time.Second, "length of each cell")
	rate := fs.Float64("rate", 10, "requests per second of the fixed-rate cells")
	workers := fs.Int("workers", 8, "concurrent clients of the saturation cells")
	maxReq := fs.Int64("max", 200000, "at most this many requests per cell")
	out := fs.String("out", "", "directory for loadtest.md, loadtest.json and the PNG charts (default ROOT/bench/results)")
	if err := fs.Parse(args); err != nil {
		return err
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
	for _, b := range splitList(*backends) {
		for _, sc := range splitList(*scen) {
			src, ok := scenarios[sc]
			if !ok {
				return fmt.Errorf("unknown scenario %q (want success, mixed, failure)", sc)
			}
			for _, mode := range splitList(*modes) {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				cellN++
				s, err := startSite(bin, self, b, urls, tmp, cellN)
				if err != nil {
					return fmt.Errorf("%s: %w", b, err)
				}
				c := Cell{Backend: b, Scenario: sc, Mode: mode}
				cl := newClient(s.base, max(*workers, 64))
				switch mode {
				case "rate":
					c.Rate = *rate
					c.Result = constantRate(ctx, cl, src, *rate, *dur, 256)
				case "saturation":
					c.Workers = *workers
					c.Result = saturate(ctx, cl, src, *workers, *dur, *maxReq)
				default:
					s.stop()
					return fmt.Errorf("unknown mode %q (want rate, saturation)", mode)
				}
				cl.close()
				s.stop()
				r := c.Result
				fmt.Fprintf(stdout, "%-14s %-8s %-10s %8.1f req/s  p50 %8.2f ms  p90 %8.2f ms  p99 %8.2f ms  ok %d wrong %d locked %d errors %d\n",
					b, sc, mode, r.RPS, r.P50, r.P90, r.P99, r.Outcomes["success"], r.Outcomes["wrong_password"], r.Outcomes["locked"], r.Errors)
				if len(r.FirstErrs) > 0 {
					fmt.Fprintf(stdout, "    first errors: %s\n", strings.Join(r.FirstErrs, "; "))
				}
				rep.Cells = append(rep.Cells, c)
			}
		}
	}
	if *pairedOn && slices.Contains(splitList(*backends), "none") && slices.Contains(splitList(*scen), "success") {
		for _, b := range splitList(*backends) {
			if b == "none" || ctx.Err() != nil {
				continue
			}
			cellN++
			base, err := startSite(bin, self, "none", urls, tmp, cellN)
			if err != nil {
				return err
			}
			cellN++
			s, err := startSite(bin, self, b, urls, tmp, cellN)
			if err != nil {
				base.stop()
				return fmt.Errorf("%s: %w", b, err)
			}
			cb, cs := newClient(base.base, 64), newClient(s.base, 64)
			// The two sites share the rate: each gets rate/2 for twice the
			// cell duration (as many requests as a fixed-rate cell), so the
			// machine's bcrypt load stays that of one fixed-rate cell.
			rb, rs := pairedRate(ctx, cb, cs, scenarios["success"], *rate, 2**dur, 256)
			cb.close()
			cs.close()
			s.stop()
			base.stop()
			rep.Cells = append(rep.Cells, Cell{Backend: b, Scenario: "success", Mode: "paired", Rate: *rate / 2, Result: rs, Baseline: &rb})
			fmt.Fprintf(stdout, "%-14s success  paired     p50 %8.2f ms (no defender %8.2f)  p99 %8.2f ms (no defender %8.2f)  errors %d/%d\n",
				b, rs.P50, rb.P50, rs.P99, rb.P99, rs.Errors, rb.Errors)
		}
	}
	if *merge {
		if old, err := os.ReadFile(filepath.Join(*out, "loadtest.json")); err == nil {
			var prev Report
			if err := json.Unmarshal(old, &prev); err != nil {
				return fmt.Errorf("-merge: %w", err)
			}
			kept := []Cell{}
			for _, c := range prev.Cells {
				if rep.find(c.Backend, c.Scenario, c.Mode) == nil {
					kept = append(kept, c)
				}
			}
			rep.Cells = append(kept, rep.Cells...)
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

// startSite starts the site of backend b for cell n: the demo with
// --no-defender, the axes-like baseline, or the demo on the backend's store
// (a fresh bolt file, a fresh key prefix on shared servers).
func startSite(bin, self, b string, urls map[string]string, tmp string, n int) (*server, error) {
	dir := filepath.Join(tmp, fmt.Sprintf("cell%d", n))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	switch b {
	case "axes":
		return startServer(self, append([]string{"axes-server", "--addr", "127.0.0.1:0", "--db", filepath.Join(dir, "axes.db"), "--limit", fmt.Sprint(failureLimit)}, userFlags()...), nil, dir)
	case "none":
		return startServer(bin, append([]string{"demo", "--addr", "127.0.0.1:0", "--admin", "admin:admin-password", "--no-defender"}, userFlags()...), nil, dir)
	}
	u := urls[b]
	if strings.Contains(u, "%d") {
		u = fmt.Sprintf(u, n)
	}
	env := []string{
		"DEFENDER_BEHIND_REVERSE_PROXY=1",
		fmt.Sprintf("DEFENDER_CACHE_PREFIX=lt%d", n),
		fmt.Sprintf("DEFENDER_LOGIN_FAILURE_LIMIT=%d", failureLimit),
	}
	return startServer(bin, append([]string{"demo", "--addr", "127.0.0.1:0", "--store", u, "--audit", "none", "--admin", "admin:admin-password"}, userFlags()...), env, dir)
}
