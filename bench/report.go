package bench

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

// Column is one column of a scenario's table.
type Column struct {
	Key    string // metric
	Header string
	Format string // fmt verb for the value, such as "%.2f"
}

// Table describes how a scenario is printed.
type Table struct {
	Scenario string
	Title    string
	Variant  string   // header of the variant column; "" for "variant"
	Note     string   // one line under the title
	Columns  []Column // after the client (and variant) columns
	Ratios   []string // metrics whose payretry ÷ peer ratio is printed
}

// Median returns, for each client and variant in the order first seen, a
// row whose metrics are the medians over the runs that have them.
func Median(rows []Row) []Row {
	type id struct{ client, variant string }
	var order []id
	vals := map[id]map[string][]float64{}
	runs := map[id]int{}
	for _, r := range rows {
		k := id{r.Client, r.Variant}
		if _, ok := vals[k]; !ok {
			order = append(order, k)
			vals[k] = map[string][]float64{}
		}
		runs[k]++
		for m, v := range r.Metrics {
			vals[k][m] = append(vals[k][m], v)
		}
	}
	out := make([]Row, 0, len(order))
	for _, k := range order {
		med := map[string]float64{}
		for m, vs := range vals[k] {
			med[m] = MedianOf(vs)
		}
		scenario := ""
		for _, r := range rows {
			if r.Client == k.client && r.Variant == k.variant {
				scenario = r.Scenario
				break
			}
		}
		out = append(out, Row{Scenario: scenario, Run: runs[k], Client: k.client, Variant: k.variant, Metrics: med})
	}
	return out
}

// MedianOf returns the median of vs, NaN for none.
func MedianOf(vs []float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// WriteMarkdown prints t's table of medians, one row per client (and
// variant), then the ratios of each payretry row to each peer's.
func WriteMarkdown(w io.Writer, t Table, medians []Row) {
	hasVariant := slices.ContainsFunc(medians, func(r Row) bool { return r.Variant != "" })
	fmt.Fprintf(w, "### %s\n\n", t.Title)
	if t.Note != "" {
		fmt.Fprintf(w, "%s\n\n", t.Note)
	}
	head := []string{"client"}
	if hasVariant {
		head = append(head, cmp.Or(t.Variant, "variant"))
	}
	for _, c := range t.Columns {
		head = append(head, c.Header)
	}
	writeRow(w, head)
	sep := make([]string, len(head))
	for i := range sep {
		sep[i] = "---"
		if i >= len(head)-len(t.Columns) {
			sep[i] = "---:"
		}
	}
	writeRow(w, sep)
	for _, r := range medians {
		cells := []string{r.Client}
		if hasVariant {
			cells = append(cells, r.Variant)
		}
		for _, c := range t.Columns {
			v, ok := r.Metrics[c.Key]
			if !ok || math.IsNaN(v) {
				cells = append(cells, "—")
				continue
			}
			cells = append(cells, fmt.Sprintf(c.Format, v))
		}
		writeRow(w, cells)
	}
	fmt.Fprintln(w)
	writeRatios(w, t, medians, hasVariant)
}

// writeRatios prints payretry ÷ peer for t.Ratios, for every payretry row
// and every retrying peer row of the same variant.
func writeRatios(w io.Writer, t Table, medians []Row, hasVariant bool) {
	if len(t.Ratios) == 0 {
		return
	}
	header := map[string]string{}
	for _, c := range t.Columns {
		header[c.Key] = c.Header
	}
	head := []string{"payretry ÷ peer"}
	if hasVariant {
		head = append(head, cmp.Or(t.Variant, "variant"))
	}
	for _, k := range t.Ratios {
		head = append(head, header[k])
	}
	var lines [][]string
	for _, p := range medians {
		if !strings.HasPrefix(p.Client, Payretry) {
			continue
		}
		for _, q := range medians {
			if q.Client != Retryablehttp && q.Client != Failsafe || q.Variant != p.Variant {
				continue
			}
			cells := []string{p.Client + " ÷ " + q.Client}
			if hasVariant {
				cells = append(cells, p.Variant)
			}
			for _, k := range t.Ratios {
				cells = append(cells, ratio(p.Metrics, q.Metrics, k))
			}
			lines = append(lines, cells)
		}
	}
	if len(lines) == 0 {
		return
	}
	writeRow(w, head)
	sep := make([]string, len(head))
	for i := range sep {
		sep[i] = "---"
		if i >= len(head)-len(t.Ratios) {
			sep[i] = "---:"
		}
	}
	writeRow(w, sep)
	for _, l := range lines {
		writeRow(w, l)
	}
	fmt.Fprintln(w)
}

func ratio(a, b map[string]float64, k string) string {
	x, okx := a[k]
	y, oky := b[k]
	switch {
	case !okx || !oky || math.IsNaN(x) || math.IsNaN(y):
		return "—"
	case y == 0 && x == 0:
		return "both 0"
	case y == 0:
		return "peer 0"
	}
	return fmt.Sprintf("%.2f×", x/y)
}

func writeRow(w io.Writer, cells []string) {
	fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
}

// Tables are the published tables of scenarios 2 to 5.
var Tables = map[string]Table{
	"goodput": {
		Scenario: "goodput",
		Title:    "Goodput under a rate limit",
		Note: "100 requests/s per API key in fixed windows aligned to unix seconds; 8 workers, 600 POSTs; " +
			"ideal: 6 windows, goodput 1.00 (payments answered 200 ÷ (windows spanned × 100)).",
		Columns: []Column{
			{"elapsed_s", "elapsed (s)", "%.2f"},
			{"windows", "windows", "%.0f"},
			{"ok", "paid", "%.0f"},
			{"goodput", "goodput ÷ limit", "%.2f"},
			{"throttled", "429s", "%.0f"},
			{"throttled_pct", "429s % of requests", "%.1f"},
			{"attempts_per_payment", "attempts/payment", "%.2f"},
			{"failed", "failed", "%.0f"},
		},
		Ratios: []string{"elapsed_s", "goodput", "throttled", "attempts_per_payment"},
	},
	"outage": {
		Scenario: "outage",
		Title:    "Outage",
		Note: "50 payments/s for 6 s (open loop, 10 s deadline each); the provider answers 503 (no Retry-After) " +
			"to everything for the first 3 s.",
		Columns: []Column{
			{"outage_payments", "payments in outage", "%.0f"},
			{"attempts_per_outage_payment", "attempts/outage payment", "%.2f"},
			{"outage_rps", "provider req/s in outage", "%.1f"},
			{"recovery_ms", "recovery → first 200 (ms)", "%.1f"},
			{"failed", "failed (of 300)", "%.0f"},
			{"requests", "requests", "%.0f"},
		},
		Ratios: []string{"attempts_per_outage_payment", "outage_rps", "failed"},
	},
	"duplicates": {
		Scenario: "duplicates",
		Title:    "Duplicates",
		Note: "500 payments, 50 workers; the ledger executes each request, then stalls 500 ms on a seeded 20 % " +
			"of requests (replays included); attempt timeout 100 ms; a request whose Idempotency-Key was executed " +
			"gets the stored answer.",
		Columns: []Column{
			{"duplicates", "executed twice+", "%.0f"},
			{"failed", "failed calls", "%.0f"},
			{"failed_but_charged", "failed but charged", "%.0f"},
			{"lost", "never executed", "%.0f"},
			{"attempts_per_payment", "attempts/payment", "%.2f"},
			{"replays", "replays", "%.0f"},
			{"elapsed_s", "elapsed (s)", "%.2f"},
		},
		Ratios: []string{"duplicates", "failed", "attempts_per_payment"},
	},
	"mildfaults": {
		Scenario: "mildfaults",
		Title:    "Mild faults behind a gateway",
		Variant:  "provider",
		Note: "13 payments/s for 15 s (195), 16 workers, 4 s deadline each, each with the caller's Idempotency-Key, " +
			"through a reverse proxy with a 300 ms upstream read time-out (504/502 with nginx's HTML page) to the " +
			"ORZCash or SmartRetry simulator. Seeded faults: 4 % executed then answered after 1 s (the gateway " +
			"answers 504), 4 % 150 ms slow before handling, 3 % 500 or 503 with Retry-After: 1, 1 % 429 with " +
			"Retry-After: 1; +100 ms on every payment from 3 s to 5 s; a quarter of the connections dropped from " +
			"9 s to 10.5 s (502). Latency per payment from the call's start, failures included.",
		Columns: []Column{
			{"p50_ms", "median (ms)", "%.1f"},
			{"p90_ms", "p90 (ms)", "%.0f"},
			{"p99_ms", "p99 (ms)", "%.0f"},
			{"attempts_per_payment", "attempts/payment", "%.2f"},
			{"failed", "failed", "%.0f"},
			{"duplicates", "executed twice+", "%.0f"},
			{"failed_but_charged", "failed but charged", "%.0f"},
			{"wait_max_ms", "longest wait for a worker (ms)", "%.0f"},
		},
		Ratios: []string{"p50_ms", "p99_ms", "attempts_per_payment"},
	},
}

// WriteMildTargets prints, for every payretry row of the mild-faults
// medians, issue 14's targets: a median at most 2× the bare client's plus
// 5 ms, a p99 no worse than the best retrying peer's (retryablehttp,
// failsafe), and no payment executed twice.
func WriteMildTargets(w io.Writer, medians []Row) {
	type key struct{ client, variant string }
	by := map[key]map[string]float64{}
	for _, r := range medians {
		by[key{r.Client, r.Variant}] = r.Metrics
	}
	var lines [][]string
	for _, r := range medians {
		if !strings.HasPrefix(r.Client, Payretry) {
			continue
		}
		m := r.Metrics
		cells := []string{r.Client, r.Variant}
		if bare, ok := by[key{Bare, r.Variant}]; ok {
			limit := 2*bare["p50_ms"] + 5
			cells = append(cells, fmt.Sprintf("%.1f ≤ %.1f: %s", m["p50_ms"], limit, met(m["p50_ms"] <= limit)))
		} else {
			cells = append(cells, "—")
		}
		best, peer := math.Inf(1), ""
		for _, q := range []string{Retryablehttp, Failsafe} {
			if pm, ok := by[key{q, r.Variant}]; ok && pm["p99_ms"] < best {
				best, peer = pm["p99_ms"], q
			}
		}
		if peer != "" {
			cells = append(cells, fmt.Sprintf("%.0f ≤ %.0f (%s): %s", m["p99_ms"], best, peer, met(m["p99_ms"] <= best)))
		} else {
			cells = append(cells, "—")
		}
		cells = append(cells, fmt.Sprintf("%.0f: %s", m["duplicates"], met(m["duplicates"] == 0)))
		lines = append(lines, cells)
	}
	if len(lines) == 0 {
		return
	}
	writeRow(w, []string{"target", "provider", "median ≤ 2 × bare's + 5 ms", "p99 ≤ best peer's", "executed twice = 0"})
	writeRow(w, []string{"---", "---", "---", "---", "---"})
	for _, l := range lines {
		writeRow(w, l)
	}
	fmt.Fprintln(w)
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
}
