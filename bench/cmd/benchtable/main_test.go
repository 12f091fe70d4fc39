package main

import (
	"strings"
	"testing"
)

func TestSplitAndLabel(t *testing.T) {
	c, client, ok := splitClient("BenchmarkOverheadParallel/base=inmem/method=GET/client=failsafe")
	if !ok || client != "failsafe" || c != "BenchmarkOverheadParallel/base=inmem/method=GET" {
		t.Fatalf("%q %q %v", c, client, ok)
	}
	if got := label(c); got != "inmem GET, parallel" {
		t.Errorf("label %q", got)
	}
	if got := label("BenchmarkOverhead/base=loopback/method=POST/key=none"); got != "loopback POST, sequential" {
		t.Errorf("label %q", got)
	}
	if got := label("BenchmarkOverhead/base=inmem/method=POST/key=caller"); got != "inmem POST with the caller's key, sequential" {
		t.Errorf("label %q", got)
	}
}

// The cost over bare is each layer's median minus bare's, and the ratio is
// payretry's cost over the peer's, not over its total.
func TestOverheadRatios(t *testing.T) {
	raw := `goos: linux
BenchmarkOverhead/base=inmem/method=GET/key=none/client=bare-2 100 400 ns/op 1000 B/op 10 allocs/op
BenchmarkOverhead/base=inmem/method=GET/key=none/client=bare-2 100 420 ns/op 1000 B/op 10 allocs/op
BenchmarkOverhead/base=inmem/method=GET/key=none/client=bare-2 100 900 ns/op 1000 B/op 10 allocs/op
BenchmarkOverhead/base=inmem/method=GET/key=none/client=payretry-2 100 500 ns/op 1000 B/op 10 allocs/op
BenchmarkOverhead/base=inmem/method=GET/key=none/client=retryablehttp-2 100 720 ns/op 2000 B/op 17 allocs/op
BenchmarkOverhead/base=inmem/method=GET/key=none/client=failsafe-2 100 1020 ns/op 3000 B/op 30 allocs/op
BenchmarkOverhead/base=loopback/method=POST/key=none/client=bare-2 100 9000 ns/op 1000 B/op 10 allocs/op
BenchmarkOverhead/base=loopback/method=POST/key=none/client=payretry-2 100 9500 ns/op 1000 B/op 10 allocs/op
`
	vals, cases, err := parse(strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) != 2 {
		t.Fatalf("cases %q", cases)
	}
	var out strings.Builder
	write(&out, vals, cases)
	for _, want := range []string{
		// bare's median is 420: payretry +80, retryablehttp +300, failsafe +600.
		"| inmem GET, sequential | ns | +80 | +300 | +600 | 0.27× | 0.13× |",
		"| inmem GET, sequential | allocs | +0 | +7 | +20 | 0.00× | 0.00× |",
		"| inmem GET, sequential | 420 | 500 | 720 | 1020 | +80 | 0.69× | 0.49× |",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("missing %q in\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "| loopback POST, sequential | ns |") {
		t.Error("a loopback case in the cost over bare")
	}
}
