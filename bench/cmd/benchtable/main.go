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
	if err := sc.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	fmt.Fprintf(w, "## Overhead\n\nMedians of %d runs each; one call answered 200 at the first attempt. "+
		"`payretry − bare` is the layer's own cost.\n\n", runs(vals))
	for _, u := range units {
		fmt.Fprintf(w, "### %s\n\n", u.title)
		fmt.Fprintf(w, "| case | %s | payretry − bare | payretry ÷ retryablehttp | payretry ÷ failsafe |\n",
			strings.Join(clients, " | "))
		fmt.Fprintf(w, "| --- |%s ---: | ---: | ---: |\n", strings.Repeat(" ---: |", len(clients)))
		for _, c := range cases {
			med := map[string]float64{}
			cells := []string{label(c)}
			for _, cl := range clients {
				vs := vals[key{c, u.unit, cl}]
				if len(vs) == 0 {
					cells = append(cells, "—")
					continue
				}
				med[cl] = bench.MedianOf(vs)
				cells = append(cells, fmt.Sprintf(u.format, med[cl]))
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

// label renders a case as "inmem POST, sequential".
func label(c string) string {
	parts := strings.Split(c, "/")
	mode := "sequential"
	if parts[0] == "BenchmarkOverheadParallel" {
		mode = "parallel"
	}
	var vs []string
	for _, p := range parts[1:] {
		if _, v, ok := strings.Cut(p, "="); ok {
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
