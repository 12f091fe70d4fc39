// Command benchtable turns the raw output of the overhead benchmarks
// (go test -bench . -benchmem -count N) into markdown tables: for each unit,
// the median per case and client; each layer's cost over bare; and, per
// payretry client, its cost over bare next to the best peer's, against issue
// 12's target. benchstat gives the confidence intervals; this gives the
// tables that BENCHMARKS.md shows.
//
//	go run ./cmd/benchtable results/overhead.txt
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/payretry/payretry/bench"
)

// clients are the columns, in order; peers are the layers payretry's
// clients are held against; ours are payretry's clients.
var (
	clients = bench.OverheadClients
	peers   = []string{bench.Retryablehttp, bench.Failsafe}
	bounded = []string{bench.RetryablehttpBounded, bench.FailsafeBounded}
	ours    = append([]string{bench.Payretry}, bench.Presets...)
)

var units = []struct{ unit, title string }{
	{"ns/op", "time per call (ns/op)"},
	{"B/op", "memory per call (B/op)"},
	{"allocs/op", "allocations per call (allocs/op)"},
}

// key is one series of values: a case (the benchmark name but the client),
// a unit and a client.
type key struct{ bench, unit, client string }

func main() {
	var in io.Reader = os.Stdin
	if len(os.Args) > 1 {
		f, err := os.Open(os.Args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchtable:", err)
			os.Exit(1)
		}
		defer f.Close()
		in = f
	}
	vals, cases, err := parse(in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	write(w, vals, cases)
}

// write renders the tables.
func write(w io.Writer, vals map[key][]float64, cases []string) {
	fmt.Fprintf(w, "## Overhead\n\nMedians of %d runs each; one call answered 200 at the first attempt. "+
		"A layer's cost over bare is its median minus bare's.\n\n", runs(vals))
	for _, u := range units {
		fmt.Fprintf(w, "### %s\n\n", u.title)
		fmt.Fprintf(w, "| case | %s |\n", strings.Join(clients, " | "))
		fmt.Fprintf(w, "| --- |%s\n", strings.Repeat(" ---: |", len(clients)))
		for _, c := range cases {
			med := medians(vals, c, u.unit)
			cells := []string{label(c)}
			for _, cl := range clients {
				cells = append(cells, cell("%.0f", med, cl))
			}
			fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
		}
		fmt.Fprintln(w)
	}
	overheads(w, vals, cases)
	targets(w, vals, cases, "against the best peer (issue 12)", " (retryablehttp or failsafe-go as their documentation sets them up: no attempt time-out)", peers)
	targets(w, vals, cases, "against the best peer with the same attempt time-out",
		" among the peers bounded like the presets, 20 s per attempt (retryablehttp-20s, failsafe-20s)", bounded)
}

func cell(format string, m map[string]float64, client string) string {
	if v, ok := m[client]; ok {
		return fmt.Sprintf(format, v)
	}
	return "—"
}

// parse reads raw benchmark output: the values per case, unit and client,
// and the cases in their order.
func parse(in io.Reader) (map[key][]float64, []string, error) {
	vals := map[key][]float64{}
	var cases []string
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := f[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i] // GOMAXPROCS suffix
			}
		}
		c, client, ok := splitClient(name)
		if !ok {
			continue
		}
		if !slices.Contains(cases, c) {
			cases = append(cases, c)
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			k := key{c, f[i+1], client}
			vals[k] = append(vals[k], v)
		}
	}
	return vals, cases, sc.Err()
}

// medians returns the median of each client's values for one case and unit.
func medians(vals map[key][]float64, c, unit string) map[string]float64 {
	med := map[string]float64{}
	for _, cl := range clients {
		if vs := vals[key{c, unit, cl}]; len(vs) > 0 {
			med[cl] = bench.MedianOf(vs)
		}
	}
	return med
}

// costs returns each client's median minus bare's, for one case and unit;
// nil without bare.
func costs(vals map[key][]float64, c, unit string) map[string]float64 {
	med := medians(vals, c, unit)
	b, ok := med[bench.Bare]
	if !ok {
		return nil
	}
	over := map[string]float64{}
	for cl, v := range med {
		if cl != bench.Bare {
			over[cl] = v - b
		}
	}
	return over
}

// inmem reports whether a case runs on the in-memory base, where the socket
// does not drown the layer's cost.
func inmem(c string) bool { return strings.Contains(c, "/base=inmem/") }

// overheads writes each layer's cost over bare, of the in-memory cases.
func overheads(w io.Writer, vals map[key][]float64, cases []string) {
	layers := clients[1:]
	fmt.Fprintf(w, "### cost over bare (in-memory base)\n\n")
	fmt.Fprintf(w, "| case | unit | %s |\n", strings.Join(layers, " | "))
	fmt.Fprintf(w, "| --- | --- |%s\n", strings.Repeat(" ---: |", len(layers)))
	for _, c := range cases {
		if !inmem(c) {
			continue
		}
		for _, u := range []struct{ unit, name string }{{"ns/op", "ns"}, {"allocs/op", "allocs"}} {
			over := costs(vals, c, u.unit)
			if over == nil {
				continue
			}
			cells := []string{label(c), u.name}
			for _, cl := range layers {
				cells = append(cells, cell("%+.0f", over, cl))
			}
			fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
		}
	}
	fmt.Fprintln(w)
}

// likeForLike reports whether every client of case c gets the same request
// and sends it as it is: the in-memory cases with the caller's ids
// (key=caller). Without them payretry's clients make ids the peers do not.
func likeForLike(c string) bool { return inmem(c) && strings.Contains(c, "/key=caller") }

// best returns the one of peers with the least cost in over, and that cost.
func best(over map[string]float64, peers []string) (string, float64, bool) {
	name, cost, found := "", 0.0, false
	for _, p := range peers {
		if v, ok := over[p]; ok && (!found || v < cost) {
			name, cost, found = p, v, true
		}
	}
	return name, cost, found
}

// targets writes, for each payretry client and like-for-like case, its cost
// over bare next to the best of peers', and issue 12's target: at most the
// best peer's in ns/op and in allocs/op; stretch: at most half.
func targets(w io.Writer, vals map[key][]float64, cases []string, title, about string, peers []string) {
	fmt.Fprintf(w, "### %s\n\n", title)
	fmt.Fprintf(w, "Target: on every preset, payretry's cost over bare is at most the best peer's, in ns/op and "+
		"in allocs/op, like for like (the in-memory cases with the caller's ids, where every client gets "+
		"the same request); stretch: at most half. The best peer is the one with the lesser cost, per unit%s.\n\n", about)
	fmt.Fprintf(w, "| client | case | ns over bare | best peer's | ÷ best | allocs over bare | best peer's | ÷ best | target | stretch |\n")
	fmt.Fprintf(w, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |\n")
	sums := map[string]*summary{}
	for _, cl := range ours {
		sum := &summary{}
		sums[cl] = sum
		for _, c := range cases {
			if !likeForLike(c) {
				continue
			}
			cells := []string{cl, label(c)}
			ratios := map[string]float64{}
			var target, stretch []string
			complete := true
			for _, u := range []struct{ unit, name string }{{"ns/op", "ns"}, {"allocs/op", "allocs"}} {
				over := costs(vals, c, u.unit)
				v, ok := over[cl]
				peer, q, okq := best(over, peers)
				if !ok || !okq {
					cells = append(cells, "—", "—", "—")
					complete = false
					continue
				}
				ratio := "—"
				if q > 0 {
					ratio = fmt.Sprintf("%.2f×", v/q)
					ratios[u.name] = v / q
				}
				cells = append(cells, fmt.Sprintf("%+.0f", v), fmt.Sprintf("%+.0f (%s)", q, peer), ratio)
				if v > q {
					target = append(target, u.name)
				}
				if v > q/2 {
					stretch = append(stretch, u.name)
				}
			}
			if !complete {
				continue
			}
			cells = append(cells, verdict(target), verdict(stretch))
			sum.add(len(target) == 0, len(stretch) == 0, ratios)
			fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
		}
	}
	fmt.Fprintln(w)
	for _, cl := range ours {
		fmt.Fprintf(w, "- %s: %s\n", cl, sums[cl])
	}
	fmt.Fprintln(w)
}

// summary is one client's verdicts over the like-for-like cases.
type summary struct {
	rows, met, stretch int
	lo, hi             map[string]float64 // the least and greatest ratio to the best peer, per unit
}

func (s *summary) add(met, stretch bool, ratios map[string]float64) {
	s.rows++
	if met {
		s.met++
	}
	if stretch {
		s.stretch++
	}
	if s.lo == nil {
		s.lo, s.hi = map[string]float64{}, map[string]float64{}
	}
	for u, r := range ratios {
		if lo, ok := s.lo[u]; !ok || r < lo {
			s.lo[u] = r
		}
		s.hi[u] = max(s.hi[u], r)
	}
}

// String renders "target met in 1 of 4 cases, stretch in 0; ÷ best peer
// 0.80-1.20× in ns/op, 0.73× in allocs/op."
func (s *summary) String() string {
	if s.rows == 0 {
		return "not measured."
	}
	out := fmt.Sprintf("target met in %d of %d cases, stretch in %d", s.met, s.rows, s.stretch)
	if s.met < s.rows {
		out = fmt.Sprintf("target **not met**: met in %d of %d cases, stretch in %d", s.met, s.rows, s.stretch)
	}
	var rs []string
	for _, u := range []string{"ns", "allocs"} {
		lo, ok := s.lo[u]
		switch {
		case !ok:
		case fmt.Sprintf("%.2f", lo) == fmt.Sprintf("%.2f", s.hi[u]):
			rs = append(rs, fmt.Sprintf("%.2f× in %s/op", lo, u))
		default:
			rs = append(rs, fmt.Sprintf("%.2f-%.2f× in %s/op", lo, s.hi[u], u))
		}
	}
	if len(rs) > 0 {
		out += "; ÷ best peer " + strings.Join(rs, ", ")
	}
	return out + "."
}

// verdict renders the units a target was missed in: "met" when none.
func verdict(missed []string) string {
	if len(missed) == 0 {
		return "met"
	}
	return "**not met** (" + strings.Join(missed, ", ") + ")"
}

// splitClient splits "BenchmarkOverhead/base=inmem/method=POST/client=bare"
// into the case and the client.
func splitClient(name string) (string, string, bool) {
	i := strings.LastIndex(name, "/client=")
	if i < 0 {
		return "", "", false
	}
	return name[:i], name[i+len("/client="):], true
}

// label renders a case as "inmem POST with the caller's key, sequential".
// key=caller is the caller's key for a POST and its correlation id for a
// GET (all a GET carries); key=none is neither.
func label(c string) string {
	parts := strings.Split(c, "/")
	mode := "sequential"
	if parts[0] == "BenchmarkOverheadParallel" {
		mode = "parallel"
	}
	kv := map[string]string{}
	var vs []string
	for _, p := range parts[1:] {
		name, v, ok := strings.Cut(p, "=")
		switch {
		case !ok:
			vs = append(vs, p)
		case name == "key":
			kv[name] = v
		default:
			kv[name] = v
			vs = append(vs, v)
		}
	}
	s := strings.Join(vs, " ")
	what := "key"
	if kv["method"] == "GET" {
		what = "correlation id"
	}
	switch kv["key"] {
	case "caller":
		s += " with the caller's " + what
	case "none":
		s += " without a " + what
	}
	return s + ", " + mode
}

func runs(vals map[key][]float64) int {
	n := 0
	for _, vs := range vals {
		n = max(n, len(vs))
	}
	return n
}
