package main

import (
	"strings"
	"testing"
)

func TestSplitAndLabel(t *testing.T) {
	c, client, ok := splitClient("BenchmarkOverheadParallel/base=inmem/method=GET/key=none/client=payretry-keystone")
	if !ok || client != "payretry-keystone" || c != "BenchmarkOverheadParallel/base=inmem/method=GET/key=none" {
		t.Fatalf("%q %q %v", c, client, ok)
	}
	for c, want := range map[string]string{
		"BenchmarkOverheadParallel/base=inmem/method=GET/key=none":  "inmem GET without a correlation id, parallel",
		"BenchmarkOverhead/base=inmem/method=GET/key=caller":        "inmem GET with the caller's correlation id, sequential",
		"BenchmarkOverhead/base=loopback/method=POST/key=caller":    "loopback POST with the caller's key, sequential",
		"BenchmarkOverhead/base=inmem/method=POST/key=none":         "inmem POST without a key, sequential",
		"BenchmarkOverheadParallel/base=inmem/method=POST/key=none": "inmem POST without a key, parallel",
	} {
		if got := label(c); got != want {
			t.Errorf("label(%q) = %q, want %q", c, got, want)
		}
	}
}

// The cost over bare is each layer's median minus bare's; a payretry client
// is held against the peer with the least cost, per unit, and only in the
// like-for-like cases.
func TestOverheadTargets(t *testing.T) {
	raw := `goos: linux
BenchmarkOverhead/base=inmem/method=POST/key=caller/client=bare-2 100 400 ns/op 1000 B/op 10 allocs/op
BenchmarkOverhead/base=inmem/method=POST/key=caller/client=bare-2 100 420 ns/op 1000 B/op 10 allocs/op
BenchmarkOverhead/base=inmem/method=POST/key=caller/client=bare-2 100 900 ns/op 1000 B/op 10 allocs/op
BenchmarkOverhead/base=inmem/method=POST/key=caller/client=payretry-2 100 500 ns/op 1100 B/op 12 allocs/op
BenchmarkOverhead/base=inmem/method=POST/key=caller/client=payretry-orzcash-2 100 700 ns/op 1900 B/op 20 allocs/op
BenchmarkOverhead/base=inmem/method=POST/key=caller/client=payretry-keystone-2 100 1000 ns/op 1900 B/op 15 allocs/op
BenchmarkOverhead/base=inmem/method=POST/key=caller/client=retryablehttp-2 100 720 ns/op 2000 B/op 17 allocs/op
BenchmarkOverhead/base=inmem/method=POST/key=caller/client=failsafe-2 100 620 ns/op 3000 B/op 30 allocs/op
BenchmarkOverhead/base=inmem/method=POST/key=none/client=bare-2 100 400 ns/op 1000 B/op 10 allocs/op
BenchmarkOverhead/base=inmem/method=POST/key=none/client=payretry-orzcash-2 100 2000 ns/op 1000 B/op 40 allocs/op
BenchmarkOverhead/base=inmem/method=POST/key=none/client=failsafe-2 100 500 ns/op 1000 B/op 11 allocs/op
BenchmarkOverhead/base=loopback/method=POST/key=caller/client=bare-2 100 9000 ns/op 1000 B/op 10 allocs/op
BenchmarkOverhead/base=loopback/method=POST/key=caller/client=payretry-2 100 9500 ns/op 1000 B/op 10 allocs/op
`
	vals, cases, err := parse(strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) != 3 {
		t.Fatalf("cases %q", cases)
	}
	var out strings.Builder
	write(&out, vals, cases)
	got := out.String()
	for _, want := range []string{
		// Medians; a client without values is a dash.
		"| inmem POST with the caller's key, sequential | 420 | 500 | 700 | — | 1000 | — | 720 | 620 |",
		// bare's median is 420: payretry +80, orzcash +280, keystone +580, retryablehttp +300, failsafe +200.
		"| inmem POST with the caller's key, sequential | ns | +80 | +280 | — | +580 | — | +300 | +200 |",
		"| inmem POST with the caller's key, sequential | allocs | +2 | +10 | — | +5 | — | +7 | +20 |",
		// The best peer is failsafe in ns, retryablehttp in allocs.
		"| payretry | inmem POST with the caller's key, sequential | +80 | +200 (failsafe) | 0.40× | +2 | +7 (retryablehttp) | 0.29× | met | met |",
		"| payretry-orzcash | inmem POST with the caller's key, sequential | +280 | +200 (failsafe) | 1.40× | +10 | +7 (retryablehttp) | 1.43× | **not met** (ns, allocs) | **not met** (ns, allocs) |",
		"| payretry-keystone | inmem POST with the caller's key, sequential | +580 | +200 (failsafe) | 2.90× | +5 | +7 (retryablehttp) | 0.71× | **not met** (ns) | **not met** (ns, allocs) |",
		"- payretry: target met in 1 of 1 cases, stretch in 1; ÷ best peer 0.40× in ns/op, 0.29× in allocs/op.",
		"- payretry-orzcash: target **not met**: met in 0 of 1 cases, stretch in 0; ÷ best peer 1.40× in ns/op, 1.43× in allocs/op.",
		// A client without values has no row and no verdict.
		"- payretry-verto: not measured.",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
	for _, unwanted := range []string{
		"| loopback POST with the caller's key, sequential | ns |", // the cost table is in memory only
		"| payretry-orzcash | inmem POST without a key",            // not like for like
		"\n| payretry-verto |",
	} {
		if strings.Contains(got, unwanted) {
			t.Errorf("unexpected %q in\n%s", unwanted, got)
		}
	}
}
