package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// benchSet holds go test -bench results: for each benchmark name (without
// the -GOMAXPROCS suffix) and unit, every value seen (one per -count run).
type benchSet struct {
	names  []string // in first-seen order
	values map[string]map[string][]float64
}

var procSuffix = regexp.MustCompile(`-\d+$`)

// parseBench reads go test -bench output; lines that are not results are
// skipped.
func parseBench(r io.Reader) (*benchSet, error) {
	s := &benchSet{values: map[string]map[string][]float64{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		if _, err := strconv.ParseInt(f[1], 10, 64); err != nil {
			continue
		}
		name := procSuffix.ReplaceAllString(f[0], "")
		m, ok := s.values[name]
		if !ok {
			m = map[string][]float64{}
			s.values[name] = m
			s.names = append(s.names, name)
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			m[f[i+1]] = append(m[f[i+1]], v)
		}
	}
	return s, sc.Err()
}

// median of name's unit, and whether it was measured.
func (s *benchSet) median(name, unit string) (float64, bool) {
	vs := s.values[name][unit]
	if len(vs) == 0 {
		return 0, false
	}
	vs = slices.Clone(vs)
	sort.Float64s(vs)
	n := len(vs)
	if n%2 == 1 {
		return vs[n/2], true
	}
	return (vs[n/2-1] + vs[n/2]) / 2, true
}

// ratioRow is one line of the targets table.
type ratioRow struct {
	target, what, measured, ratio, verdict string
}

func fmtNs(ns float64) string {
	switch {
	case ns >= 1e6:
		return fmt.Sprintf("%.2f ms", ns/1e6)
	case ns >= 1e3:
		return fmt.Sprintf("%.1f µs", ns/1e3)
	}
	return fmt.Sprintf("%.0f ns", ns)
}

// ratios evaluates the targets of docs/benchmarks.md that bench/ measures.
// Latency targets use BenchmarkPaired (operation and floor interleaved in
// one loop, so both see the same machine load); the parallel rows compare
// throughput-bound ns/op of BenchmarkBackend and BenchmarkFloor and are
// shown for reference.
func ratios(s *benchSet) []ratioRow {
	var rows []ratioRow
	for _, st := range []struct{ backend, label, target string }{
		{"memory", "mutex map", "memory: whole attempt ≤ 2× mutex map, ≤ 2 allocs"},
		{"redis", "PING", "redis: whole attempt ≤ 2.5× PING"},
		{"redis-cluster", "cluster PING", "redis-cluster: whole attempt ≤ 2.5× PING"},
		{"memcached", "get", "memcached: whole attempt ≤ 2.5× get"},
	} {
		limit := 2.5
		if st.backend == "memory" {
			limit = 2
		}
		for _, op := range []string{"Attempt", "Failure", "Success", "Check"} {
			name := "BenchmarkPaired/" + st.backend + "/" + op
			q, ok := s.median(name, "x-floor")
			if !ok {
				continue
			}
			opNs, _ := s.median(name, "op-ns")
			floorNs, _ := s.median(name, "floor-ns")
			allocs, okA := s.median("BenchmarkBackend/"+st.backend+"/"+op+"/serial", "allocs/op")
			measured := fmt.Sprintf("%s vs %s %s", fmtNs(opNs), st.label, fmtNs(floorNs))
			met := q <= limit
			if st.backend == "memory" && okA {
				measured += fmt.Sprintf("; %.0f allocs", allocs)
				met = met && allocs <= 2
			}
			target, verdict := st.target, metMark(met)
			switch op {
			case "Check":
				target, verdict = st.backend+": check vs "+st.label+" (reference)", "—"
			case "Failure", "Success":
				target = st.target + " (one outcome)"
			}
			rows = append(rows, ratioRow{target: target, what: st.backend + " " + op + " serial, paired", measured: measured,
				ratio: fmt.Sprintf("×%.2f", q), verdict: verdict})
		}
	}
	for _, st := range []struct{ backend, floor, label string }{
		{"memory", "mutexmap", "mutex map"},
		{"redis", "redis-ping", "PING"},
		{"redis-cluster", "redis-cluster-ping", "cluster PING"},
		{"memcached", "memcached-get", "get"},
	} {
		floor, okF := s.median("BenchmarkFloor/"+st.floor+"/parallel", "ns/op")
		v, ok := s.median("BenchmarkBackend/"+st.backend+"/Attempt/parallel", "ns/op")
		if !ok || !okF {
			continue
		}
		rows = append(rows, ratioRow{
			target:   st.backend + ": throughput under RunParallel vs " + st.label + " (reference)",
			what:     st.backend + " Attempt parallel",
			measured: fmt.Sprintf("%s vs %s per op", fmtNs(v), fmtNs(floor)),
			ratio:    fmt.Sprintf("×%.2f", v/floor),
			verdict:  "—",
		})
	}
	if v, ok := s.median("BenchmarkBackend/bolt/Failure/parallel", "ops/s"); ok {
		rows = append(rows, ratioRow{
			target:   "bolt: failure flood ≥ 10,000 attempts/s with fsync",
			what:     "bolt Failure parallel",
			measured: fmt.Sprintf("%.0f attempts/s", v),
			ratio:    fmt.Sprintf("×%.2f of 10,000", v/10000),
			verdict:  metMark(v >= 10000),
		})
	}
	return rows
}

// peerRows compares defender's 2-key attempt with the best (fastest) peer's
// 1-key check on the same store, from bench/peers' BenchmarkPaired (the two
// interleaved in one loop), and lists every pairing for reference.
func peerRows(s *benchSet) []ratioRow {
	var rows, all []ratioRow
	for _, store := range []string{"redis", "memory"} {
		best, bestName := math.Inf(1), ""
		pre := "BenchmarkPaired/" + store + "/"
		for _, n := range s.names {
			lib, ok := strings.CutPrefix(n, pre)
			if !ok || lib == "ping" || strings.Contains(lib, "/") {
				continue
			}
			peerNs, ok1 := s.median(n, "peer-ns")
			ours, _ := s.median(n, "defender-ns")
			q, ok2 := s.median(n, "x-peer")
			if !ok1 || !ok2 {
				continue
			}
			all = append(all, ratioRow{target: "vs " + lib + " (reference)", what: store + ", paired",
				measured: fmt.Sprintf("defender %s vs %s %s", fmtNs(ours), lib, fmtNs(peerNs)), ratio: fmt.Sprintf("×%.2f", q), verdict: "—"})
			if peerNs < best {
				best, bestName = peerNs, lib
			}
		}
		if bestName == "" {
			continue
		}
		n := pre + bestName
		ours, _ := s.median(n, "defender-ns")
		q, _ := s.median(n, "x-peer")
		rows = append(rows, ratioRow{
			target:   "vs peers: 2-key attempt no slower than the best peer's 1-key check",
			what:     store + " serial, paired with " + bestName,
			measured: fmt.Sprintf("defender %s vs %s %s", fmtNs(ours), bestName, fmtNs(best)),
			ratio:    fmt.Sprintf("×%.2f", q),
			verdict:  metMark(q <= 1),
		})
	}
	return append(rows, all...)
}

func writeRows(b *strings.Builder, rows []ratioRow) {
	b.WriteString("| target | measurement | measured (median) | ratio | verdict |\n|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s |\n", r.target, r.what, r.measured, r.ratio, r.verdict)
	}
}

// allTable lists every benchmark's medians.
func allTable(b *strings.Builder, s *benchSet) {
	units := []string{"ns/op", "ops/s", "B/op", "allocs/op", "B/key", "keys/attacker", "keys-held", "heap-MB", "evictions",
		"scripts/op", "cmds/op", "keyops/op", "net-B/op", "server-us/op", "op-ns", "floor-ns", "x-floor", "defender-ns", "peer-ns", "x-peer"}
	b.WriteString("| benchmark | runs | ns/op | ops/s | B/op | allocs/op | other |\n|---|---|---|---|---|---|---|\n")
	for _, n := range s.names {
		cell := func(u string) string {
			v, ok := s.median(n, u)
			if !ok {
				return ""
			}
			return strconv.FormatFloat(v, 'f', -1, 64)
		}
		var other []string
		for _, u := range units[4:] {
			if v, ok := s.median(n, u); ok {
				other = append(other, fmt.Sprintf("%.4g %s", v, u))
			}
		}
		ns, _ := s.median(n, "ns/op")
		ops, _ := s.median(n, "ops/s")
		fmt.Fprintf(b, "| %s | %d | %s | %.0f | %s | %s | %s |\n", strings.TrimPrefix(n, "Benchmark"), len(s.values[n]["ns/op"]),
			fmtNs(ns), ops, cell("B/op"), cell("allocs/op"), strings.Join(other, ", "))
	}
}

func runReport(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	benchPath := fs.String("bench", "", "go test -bench output of bench/ (default ROOT/bench/results/bench.txt)")
	peersPath := fs.String("peers", "", "go test -bench output of bench/peers (default ROOT/bench/results/peers.txt)")
	out := fs.String("out", "", "directory for bench.md and the charts (default ROOT/bench/results)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *benchPath == "" || *peersPath == "" || *out == "" {
		wd, _ := os.Getwd()
		root, err := rootDir(wd)
		if err != nil {
			return err
		}
		res := filepath.Join(root, "bench", "results")
		if *benchPath == "" {
			*benchPath = filepath.Join(res, "bench.txt")
		}
		if *peersPath == "" {
			*peersPath = filepath.Join(res, "peers.txt")
		}
		if *out == "" {
			*out = res
		}
	}
	s := &benchSet{values: map[string]map[string][]float64{}}
	for _, p := range []string{*benchPath, *peersPath} {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		one, err := parseBench(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		for _, n := range one.names {
			s.names = append(s.names, n)
			s.values[n] = one.values[n]
		}
	}
	md := benchMarkdown(s)
	if err := os.WriteFile(filepath.Join(*out, "bench.md"), []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Fprint(stdout, md)
	return peersChart(s, filepath.Join(*out, "peers.png"))
}

func benchMarkdown(s *benchSet) string {
	var b strings.Builder
	b.WriteString("# Benchmarks\n\nGenerated by `make bench` from bench/results/bench.txt (bench/) and bench/results/peers.txt (bench/peers): medians over the -count runs; benchstat's table is in benchstat.txt. Every ratio compares two measurements of the same run. Method: docs/benchmarks.md.\n\n")
	b.WriteString("## Targets (docs/benchmarks.md)\n\n")
	writeRows(&b, append(ratios(s), peerRows(s)...))
	b.WriteString("\n## Memory per tracked key\n\n| store | state | bytes per key | keys per attacker |\n|---|---|---|---|\n")
	for _, n := range s.names {
		rest, ok := strings.CutPrefix(n, "BenchmarkKeyMemory/")
		if !ok || strings.HasPrefix(rest, "memory-bound") {
			continue
		}
		v, _ := s.median(n, "B/key")
		k, _ := s.median(n, "keys/attacker")
		st, state, _ := strings.Cut(rest, "/")
		fmt.Fprintf(&b, "| %s | %s | %.0f | %.2f |\n", st, state, v, k)
	}
	if k, ok := s.median("BenchmarkKeyMemory/memory-bound", "keys-held"); ok {
		h, _ := s.median("BenchmarkKeyMemory/memory-bound", "heap-MB")
		e, _ := s.median("BenchmarkKeyMemory/memory-bound", "evictions")
		fmt.Fprintf(&b, "\nMemory store bounded at 100,000 keys after 10^6 distinct attackers (2·10^6 counters): %.0f keys held, heap grew %.1f MB, %.0f counters evicted (blocks are never evicted).\n", k, h, e)
	}
	b.WriteString("\n## Peers: per-operation cost\n\n![peers](peers.png)\n\n## Every benchmark (medians)\n\n")
	allTable(&b, s)
	return b.String()
}

// peersChart draws ns/op of every BenchmarkPeers entry, per store.
func peersChart(s *benchSet, path string) error {
	var libs []string
	seen := map[string]bool{}
	for _, n := range s.names {
		rest, ok := strings.CutPrefix(n, "BenchmarkPeers/")
		if !ok {
			continue
		}
		parts := strings.Split(rest, "/")
		if len(parts) != 3 || seen[parts[1]] {
			continue
		}
		seen[parts[1]] = true
		libs = append(libs, parts[1])
	}
	if len(libs) == 0 {
		return nil
	}
	var ss []series
	for _, store := range []string{"redis", "memory"} {
		for _, mode := range []string{"serial", "parallel"} {
			sr := series{name: store + " " + mode}
			for _, l := range libs {
				v, _ := s.median("BenchmarkPeers/"+store+"/"+l+"/"+mode, "ns/op")
				sr.values = append(sr.values, v)
			}
			ss = append(ss, sr)
		}
	}
	return barChart(path, "per-operation cost (ns/op, log scale; defender-attempt = 2 keys)", "ns/op", libs, ss, true)
}
