package payretrytest_test

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/payretry/payretry/payretrytest"
)

// mixedPlan has every per-request fault kind but the stall.
func mixedPlan(seed int64) payretrytest.FaultPlan {
	return payretrytest.FaultPlan{
		Seed: seed, FailBefore: 0.15, RateLimited: 0.1, FailAfter: 0.15, Reset: 0.1,
		Latency: time.Millisecond, LatencyRate: 0.2,
	}
}

// runRefs sends two requests per reference, each with its own key, through
// fresh connections: all references in turn, or one goroutine per reference.
func runRefs(t *testing.T, s *payretrytest.Server, refs []string, concurrent bool) {
	c := freshClient(5 * time.Second)
	one := func(ref string) {
		for i := range 2 {
			body, h := keyed(payretrytest.Verto, ref, fmt.Sprintf("%s-%d", ref, i))
			_, _ = do(t.Context(), c, http.MethodPost, s.PaymentURL(), body, h) // resets are expected
		}
	}
	if !concurrent {
		for _, ref := range refs {
			one(ref)
		}
		return
	}
	var wg sync.WaitGroup
	for _, ref := range refs {
		wg.Go(func() { one(ref) })
	}
	wg.Wait()
}

// faultsOf lists the fault and delay of every attempt per reference.
func faultsOf(s *payretrytest.Server, refs []string) []string {
	var out []string
	for _, ref := range refs {
		for _, a := range s.Attempts(ref) {
			out = append(out, fmt.Sprintf("%s:%s:%v", ref, a.Fault, a.Delayed))
		}
	}
	return out
}

func TestFaultPlanIsReproducible(t *testing.T) {
	refs := make([]string, 30)
	for i := range refs {
		refs[i] = fmt.Sprintf("ref-%02d", i)
	}
	servers := map[string]*payretrytest.Server{}
	for name, seed := range map[string]int64{"sequential": 42, "concurrent": 42, "other seed": 43} {
		s := payretrytest.NewServer(payretrytest.Verto, payretrytest.Options{Plan: mixedPlan(seed)})
		defer s.Close()
		servers[name] = s
		runRefs(t, s, refs, name == "concurrent")
	}

	seq, conc, other := servers["sequential"], servers["concurrent"], servers["other seed"]
	assert.Equal(t, faultsOf(seq, refs), faultsOf(conc, refs), "same seed, same faults, whatever the interleaving")
	assert.Equal(t, seq.Stats().Faults, conc.Stats().Faults)
	assert.Equal(t, seq.Stats().ByStatus, conc.Stats().ByStatus)
	assert.NotEqual(t, faultsOf(seq, refs), faultsOf(other, refs), "another seed, other faults")

	faults := seq.Stats().Faults
	for _, f := range []payretrytest.Fault{
		payretrytest.FaultFailBefore, payretrytest.FaultRateLimited, payretrytest.FaultFailAfter,
		payretrytest.FaultReset, payretrytest.FaultLatency,
	} {
		assert.Positive(t, faults[f], f)
	}
	st := seq.Stats()
	assert.Equal(t, faults[payretrytest.FaultReset], st.ByStatus[0])
	assert.Equal(t, faults[payretrytest.FaultRateLimited], st.ByStatus[429])
	assert.Equal(t, len(seq.Ledger()), st.ByStatus[201]+faults[payretrytest.FaultFailAfter]+faults[payretrytest.FaultReset])
}

func TestStallEndsWhenTheClientTimesOut(t *testing.T) {
	s := payretrytest.NewServer(payretrytest.SmartRetry, payretrytest.Options{
		Plan: payretrytest.FaultPlan{Seed: 1, Stall: 1, StallFor: time.Minute},
	})
	defer s.Close()
	body, h := keyed(payretrytest.SmartRetry, "ref-1", "k1")

	start := time.Now()
	_, err := do(t.Context(), freshClient(200*time.Millisecond), http.MethodPost, s.PaymentURL(), body, h)
	require.Error(t, err)
	assert.Less(t, time.Since(start), 5*time.Second)
	assert.Equal(t, 1, s.Executions("ref-1"), "executed before stalling")
	require.Eventually(t, func() bool { return s.Stats().ByStatus[http.StatusCreated] == 1 },
		5*time.Second, 10*time.Millisecond, "the handler gives up when the client leaves")

	again := must(t, s, http.MethodPost, s.PaymentURL(), body, h)
	assert.Equal(t, http.StatusCreated, again.status, "the stored success")
	assert.Equal(t, 1, s.Executions("ref-1"))
	assert.Equal(t, 1, s.Stats().Faults[payretrytest.FaultStall])
}

func TestCloseReleasesStalledHandlers(t *testing.T) {
	s := payretrytest.NewServer(payretrytest.ORZCash, payretrytest.Options{
		Plan: payretrytest.FaultPlan{Seed: 1, Stall: 1, StallFor: time.Minute, Latency: time.Minute, LatencyRate: 0.5},
	})
	c := freshClient(0)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			_, _ = do(t.Context(), c, http.MethodPost, s.PaymentURL(), pay(fmt.Sprintf("ref-%d", i)), nil)
		})
	}
	require.Eventually(t, func() bool { return s.Stats().Payments == 4 }, 5*time.Second, 5*time.Millisecond)

	start := time.Now()
	s.Close()
	assert.Less(t, time.Since(start), 3*time.Second)
	wg.Wait()
}

func TestResetAfterExecution(t *testing.T) {
	s := payretrytest.NewServer(payretrytest.KeyStone, payretrytest.Options{
		Plan: payretrytest.FaultPlan{Seed: 1, Reset: 1},
	})
	defer s.Close()
	body, _ := keyed(payretrytest.KeyStone, "ref-1", "k1")

	_, err := do(t.Context(), freshClient(5*time.Second), http.MethodPost, s.PaymentURL(), body, nil)
	require.Error(t, err, "a transport error")
	assert.Equal(t, 1, s.Executions("ref-1"), "after the ledger recorded the execution")
	assert.Equal(t, 1, s.Stats().ByStatus[0])

	again := must(t, s, http.MethodPost, s.PaymentURL(), body, nil)
	assert.Equal(t, http.StatusOK, again.status)
	assert.Equal(t, 1, s.Executions("ref-1"))
	lookup := must(t, s, http.MethodGet, s.StatusURL("ref-1"), nil, nil)
	assert.Equal(t, http.StatusOK, lookup.status, "a lookup reconciles the outcome")
}

func TestRateLimitedFault(t *testing.T) {
	s := payretrytest.NewServer(payretrytest.SmartRetry, payretrytest.Options{
		Plan: payretrytest.FaultPlan{Seed: 1, RateLimited: 1},
	})
	defer s.Close()
	r := must(t, s, http.MethodPost, s.PaymentURL(), pay("ref-1"), headers{"Idempotency-Key": "k1"})
	assert.Equal(t, http.StatusTooManyRequests, r.status)
	assert.Equal(t, "1", r.header.Get("Retry-After"))
	assert.Equal(t, "RATE_LIMIT_EXCEEDED", r.str("reason_code"))
	assert.Empty(t, s.Ledger())

	orz := payretrytest.NewServer(payretrytest.ORZCash, payretrytest.Options{
		Plan: payretrytest.FaultPlan{Seed: 1, RateLimited: 1},
	})
	defer orz.Close()
	key := headers{"Idempotency-Key": newUUID(t)}
	first := must(t, orz, http.MethodPost, orz.PaymentURL(), pay("ref-1"), key)
	second := must(t, orz, http.MethodPost, orz.PaymentURL(), pay("ref-1"), key)
	assert.Equal(t, http.StatusTooManyRequests, first.status)
	assert.Equal(t, "RATE_LIMIT_EXCEEDED", first.str("code"))
	assert.Equal(t, first.raw, second.raw, "ORZCash stores the 429 under its key too")
	assert.Equal(t, 1, orz.Stats().Replays)
}

func TestLatency(t *testing.T) {
	s := payretrytest.NewServer(payretrytest.ORZCash, payretrytest.Options{
		Plan: payretrytest.FaultPlan{Seed: 1, Latency: 300 * time.Millisecond, LatencyRate: 1},
	})
	defer s.Close()
	start := time.Now()
	r := must(t, s, http.MethodPost, s.PaymentURL(), pay("ref-1"), nil)
	assert.Equal(t, http.StatusCreated, r.status)
	assert.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond)
	assert.True(t, s.Attempts("ref-1")[0].Delayed)

	start = time.Now()
	must(t, s, http.MethodGet, s.StatusURL("ref-1"), nil, nil)
	assert.Less(t, time.Since(start), 300*time.Millisecond, "lookups are healthy")
}

func TestOutage(t *testing.T) {
	clk := newClock()
	s := payretrytest.NewServer(payretrytest.Verto, payretrytest.Options{
		Clock: clk.Now,
		Plan:  payretrytest.FaultPlan{Outages: []payretrytest.Window{{Start: time.Minute, End: 2 * time.Minute}}},
	})
	defer s.Close()
	h := headers{"Vfx-Correlation-Id": "corr", "Idempotency-Key": "k1"}
	require.Equal(t, http.StatusCreated, must(t, s, http.MethodPost, s.PaymentURL(), pay("ref-1"), h).status)

	clk.Add(time.Minute)
	for _, r := range []reply{
		must(t, s, http.MethodPost, s.PaymentURL(), pay("ref-2"), h),
		must(t, s, http.MethodGet, s.StatusURL("ref-1"), nil, h),
	} {
		assert.Equal(t, http.StatusServiceUnavailable, r.status)
		assert.Equal(t, "1", r.header.Get("Retry-After"))
		assert.Equal(t, "SERVICE_UNAVAILABLE", r.str("errorCode"))
		assert.NotEmpty(t, r.header.Get("Vfx-Api-Call-Id"))
	}
	assert.Zero(t, s.Executions("ref-2"))
	assert.Equal(t, payretrytest.FaultOutage, s.Attempts("ref-2")[0].Fault)

	clk.Add(time.Minute)
	assert.Equal(t, http.StatusOK, must(t, s, http.MethodGet, s.StatusURL("ref-1"), nil, h).status)
}

func TestInvalidPlanPanics(t *testing.T) {
	for _, plan := range []payretrytest.FaultPlan{
		{FailBefore: -0.1},
		{FailBefore: 0.6, Reset: 0.6},
		{Stall: 1, StallFor: -time.Second},
		{Outages: []payretrytest.Window{{Start: time.Minute}}},
		{Phases: []payretrytest.Phase{{Window: payretrytest.Window{Start: time.Minute}}}},
		{Phases: []payretrytest.Phase{{Window: payretrytest.Window{End: time.Minute}, Latency: -time.Second}}},
		{Phases: []payretrytest.Phase{{Window: payretrytest.Window{End: time.Minute}, Drop: 1.5}}},
	} {
		assert.Panics(t, func() { payretrytest.NewServer(payretrytest.ORZCash, payretrytest.Options{Plan: plan}) })
	}
	assert.Panics(t, func() { payretrytest.NewServer("acme", payretrytest.Options{}) })
}

func TestPhaseLatencyAndDrops(t *testing.T) {
	clk := newClock()
	s := payretrytest.NewServer(payretrytest.SmartRetry, payretrytest.Options{
		Clock: clk.Now,
		Plan: payretrytest.FaultPlan{Seed: 1, Phases: []payretrytest.Phase{
			{Window: payretrytest.Window{Start: time.Minute, End: 2 * time.Minute}, Latency: 200 * time.Millisecond},
			{Window: payretrytest.Window{Start: 3 * time.Minute, End: 4 * time.Minute}, Drop: 1},
		}},
	})
	defer s.Close()
	c := freshClient(5 * time.Second)
	post := func(ref, key string) (reply, time.Duration, error) {
		body, h := keyed(payretrytest.SmartRetry, ref, key)
		start := time.Now()
		r, err := do(t.Context(), c, http.MethodPost, s.PaymentURL(), body, h)
		return r, time.Since(start), err
	}

	r, took, err := post("before", "k0")
	require.NoError(t, err)
	assert.Equal(t, http.StatusCreated, r.status)
	assert.Less(t, took, 200*time.Millisecond, "no phase yet")

	clk.Add(time.Minute) // in the latency phase
	r, took, err = post("slow", "k1")
	require.NoError(t, err)
	assert.Equal(t, http.StatusCreated, r.status, "latency alone answers normally")
	assert.GreaterOrEqual(t, took, 200*time.Millisecond)
	assert.True(t, s.Attempts("slow")[0].Delayed)
	assert.Empty(t, s.Attempts("slow")[0].Fault)
	start := time.Now()
	must(t, s, http.MethodGet, s.StatusURL("slow"), nil, nil)
	assert.Less(t, time.Since(start), 200*time.Millisecond, "lookups are not delayed")

	clk.Add(2 * time.Minute) // in the drop phase
	_, _, err = post("dropped", "k2")
	require.Error(t, err, "no answer at all")
	assert.Zero(t, s.Executions("dropped"), "dropped before it was handled")
	_, _, err = post("slow", "k1")
	require.Error(t, err, "a replay is dropped too: the drop comes before the store")
	assert.Equal(t, 1, s.Executions("slow"))
	for _, ref := range []string{"dropped", "slow"} {
		a := s.Attempts(ref)
		assert.Equal(t, payretrytest.FaultDrop, a[len(a)-1].Fault, ref)
		assert.Zero(t, a[len(a)-1].Status, ref)
	}

	clk.Add(time.Minute) // after both phases
	r, took, err = post("dropped", "k2")
	require.NoError(t, err)
	assert.Equal(t, http.StatusCreated, r.status, "the key was never stored")
	assert.Less(t, took, 200*time.Millisecond)
	assert.Equal(t, 1, s.Executions("dropped"))

	st := s.Stats()
	assert.Equal(t, 1, st.Faults[payretrytest.FaultPhaseLatency])
	assert.Equal(t, 2, st.Faults[payretrytest.FaultDrop])
	assert.Equal(t, 2, st.ByStatus[0])
	assert.Zero(t, st.Faults[payretrytest.FaultLatency])
}

// A phase that drops a fraction drops the same requests for the same seed,
// whatever the interleaving, and about that fraction of them.
func TestPhaseDropsAreReproducible(t *testing.T) {
	refs := make([]string, 40)
	for i := range refs {
		refs[i] = fmt.Sprintf("ref-%02d", i)
	}
	plan := payretrytest.FaultPlan{Seed: 11, Phases: []payretrytest.Phase{
		{Window: payretrytest.Window{End: time.Hour}, Drop: 0.3},
	}}
	var got [][]string
	for _, concurrent := range []bool{false, true} {
		s := payretrytest.NewServer(payretrytest.Verto, payretrytest.Options{Plan: plan})
		defer s.Close()
		runRefs(t, s, refs, concurrent)
		got = append(got, faultsOf(s, refs))
		drops := s.Stats().Faults[payretrytest.FaultDrop]
		assert.InDelta(t, 0.3*80, drops, 12, "about 30 %% of 80 requests dropped")
		assert.Equal(t, 80-drops, len(s.Ledger()), "every request not dropped executed once (its own key)")
	}
	assert.Equal(t, got[0], got[1])
}

// A 503 always carries Retry-After: 1; a 500 or 502 only with RetryAfter5xx.
func TestRetryAfter5xx(t *testing.T) {
	for _, on := range []bool{false, true} {
		s := payretrytest.NewServer(payretrytest.SmartRetry, payretrytest.Options{
			Plan: payretrytest.FaultPlan{Seed: 2, FailBefore: 0.5, FailAfter: 0.5, RetryAfter5xx: on},
		})
		defer s.Close()
		seen := map[int]int{}
		for i := range 40 {
			r := must(t, s, http.MethodPost, s.PaymentURL(), pay(fmt.Sprintf("ref-%d", i)), nil)
			require.GreaterOrEqual(t, r.status, 500)
			seen[r.status]++
			want := ""
			if on || r.status == http.StatusServiceUnavailable {
				want = "1"
			}
			assert.Equal(t, want, r.header.Get("Retry-After"), "status %d, RetryAfter5xx %v", r.status, on)
		}
		for _, status := range []int{500, 502, 503} {
			assert.Positive(t, seen[status], "status %d drawn", status)
		}
	}
}
