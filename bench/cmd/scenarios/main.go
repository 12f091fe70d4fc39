// Command scenarios runs the goodput, outage and duplicates scenarios of
// BENCHMARKS.md against loopback providers, one client after another, and
// prints a markdown table per scenario with the median of each metric over
// the runs. Raw results go to -raw as JSON.
//
//	go run ./cmd/scenarios -runs 5                 # all scenarios, about 4-5 minutes
//	go run ./cmd/scenarios -runs 1 -scenario outage
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/payretry/payretry/bench"
)

type scenario struct {
	name    string
	clients []string
	// run runs one client once; variants return one row each.
	run func(ctx context.Context, client string) ([]bench.Row, error)
}

func scenarios() []scenario {
	return []scenario{
		{"goodput", []string{bench.Bare, bench.Payretry, bench.PayretrySmart, bench.Retryablehttp, bench.Failsafe},
			func(ctx context.Context, c string) ([]bench.Row, error) {
				r, err := bench.RunGoodput(ctx, bench.DefaultGoodput(), c)
				return []bench.Row{r}, err
			}},
		{"outage", bench.Peers,
			func(ctx context.Context, c string) ([]bench.Row, error) {
				r, err := bench.RunOutage(ctx, bench.DefaultOutage(), c)
				return []bench.Row{r}, err
			}},
		{"duplicates", bench.Peers,
			func(ctx context.Context, c string) ([]bench.Row, error) {
				var rows []bench.Row
				for _, key := range []bool{false, true} {
					r, err := bench.RunDuplicates(ctx, bench.DefaultDuplicates(), c, key)
					if err != nil {
						return nil, err
					}
					rows = append(rows, r)
				}
				return rows, nil
			}},
	}
}

// Machine describes where the numbers were measured.
type Machine struct {
	Go     string `json:"go"`
	OS     string `json:"os"`
	CPUs   int    `json:"cpus"`
	CPU    string `json:"cpu"`
	Date   string `json:"date"`
	RunsOf int    `json:"runs"`
}

// Output is what -raw and -json hold.
type Output struct {
	Machine Machine     `json:"machine"`
	Raw     []bench.Row `json:"raw"`
	Medians []bench.Row `json:"medians"`
}

func main() {
	runs := flag.Int("runs", 5, "runs of each client in each scenario; tables show medians")
	which := flag.String("scenario", "all", "goodput, outage, duplicates or all")
	asJSON := flag.Bool("json", false, "print the raw results and medians as JSON instead of markdown")
	raw := flag.String("raw", "", "file for the raw results (JSON), such as results/scenarios.json (bench/run writes that one); empty for none")
	flag.Parse()
	if *runs < 1 {
		fatal(fmt.Errorf("-runs must be at least 1"))
	}
	var chosen []scenario
	for _, s := range scenarios() {
		if *which == "all" || *which == s.name {
			chosen = append(chosen, s)
		}
	}
	if len(chosen) == 0 {
		fatal(fmt.Errorf("unknown -scenario %q (goodput, outage, duplicates or all)", *which))
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	out := Output{Machine: machine(*runs)}
	for _, s := range chosen {
		for run := 1; run <= *runs; run++ {
			for _, c := range s.clients {
				t0 := time.Now()
				rows, err := s.run(ctx, c)
				if err != nil {
					fatal(fmt.Errorf("%s run %d %s: %w", s.name, run, c, err))
				}
				for i := range rows {
					rows[i].Run = run
				}
				out.Raw = append(out.Raw, rows...)
				fmt.Fprintf(os.Stderr, "%-10s run %d/%d %-20s %5.1fs\n", s.name, run, *runs, c, time.Since(t0).Seconds())
			}
		}
	}
	for _, s := range chosen {
		out.Medians = append(out.Medians, bench.Median(filter(out.Raw, s.name))...)
	}

	if *raw != "" {
		if err := os.MkdirAll(filepath.Dir(*raw), 0o755); err != nil {
			fatal(err)
		}
		b, err := json.MarshalIndent(out, "", "  ")
		if err != nil {
			fatal(err)
		}
		if err := os.WriteFile(*raw, append(b, '\n'), 0o644); err != nil {
			fatal(err)
		}
	}
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	if *asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			fatal(err)
		}
		return
	}
	writeMarkdown(w, out, chosen)
}

func writeMarkdown(w io.Writer, out Output, chosen []scenario) {
	m := out.Machine
	fmt.Fprintf(w, "## Scenarios\n\nMedians of %d runs each; %s, %s, %d CPUs (%s), %s.\n\n",
		m.RunsOf, m.Go, m.OS, m.CPUs, m.CPU, m.Date)
	for _, s := range chosen {
		bench.WriteMarkdown(w, bench.Tables[s.name], filter(out.Medians, s.name))
	}
}

func filter(rows []bench.Row, scenario string) []bench.Row {
	var out []bench.Row
	for _, r := range rows {
		if r.Scenario == scenario {
			out = append(out, r)
		}
	}
	return out
}

func machine(runs int) Machine {
	m := Machine{Go: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH, CPUs: runtime.NumCPU(),
		CPU: "unknown CPU", Date: time.Now().UTC().Format("2006-01-02"), RunsOf: runs}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "scenarios:", err)
	os.Exit(1)
}
