package bench

import (
	"math"
	"strings"
	"testing"
)

func TestMedianOf(t *testing.T) {
	if m := MedianOf([]float64{3, 1, 2, 10}); m != 2.5 {
		t.Errorf("even count: %v", m)
	}
	if m := MedianOf([]float64{3, 1, 2}); m != 2 {
		t.Errorf("odd count: %v", m)
	}
	if m := MedianOf(nil); !math.IsNaN(m) {
		t.Errorf("none: %v", m)
	}
}

func TestWriteMildTargets(t *testing.T) {
	row := func(client string, p50, p99, dup float64) Row {
		return Row{Scenario: "mildfaults", Client: client, Variant: "orzcash",
			Metrics: map[string]float64{"p50_ms": p50, "p99_ms": p99, "duplicates": dup}}
	}
	var b strings.Builder
	WriteMildTargets(&b, []Row{
		row(Bare, 1, 300, 0),
		row(PayretryORZ, 7, 900, 0),
		row(Payretry, 7.5, 1200, 1),
		row(Retryablehttp, 1, 1100, 0),
		row(Failsafe, 1, 1000, 0),
	})
	out := b.String()
	for _, want := range []string{
		"| payretry-orzcash | orzcash | 7.0 ≤ 7.0: met | 900 ≤ 1000 (failsafe): met | 0: met |",
		"| payretry | orzcash | 7.5 ≤ 7.0: **not met** | 1200 ≤ 1000 (failsafe): **not met** | 1: **not met** |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("targets lack %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "\n| payretry") != 2 {
		t.Errorf("one line per payretry client:\n%s", out)
	}
}
