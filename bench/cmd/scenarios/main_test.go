package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/payretry/payretry/bench"
)

func TestChoose(t *testing.T) {
	all := scenarios()
	got, err := choose(all, "outage,mildfaults", "bare,smartretry/naive")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].name != "outage" || got[1].name != "mildfaults" {
		t.Fatalf("chose %v", got)
	}
	if !slices.Equal(got[0].clients, []string{bench.Bare}) ||
		!slices.Equal(got[1].clients, []string{"orzcash/bare", "smartretry/bare", "smartretry/naive"}) {
		t.Errorf("clients %q and %q", got[0].clients, got[1].clients)
	}
	if n := len(all[len(all)-1].clients); n != 12 {
		t.Errorf("mild faults has %d cases, want 6 clients × 2 providers", n)
	}
	if got, _ := choose(all, "all", ""); len(got) != len(all) {
		t.Errorf("all: %d scenarios", len(got))
	}
	if _, err := choose(all, "nope", ""); err == nil {
		t.Error("an unknown scenario is accepted")
	}
}

// writeCharts writes one SVG per charted scenario from its first run, with
// a line per client of that run.
func TestWriteCharts(t *testing.T) {
	s := &bench.Series{Bucket: bench.SeriesBucket, Requests: []int{1, 2, 3}, Throttled: []int{0, 1, 0}}
	var raw []bench.Row
	for run := 1; run <= 2; run++ {
		for _, c := range bench.Peers {
			raw = append(raw, bench.Row{Scenario: "outage", Run: run, Client: c, Series: s})
		}
		raw = append(raw, bench.Row{Scenario: "duplicates", Run: run, Client: bench.Bare})
	}
	dir := t.TempDir()
	files, err := writeCharts(dir, raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 || files["outage"] != "outage.svg" {
		t.Fatalf("files %v", files)
	}
	b, err := os.ReadFile(filepath.Join(dir, "outage.svg"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	if !strings.HasPrefix(doc, "<svg ") || !strings.HasSuffix(doc, "</svg>\n") {
		t.Errorf("not an SVG document: %.80s", doc)
	}
	for _, c := range bench.Peers {
		if n := strings.Count(doc, `class="series" data-client="`+c+`" data-kind="requests"`); n != 1 {
			t.Errorf("%d request series for %s, want 1", n, c)
		}
	}
}
