// Command scenarios runs the scenarios of BENCHMARKS.md (goodput, outage,
// duplicates, mild faults) against loopback providers, one client after
// another, and prints a markdown table per scenario with the median of each
// metric over the runs. Raw results go to -raw as JSON; -svg writes the
// charts of the goodput and outage scenarios (their first run).
//
//	go run ./cmd/scenarios -runs 5 -scenario goodput,outage,duplicates   # about 5 minutes
//	go run ./cmd/scenarios -runs 1 -scenario outage -svg results          # and results/outage.svg
//	go run ./cmd/scenarios -runs 1 -scenario mildfaults                   # about 3.5 minutes
//	go run ./cmd/scenarios -runs 1 -scenario mildfaults -clients orzcash/payretry-orzcash,orzcash/bare
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
	"slices"
	"strings"
	"time"

	"github.com/payretry/payretry/bench"
	"github.com/payretry/payretry/payretrytest"
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
		{"mildfaults", mildClients(),
			func(ctx context.Context, c string) ([]bench.Row, error) {
				provider, client, _ := strings.Cut(c, "/")
				r, err := bench.RunMildFaults(ctx, bench.DefaultMildFaults(), payretrytest.Provider(provider), client)
				return []bench.Row{r}, err
			}},
	}
}

// mildClients names the mild-faults cases "provider/client".
func mildClients() []string {
	var out []string
	for _, p := range bench.MildFaultsProviders {
		for _, c := range bench.MildFaultsClients[p] {
			out = append(out, string(p)+"/"+c)
		}
	}
	return out
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
	which := flag.String("scenario", "all", "comma-separated: goodput, outage, duplicates, mildfaults; or all")
	only := flag.String("clients", "", "comma-separated clients to run (mild faults: provider/client, or a client for both); empty for all")
	asJSON := flag.Bool("json", false, "print the raw results and medians as JSON instead of markdown")
	raw := flag.String("raw", "", "file for the raw results (JSON), such as results/scenarios.json (bench/run writes that one); empty for none")
	svg := flag.String("svg", "", "directory for the charts of the goodput and outage scenarios (first run), such as results; empty for none")
	svgRef := flag.String("svgref", "bench/results/", "what the markdown puts before a chart's file name (relative to BENCHMARKS.md)")
	title := flag.String("title", "Scenarios", "heading of the markdown")
	flag.Parse()
	if *runs < 1 {
		fatal(fmt.Errorf("-runs must be at least 1"))
	}
	chosen, err := choose(scenarios(), *which, *only)
	if err != nil {
		fatal(err)
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
				fmt.Fprintf(os.Stderr, "%-10s run %d/%d %-32s %5.1fs\n", s.name, run, *runs, c, time.Since(t0).Seconds())
			}
		}
	}
	for _, s := range chosen {
		out.Medians = append(out.Medians, bench.Median(filter(out.Raw, s.name))...)
	}

	charts := map[string]string{} // scenario -> file name
	if *svg != "" {
		if charts, err = writeCharts(*svg, out.Raw); err != nil {
			fatal(err)
		}
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
	writeMarkdown(w, *title, out, chosen, charts, *svgRef)
}

// choose returns the scenarios named in which (comma-separated, or "all"),
// each with only the clients in only (comma-separated; empty for all).
func choose(all []scenario, which, only string) ([]scenario, error) {
	names := strings.Split(which, ",")
	var keep []string
	if only != "" {
		keep = strings.Split(only, ",")
	}
	var chosen []scenario
	for _, s := range all {
		if which != "all" && !slices.Contains(names, s.name) {
			continue
		}
		if keep != nil {
			s.clients = slices.DeleteFunc(slices.Clone(s.clients), func(c string) bool {
				_, client, found := strings.Cut(c, "/")
				return !slices.Contains(keep, c) && !(found && slices.Contains(keep, client))
			})
		}
		if len(s.clients) > 0 {
			chosen = append(chosen, s)
		}
	}
	if len(chosen) == 0 {
		return nil, fmt.Errorf("nothing to run for -scenario %q -clients %q (scenarios: goodput, outage, duplicates, mildfaults, all)", which, only)
	}
	return chosen, nil
}

// writeCharts writes the charts of the goodput and outage scenarios, from
// their first run in raw, into dir, and returns their file names by
// scenario.
func writeCharts(dir string, raw []bench.Row) (map[string]string, error) {
	charts := map[string]bench.Chart{}
	if rows := firstRun(raw, "goodput"); len(rows) > 0 {
		charts["goodput"] = bench.GoodputChart(bench.DefaultGoodput(), rows)
	}
	if rows := firstRun(raw, "outage"); len(rows) > 0 {
		charts["outage"] = bench.OutageChart(bench.DefaultOutage(), rows)
	}
	if len(charts) == 0 {
		return nil, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	files := map[string]string{}
	for name, c := range charts {
		file := name + ".svg"
		f, err := os.Create(filepath.Join(dir, file))
		if err != nil {
			return nil, err
		}
		err = c.WriteSVG(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, err
		}
		files[name] = file
	}
	return files, nil
}

// firstRun returns the rows of scenario's first run.
func firstRun(raw []bench.Row, scenario string) []bench.Row {
	var out []bench.Row
	for _, r := range raw {
		if r.Scenario == scenario && r.Run == 1 {
			out = append(out, r)
		}
	}
	return out
}

func writeMarkdown(w io.Writer, title string, out Output, chosen []scenario, charts map[string]string, svgRef string) {
	m := out.Machine
	fmt.Fprintf(w, "## %s\n\nMedians of %d runs each; %s, %s, %d CPUs (%s), %s.\n\n",
		title, m.RunsOf, m.Go, m.OS, m.CPUs, m.CPU, m.Date)
	for _, s := range chosen {
		medians := filter(out.Medians, s.name)
		bench.WriteMarkdown(w, bench.Tables[s.name], medians)
		if s.name == "mildfaults" {
			bench.WriteMildTargets(w, medians)
		}
		if file, ok := charts[s.name]; ok {
			fmt.Fprintf(w, "![%s: requests (and 429s) per 100 ms at the provider, one line per client, first run](%s%s)\n\n",
				bench.Tables[s.name].Title, svgRef, file)
		}
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
