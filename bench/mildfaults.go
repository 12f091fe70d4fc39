package bench

import (
	"context"
	"math"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/payretry/payretry/payretrytest"
)

// MildFaultsConfig is scenario 5 (issue 14): payments arrive at Rate per
// second (open loop) and Workers send them, through a Gateway with an
// upstream read time-out of GatewayTimeout, to a payretrytest simulator
// whose Plan has the mild trouble of an ordinary day.
type MildFaultsConfig struct {
	Rate           int           // payments offered per second
	Duration       time.Duration // arrivals span this long
	Workers        int           // payments in progress at most; later arrivals wait for a worker
	PaymentTimeout time.Duration // deadline of one payment, all attempts, from its start
	GatewayTimeout time.Duration // the gateway's upstream read time-out
	Plan           payretrytest.FaultPlan
	Bound          time.Duration // the whole run stops by then
}

// DefaultMildFaults is the published configuration: 13 payments/s for 15 s
// (195 payments), 16 workers, 4 s per payment, a gateway with a 300 ms read
// time-out, and a provider that
//   - executes 4 % of payments and then answers only after 1 s (the gateway
//     answers 504 at 300 ms, the payment executed);
//   - waits 150 ms before handling 4 % (slow, within the gateway's time-out);
//   - answers 3 % with a 500 or a 503, half each, unexecuted, each with
//     Retry-After: 1;
//   - answers 1 % with a 429 with Retry-After: 1, unexecuted;
//   - adds 100 ms to every payment from 3 s to 5 s, and drops the
//     connection of a quarter of the payments from 9 s to 10.5 s (the
//     gateway answers 502, nothing executed).
//
// The draws are seeded: the same payments (by reference and attempt number)
// get the same faults for every client and in every run. With seed 5 the
// first attempts of the 195 payments draw 8 stalls, 6 slow, 8 5xx and 2
// 429s, close to the nominal 7.8, 7.8, 5.9 and 2.0.
func DefaultMildFaults() MildFaultsConfig {
	return MildFaultsConfig{
		Rate: 13, Duration: 15 * time.Second, Workers: 16,
		PaymentTimeout: 4 * time.Second, GatewayTimeout: 300 * time.Millisecond,
		Plan: payretrytest.FaultPlan{
			Seed:  5,
			Stall: 0.04, StallFor: time.Second,
			Latency: 150 * time.Millisecond, LatencyRate: 0.04,
			FailBefore: 0.03, RetryAfter5xx: true,
			RateLimited: 0.01,
			Phases: []payretrytest.Phase{
				{Window: payretrytest.Window{Start: 3 * time.Second, End: 5 * time.Second}, Latency: 100 * time.Millisecond},
				{Window: payretrytest.Window{Start: 9 * time.Second, End: 10500 * time.Millisecond}, Drop: 0.25},
			},
		},
		Bound: 60 * time.Second,
	}
}

// MildFaultsClients are the clients measured against each simulator, in
// table order: the provider's own preset comes right after bare.
var MildFaultsClients = map[payretrytest.Provider][]string{
	payretrytest.ORZCash:    {Bare, PayretryORZ, Payretry, Retryablehttp, Failsafe, Naive},
	payretrytest.SmartRetry: {Bare, PayretrySmart, Payretry, Retryablehttp, Failsafe, Naive},
}

// MildFaultsProviders are the simulators of the scenario, in table order.
var MildFaultsProviders = []payretrytest.Provider{payretrytest.ORZCash, payretrytest.SmartRetry}

// RunMildFaults runs scenario 5 for one client against one simulator. Every
// payment carries the caller's own Idempotency-Key (a UUID, one per payment),
// as a payment integration should; the ORZCash preset replaces it where
// ORZCash demands a new one, and the naive client on every retry.
//
// Latency is measured from the start of the call (a worker picking the
// payment up) to its end, failures included (a payment that fails costs the
// time until it is given up). The row's variant is the provider.
//
// Metrics: payments; p50_ms, p90_ms, p99_ms, max_ms (latency per payment,
// nearest rank); wait_max_ms (the longest an arrival waited for a free
// worker); attempts_per_payment (requests the gateway received ÷
// payments); failed (not answered 2xx); duplicates (payments executed more
// than once); failed_but_charged (failed, yet executed); gateway_504,
// gateway_502 (answered by the gateway itself); provider_429; fault_stall,
// fault_latency, fault_fail_before, fault_rate_limited, fault_phase_latency,
// fault_drop (faults the simulator injected, over all attempts); elapsed_s.
func RunMildFaults(ctx context.Context, cfg MildFaultsConfig, provider payretrytest.Provider, client string) (Row, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Bound)
	defer cancel()
	sim := payretrytest.NewServer(provider, payretrytest.Options{Plan: cfg.Plan})
	defer sim.Close()
	start := time.Now() // the plan's phases count from the simulator's start, a moment ago
	gw, err := NewGateway(sim.URL, cfg.GatewayTimeout)
	if err != nil {
		return Row{}, err
	}
	defer gw.Close()
	base := NewBaseTransport()
	defer base.CloseIdleConnections()
	_, c, err := NewClient(client, base, Options{})
	if err != nil {
		return Row{}, err
	}
	url := gw.URL + payretrytest.PaymentPath(provider)

	n := int(cfg.Duration.Seconds() * float64(cfg.Rate))
	type job struct {
		i  int
		at time.Time
	}
	jobs := make(chan job, n)
	took := make([]time.Duration, n)
	waited := make([]time.Duration, n)
	ok := make([]bool, n)
	var wg sync.WaitGroup
	for range cfg.Workers {
		wg.Go(func() {
			for j := range jobs {
				t0 := time.Now()
				waited[j.i] = t0.Sub(j.at)
				ok[j.i] = payMild(ctx, c, url, provider, ref(j.i), cfg.PaymentTimeout)
				took[j.i] = time.Since(t0)
			}
		})
	}
	interval := time.Second / time.Duration(cfg.Rate)
	var stopped error
	for i := range n {
		at := start.Add(time.Duration(i) * interval)
		if err := sleepUntil(ctx, at); err != nil {
			stopped = err
			break
		}
		jobs <- job{i, at}
	}
	close(jobs)
	wg.Wait()
	if stopped != nil {
		return Row{}, stopped
	}
	elapsed := time.Since(start)

	var failed, dup, charged int
	for i := range n {
		e := sim.Executions(ref(i))
		if e > 1 {
			dup++
		}
		if !ok[i] {
			failed++
			if e > 0 {
				charged++
			}
		}
	}
	st := sim.Stats()
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return Row{Scenario: "mildfaults", Client: client, Variant: string(provider), Metrics: map[string]float64{
		"payments":             float64(n),
		"p50_ms":               ms(Percentile(took, 50)),
		"p90_ms":               ms(Percentile(took, 90)),
		"p99_ms":               ms(Percentile(took, 99)),
		"max_ms":               ms(Percentile(took, 100)),
		"wait_max_ms":          ms(max(0, Percentile(waited, 100))),
		"attempts_per_payment": float64(gw.Requests()) / float64(n),
		"failed":               float64(failed),
		"duplicates":           float64(dup),
		"failed_but_charged":   float64(charged),
		"gateway_504":          float64(gw.Timeouts()),
		"gateway_502":          float64(gw.BadGateways()),
		"provider_429":         float64(st.RateLimited),
		"fault_stall":          float64(st.Faults[payretrytest.FaultStall]),
		"fault_latency":        float64(st.Faults[payretrytest.FaultLatency]),
		"fault_fail_before":    float64(st.Faults[payretrytest.FaultFailBefore]),
		"fault_rate_limited":   float64(st.Faults[payretrytest.FaultRateLimited]),
		"fault_phase_latency":  float64(st.Faults[payretrytest.FaultPhaseLatency]),
		"fault_drop":           float64(st.Faults[payretrytest.FaultDrop]),
		"elapsed_s":            elapsed.Seconds(),
	}}, nil
}

// payMild sends one payment with a fresh Idempotency-Key (a UUID, which
// ORZCash requires) and reports whether it was answered 2xx within timeout.
func payMild(ctx context.Context, c *http.Client, url string, p payretrytest.Provider, ref string, timeout time.Duration) bool {
	h := http.Header{"Idempotency-Key": {newUUID()}, "Authorization": {"Bearer " + APIKey}}
	if p == payretrytest.SmartRetry {
		h = http.Header{"Idempotency-Key": h["Idempotency-Key"], "X-Api-Key": {APIKey}}
	}
	status := pay(ctx, c, url, ref, h, timeout)
	return status >= 200 && status < 300
}

// Percentile returns the p-th percentile of ds by the nearest-rank method
// (the smallest value with at least p % of the values at or below it); 0
// for none.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[min(max(rank, 1), len(s))-1]
}
