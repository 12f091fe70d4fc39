package bench

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/payretry/payretry/payretrytest"
)

// smallMildFaults is the mild-faults scenario shrunk to a few seconds, with
// faults frequent enough that each kind hits some of its 30 payments.
func smallMildFaults() MildFaultsConfig {
	return MildFaultsConfig{
		Rate: 20, Duration: 1500 * time.Millisecond, Workers: 8,
		PaymentTimeout: 2500 * time.Millisecond, GatewayTimeout: 150 * time.Millisecond,
		Plan: payretrytest.FaultPlan{
			Seed:  4,
			Stall: 0.15, StallFor: time.Second,
			Latency: 20 * time.Millisecond, LatencyRate: 0.1,
			FailBefore: 0.1, RetryAfter5xx: true,
			RateLimited: 0.05,
			Phases: []payretrytest.Phase{
				{Window: payretrytest.Window{Start: 300 * time.Millisecond, End: 600 * time.Millisecond}, Latency: 20 * time.Millisecond},
				{Window: payretrytest.Window{Start: 900 * time.Millisecond, End: 1200 * time.Millisecond}, Drop: 0.5},
			},
		},
		Bound: 20 * time.Second,
	}
}

func TestMildFaultsSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("runs about 8 s")
	}
	cfg := smallMildFaults()
	before := runtime.NumGoroutine()
	rows := map[string]map[string]float64{}
	for _, client := range []string{Bare, PayretryORZ, Naive} {
		r, err := RunMildFaults(context.Background(), cfg, payretrytest.ORZCash, client)
		if err != nil {
			t.Fatal(err)
		}
		m := r.Metrics
		t.Logf("%s: %v", client, m)
		rows[client] = m
		if r.Variant != string(payretrytest.ORZCash) || m["payments"] != 30 {
			t.Errorf("%s: variant %q, %v payments", client, r.Variant, m["payments"])
		}
		if !(m["p50_ms"] <= m["p99_ms"] && m["p99_ms"] <= m["max_ms"] && m["max_ms"] <= 2600) {
			t.Errorf("%s: percentiles out of order or past the deadline: %v", client, m)
		}
	}
	// Every simulator, gateway, connection and client is gone with its run.
	for deadline := time.Now().Add(3 * time.Second); runtime.NumGoroutine() > before && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines left over:\n%s", n-before, buf[:runtime.Stack(buf, true)])
	}

	bare := rows[Bare]
	// Each stall outlasts the gateway's time-out, and each drop is a 502.
	if bare["gateway_504"] != bare["fault_stall"] || bare["gateway_502"] != bare["fault_drop"] {
		t.Errorf("bare: stalls %v, 504s %v, drops %v, 502s %v",
			bare["fault_stall"], bare["gateway_504"], bare["fault_drop"], bare["gateway_502"])
	}
	for _, f := range []string{"fault_stall", "fault_latency", "fault_fail_before", "fault_rate_limited", "fault_phase_latency", "fault_drop"} {
		if bare[f] == 0 {
			t.Errorf("bare: no %s among the first attempts; pick another seed", f)
		}
	}
	if bare["attempts_per_payment"] != 1 || bare["duplicates"] != 0 ||
		bare["failed_but_charged"] != bare["fault_stall"] ||
		bare["failed"] != bare["fault_stall"]+bare["fault_fail_before"]+bare["fault_rate_limited"]+bare["fault_drop"] {
		t.Errorf("bare: every fault but latency fails its payment, and only stalls charge: %v", bare)
	}
	if n := rows[Naive]; n["duplicates"] == 0 || n["attempts_per_payment"] <= 1 {
		t.Errorf("naive: a fresh key after a stall pays twice: %v", n)
	}
	if p := rows[PayretryORZ]; p["duplicates"] != 0 || p["attempts_per_payment"] <= 1 || p["failed"] >= bare["failed"] {
		t.Errorf("payretry-orzcash: retries without paying twice, failing fewer than bare: %v", p)
	}
}

func TestPercentile(t *testing.T) {
	ms := func(vs ...int) []time.Duration {
		out := make([]time.Duration, len(vs))
		for i, v := range vs {
			out[i] = time.Duration(v) * time.Millisecond
		}
		return out
	}
	ds := ms(5, 1, 4, 2, 3, 10, 9, 8, 7, 6) // 1..10 shuffled
	for _, tc := range []struct {
		p    float64
		want int
	}{{50, 5}, {90, 9}, {99, 10}, {100, 10}, {10, 1}, {0, 1}} {
		if got := Percentile(ds, tc.p); got != time.Duration(tc.want)*time.Millisecond {
			t.Errorf("p%v = %v, want %dms", tc.p, got, tc.want)
		}
	}
	if Percentile(nil, 50) != 0 {
		t.Error("no values")
	}
	if ds[0] != 5*time.Millisecond {
		t.Error("Percentile sorted its argument")
	}
}
