// Command benchtable turns the raw output of the overhead benchmarks
// (go test -bench . -benchmem -count N) into markdown tables: for each unit,
// the median per case and client, payretry's cost over bare, and payretry ÷
// each peer. benchstat gives the confidence intervals; this gives the table
// that BENCHMARKS.md shows.
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

var clients = bench.Peers

var units = []struct{ unit, title, format string }{
	{"ns/op", "time per call (ns/op)", "%.0f"},
	{"B/op", "memory per call (B/op)", "%.0f"},
	{"allocs/op", "allocations per call (allocs/op)", "%.0f"},
}

// sample is one benchmark line: its case (everything but the client), its
// client and its values per unit.
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
		"`payretry − bare` is the layer's own cost.\n\n", runs(vals))
	for _, u := range units {
		fmt.Fprintf(w, "### %s\n\n", u.title)
		fmt.Fprintf(w, "| case | %s | payretry − bare | payretry ÷ retryablehttp | payretry ÷ failsafe |\n",
			strings.Join(clients, " | "))
		fmt.Fprintf(w, "| --- |%s ---: | ---: | ---: |\n", strings.Repeat(" ---: |", len(clients)))
		for _, c := range cases {
			med := medians(vals, c, u.unit)
			cells := []string{label(c)}
			for _, cl := range clients {
				if v, ok := med[cl]; ok {
					cells = append(cells, fmt.Sprintf(u.format, v))
				} else {
					cells = append(cells, "—")
				}
			}
			p, okp := med["payretry"]
			b, okb := med["bare"]
			if okp && okb {
				cells = append(cells, fmt.Sprintf("%+.0f", p-b))
			} else {
				cells = append(cells, "—")
			}
			for _, peer := range []string{"retryablehttp", "failsafe"} {
				q, ok := med[peer]
				if !okp || !ok || q == 0 {
					cells = append(cells, "—")
					continue
				}
				cells = append(cells, fmt.Sprintf("%.2f×", p/q))
			}
			fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
		}
		fmt.Fprintln(w)
	}
	overheads(w, vals, cases)
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

// overheads writes each layer's cost over bare, of the in-memory cases
// (where the socket does not drown it), and payretry's as a share of each
// peer's.
func overheads(w io.Writer, vals map[key][]float64, cases []string) {
	peers := []string{"retryablehttp", "failsafe"}
	fmt.Fprintf(w, "### cost over bare (in-memory base)\n\n")
	fmt.Fprintf(w, "| case | unit | payretry | retryablehttp | failsafe | ÷ retryablehttp's | ÷ failsafe's |\n")
	fmt.Fprintf(w, "| --- | --- | ---: | ---: | ---: | ---: | ---: |\n")
	for _, c := range cases {
		if !strings.Contains(c, "/base=inmem/") {
			continue
		}
		for _, u := range []struct{ unit, name, format string }{
			{"ns/op", "ns", "%+.0f"}, {"allocs/op", "allocs", "%+.0f"},
		} {
			med := medians(vals, c, u.unit)
			b, ok := med["bare"]
			if !ok {
				continue
			}
			over := map[string]float64{}
			cells := []string{label(c), u.name}
			for _, cl := range append([]string{"payretry"}, peers...) {
				v, ok := med[cl]
				if !ok {
					cells = append(cells, "—")
					continue
				}
				over[cl] = v - b
				cells = append(cells, fmt.Sprintf(u.format, v-b))
			}
			for _, peer := range peers {
				p, okp := over["payretry"]
				q, ok := over[peer]
				if !okp || !ok || q <= 0 {
					cells = append(cells, "—")
					continue
				}
				cells = append(cells, fmt.Sprintf("%.2f×", p/q))
			}
			fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
		}
	}
	fmt.Fprintln(w)
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

// label renders a case as "inmem POST, sequential"; a caller's key shows
// as "with the caller's key" (key=none, the default, does not show).
func label(c string) string {
	parts := strings.Split(c, "/")
	mode := "sequential"
	if parts[0] == "BenchmarkOverheadParallel" {
		mode = "parallel"
	}
	var vs []string
	for _, p := range parts[1:] {
		name, v, ok := strings.Cut(p, "=")
		switch {
		case !ok || name == "key" && v == "none":
		case name == "key":
			vs = append(vs, "with the "+v+"'s key")
		default:
			vs = append(vs, v)
		}
	}
	return strings.Join(vs, " ") + ", " + mode
}

func runs(vals map[key][]float64) int {
	n := 0
	for _, vs := range vals {
		n = max(n, len(vs))
	}
	return n
}
