package payretry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"
)

// failingThenOK returns n handlers that answer code, then one that answers
// 200.
func failingThenOK(code, n int) []http.HandlerFunc {
	handlers := make([]http.HandlerFunc, 0, n+1)
	for range n {
		handlers = append(handlers, status(code, ""))
	}
	return append(handlers, status(200, ""))
}

func getOnce(t *testing.T, tr *Transport, url string) (*http.Response, error) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	resp, err := tr.RoundTrip(req)
	if resp != nil {
		resp.Body.Close()
	}
	return resp, err
}

func TestRemainingZeroHoldsUntilReset(t *testing.T) {
	reset := strconv.FormatInt(t0.Add(3*time.Second).Unix(), 10)
	s := newScript(t,
		status(200, "", "X-RateLimit-Limit", "2", "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", reset),
		status(200, ""))
	tr, clk := newTestTransport(t, nil, Policy{Name: "p"})
	_, err := getOnce(t, tr, s.URL)
	require.NoError(t, err)
	assert.Empty(t, clk.Waits())

	_, err = getOnce(t, tr, s.URL)
	require.NoError(t, err)
	assert.Equal(t, []time.Duration{3*time.Second + pacing.HoldMargin}, clk.Waits(), "held until the window reset")
	assert.Len(t, s.Requests(), 2)
}

func TestWindowCountHoldsBeforeTheProviderSays429(t *testing.T) {
	reset := strconv.FormatInt(t0.Add(time.Second).Unix(), 10)
	s := newScript(t, status(200, "", "X-RateLimit-Limit", "3", "X-RateLimit-Remaining", "2", "X-RateLimit-Reset", reset))
	tr, clk := newTestTransport(t, nil, Policy{Name: "p"})
	for range 4 {
		_, err := getOnce(t, tr, s.URL)
		require.NoError(t, err)
	}
	// Three fit in the window (the provider said 2 left after the first);
	// the fourth waits for the next one.
	assert.Equal(t, []time.Duration{time.Second + pacing.HoldMargin}, clk.Waits())
}

func TestRetryAfterHoldsOtherRequests(t *testing.T) {
	s := newScript(t, status(429, "", "Retry-After", "5"), status(200, ""))
	tr, clk := newTestTransport(t, nil, Policy{Name: "p", MaxAttempts: 1})
	resp, err := getOnce(t, tr, s.URL)
	require.NoError(t, err)
	assert.Equal(t, 429, resp.StatusCode)

	resp, err = getOnce(t, tr, s.URL)
	require.NoError(t, err)
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, []time.Duration{5 * time.Second}, clk.Waits(), "the second request waited for the hold")
}

func TestHoldPastDeadlineReturnsErrorWithRetryAt(t *testing.T) {
	s := newScript(t, status(429, "", "Retry-After", "30"), status(200, ""))
	tr, clk := newTestTransport(t, nil, Policy{Name: "p", MaxAttempts: 1, MaxElapsedTime: 10 * time.Second})
	_, err := getOnce(t, tr, s.URL)
	require.NoError(t, err)

	resp, err := getOnce(t, tr, s.URL)
	assert.Nil(t, resp)
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.ErrorIs(t, err, ErrThrottled)
	assert.Equal(t, ClassRateLimited, e.Class)
	assert.Equal(t, t0.Add(30*time.Second), e.RetryAt)
	assert.Equal(t, 0, e.Attempts)
	assert.False(t, e.OutcomeUnknown)
	assert.Empty(t, clk.Waits())
	assert.Len(t, s.Requests(), 1, "nothing sent")
}

func TestClientSideLimits(t *testing.T) {
	s := newScript(t, status(200, ""))
	p := Policy{Name: "p", Limits: []Limit{
		{Name: "pay", Methods: []string{http.MethodPost}, Rate: 10, Burst: 1},
		{Name: "all", Rate: 1000},
	}}
	tr, clk := newTestTransport(t, nil, p)
	for range 3 {
		resp, err := post(t, tr, s.URL, `{}`)
		require.NoError(t, err)
		assert.Equal(t, 200, resp.StatusCode)
	}
	for range 2 {
		_, err := getOnce(t, tr, s.URL) // GETs are not in "pay"
		require.NoError(t, err)
	}
	assert.Equal(t, []time.Duration{100 * time.Millisecond, 100 * time.Millisecond}, clk.Waits())
	scope, limits := tr.scopeFor(httptestRequest(http.MethodPost, "/v1/pay"))
	assert.Equal(t, "p/pay", scope)
	assert.Len(t, limits, 2)
	scope, limits = tr.scopeFor(httptestRequest(http.MethodGet, "/v1/pay"))
	assert.Equal(t, "p", scope)
	assert.Len(t, limits, 1)
}

func httptestRequest(method, path string) *http.Request {
	r, _ := http.NewRequest(method, "http://127.0.0.1"+path, nil)
	return r
}

func TestSmartRetryLimitsMatchTheDocumentedTable(t *testing.T) {
	tr, err := NewTransport(nil, SmartRetry())
	require.NoError(t, err)
	cases := []struct {
		method, path, scope string
		rates               []float64
	}{
		{"POST", "/v1/payments/sale/ABC123", "smartretry/payment", []float64{100, 1000}},
		{"POST", "/v1/payments/refund", "smartretry/payment", []float64{100, 1000}},
		{"GET", "/v1/payments/status/ABC", "smartretry/status", []float64{500, 1000}},
		{"POST", "/v1/recurring/charge", "smartretry/recurring", []float64{100, 1000}},
		{"PUT", "/v1/other", "smartretry", []float64{1000}},
	}
	for _, c := range cases {
		scope, limits := tr.scopeFor(httptestRequest(c.method, c.path))
		assert.Equal(t, c.scope, scope, c.path)
		var rates []float64
		for _, l := range limits {
			rates = append(rates, l.Rate)
		}
		assert.Equal(t, c.rates, rates, c.path)
	}
}

// A request gets the limits that match it, and the scope of the first
// specific one.
func TestScopeForPicksTheMatchingLimits(t *testing.T) {
	var many []Limit
	for i := range 10 {
		many = append(many, Limit{Name: fmt.Sprintf("l%d", i), Paths: []string{fmt.Sprintf("/p%d/", i)}, Rate: float64(i + 1)})
	}
	many = append(many, Limit{Name: "all", Rate: 1000})
	big, err := NewTransport(nil, Policy{Name: "big", Limits: many})
	require.NoError(t, err)
	scope, limits := big.scopeFor(httptestRequest(http.MethodGet, "/p9/x"))
	assert.Equal(t, "big/l9", scope)
	require.Len(t, limits, 2)
	assert.Equal(t, []float64{10, 1000}, []float64{limits[0].Rate, limits[1].Rate})

	_, err = NewTransport(nil, Policy{Name: "huge", Limits: make([]Limit, maxLimits+1)})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "at most 64")
}

// takeAll takes from every bucket or from none.
func TestTakeAllIsAllOrNothing(t *testing.T) {
	now := t0
	a := rate.NewLimiter(10, 2)
	b := rate.NewLimiter(1, 1)
	assert.Zero(t, takeAll([]*rate.Limiter{a, b}, now, 0))
	assert.InDelta(t, 1, a.TokensAt(now), 1e-9)
	assert.InDelta(t, 0, b.TokensAt(now), 1e-9)

	wait := takeAll([]*rate.Limiter{a, b}, now, 0) // b is empty for a second
	assert.Equal(t, time.Second, wait)
	assert.InDelta(t, 1, a.TokensAt(now), 1e-9, "a gave nothing while b made the request wait")
	assert.Equal(t, time.Millisecond, takeAll([]*rate.Limiter{a}, now, time.Millisecond))
	assert.InDelta(t, 1, a.TokensAt(now), 1e-9, "a gave nothing while another limit made the request wait")
}

// A Take that comes with an earlier time than one before it (a call that
// read the clock, then waited to be scheduled) does not turn the buckets'
// clocks back: that would credit the interval twice.
func TestTakeNeverTurnsTheBucketsBack(t *testing.T) {
	l := NewLimiter()
	limits := []Limit{{Name: "pay", Rate: 10, Burst: 10}}
	ctx := context.Background()
	sent := 0
	for ms := range 1000 { // 1 s at 1 ms steps, and every 100 ms a call 500 ms late
		now := t0.Add(time.Duration(ms) * time.Millisecond)
		if d, _, _ := l.Take(ctx, "p/pay", limits, now); d == 0 {
			sent++
		}
		if ms%100 == 50 {
			if d, _, _ := l.Take(ctx, "p/pay", limits, now.Add(-500*time.Millisecond)); d == 0 {
				sent++
			}
		}
	}
	assert.LessOrEqual(t, sent, 20, "burst 10 and 10 more in a second")
}

func TestRetryBudget(t *testing.T) {
	s := newScript(t, status(503, ""))
	p := keyed()
	p.RetryBudgetBurst = 2
	p.RetryBudgetRatio = 0.001
	tr, _ := newTestTransport(t, nil, p)
	var reasons []error
	tr.p.OnAttempt = func(a Attempt) { reasons = append(reasons, a.Reason) }

	resp, err := post(t, tr, s.URL, `{}`)
	require.NoError(t, err)
	assert.Equal(t, 503, resp.StatusCode)
	assert.Len(t, s.Requests(), 3, "two retries paid from the budget")
	assert.ErrorIs(t, reasons[len(reasons)-1], ErrRetryBudget)

	reasons = nil
	_, err = post(t, tr, s.URL, `{}`)
	require.NoError(t, err)
	assert.Len(t, s.Requests(), 4, "first attempts are never blocked; no retry is left")
	assert.Equal(t, []error{ErrRetryBudget}, reasons)
}

func TestRetryBudgetRefundsSuccessfulRetries(t *testing.T) {
	b := newRetryBudget(0, 2)
	b.charge()
	b.refund()
	b.charge()
	require.True(t, b.has())
	b.charge()
	assert.False(t, b.has())
	b.charge()
	b.refund()
	assert.True(t, b.has(), "a charge on an empty budget is not a debt")
	b.charge()
	b.earn()
	assert.False(t, b.has(), "ratio 0 earns nothing")
	assert.Nil(t, newRetryBudget(-1, 5), "negative ratio: no budget")
	var off *retryBudget
	off.charge()
	assert.True(t, off.has())
}

// Alone, a call does not yield the probe past its bounds: the yield would
// take it past MaxElapsedTime (12 × 10 ms + 90 ms + 60 ms > 230 ms), so it
// probes when the probe is due.
func TestOutageProbeYieldStaysWithinTheCallsBounds(t *testing.T) {
	s := newScript(t, failingThenOK(503, pacing.OutageFailures)...)
	tr, clk := newTestTransport(t, nil, Policy{Name: "p", MaxAttempts: pacing.OutageFailures + 1, RetryBudgetRatio: -1,
		InitialInterval: 10 * time.Millisecond, Multiplier: 1, MaxElapsedTime: 230 * time.Millisecond})
	resp, err := getOnce(t, tr, s.URL)
	require.NoError(t, err)
	assert.Equal(t, 200, resp.StatusCode)
	assert.Len(t, s.Requests(), pacing.OutageFailures+1)
	assert.Equal(t, 90*time.Millisecond, clk.Waits()[pacing.OutageFailures])
}

func TestOutageHoldsRequestsWhileAProbeFindsTheProviderBack(t *testing.T) {
	s := newScript(t, failingThenOK(503, pacing.OutageFailures+1)...)
	tr, clk := newTestTransport(t, nil, Policy{Name: "p", MaxAttempts: 1})
	var sources []WaitSource
	for range pacing.OutageFailures {
		_, err := getOnce(t, tr, s.URL)
		require.NoError(t, err)
	}
	assert.Empty(t, clk.Waits())

	// Down: the next request waits for the probe slot, is the probe, and fails.
	resp, err := getOnce(t, tr, s.URL)
	require.NoError(t, err)
	assert.Equal(t, 503, resp.StatusCode)
	assert.Equal(t, []time.Duration{pacing.ProbeInterval}, clk.Waits())

	// The next probe succeeds and the provider is up again.
	tr.p.OnAttempt = func(a Attempt) { sources = append(sources, a.WaitSource) }
	resp, err = getOnce(t, tr, s.URL)
	require.NoError(t, err)
	assert.Equal(t, 200, resp.StatusCode)
	resp, err = getOnce(t, tr, s.URL)
	require.NoError(t, err)
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, []time.Duration{pacing.ProbeInterval, pacing.ProbeInterval}, clk.Waits(), "no wait once up")
	assert.Len(t, s.Requests(), pacing.OutageFailures+3)
}

// A failed probe costs its call an attempt: a call asks for the probe later
// by probeYield for each attempt it made, so that the probe goes to the call
// with the most attempts left (a new one), not to one that it would leave
// with none.
func TestOutageProbeGoesToTheCallWithMostAttemptsLeft(t *testing.T) {
	s := newScript(t, status(503, ""))
	const backoff = 10 * time.Millisecond
	tr, clk := newTestTransport(t, nil, Policy{Name: "p", MaxAttempts: pacing.OutageFailures + 1, RetryBudgetRatio: -1,
		InitialInterval: backoff, Multiplier: 1})
	resp, err := getOnce(t, tr, s.URL)
	require.NoError(t, err)
	assert.Equal(t, 503, resp.StatusCode)
	require.Len(t, s.Requests(), pacing.OutageFailures+1)
	// Down after the twelfth failure: the next attempt waits out its
	// backoff, then the rest of the probe interval and its yield.
	want := slices.Repeat([]time.Duration{backoff}, pacing.OutageFailures)
	want = append(want, 150*time.Millisecond) // 100 ms - 10 ms + 12 attempts × 5 ms
	assert.Equal(t, want, clk.Waits())

	// A new call asks without a yield.
	ctx, cancel := context.WithCancel(context.Background())
	tr.p.OnAttempt = func(Attempt) { cancel() } // one attempt is enough to see
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL, nil)
	if resp, err := tr.RoundTrip(req); err == nil {
		resp.Body.Close()
	}
	assert.Equal(t, pacing.ProbeInterval, clk.Waits()[len(want)])
}

func TestOutageHoldPastDeadline(t *testing.T) {
	s := newScript(t, status(503, ""))
	tr, _ := newTestTransport(t, nil, Policy{Name: "p", MaxAttempts: 1})
	for range pacing.OutageFailures {
		_, err := getOnce(t, tr, s.URL)
		require.NoError(t, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL, nil)
	resp, err := tr.RoundTrip(req)
	assert.Nil(t, resp)
	assert.ErrorIs(t, err, ErrUnavailable)
	assert.Len(t, s.Requests(), pacing.OutageFailures)
}

func TestCircuitBreakerFailsFastThenProbes(t *testing.T) {
	s := newScript(t, failingThenOK(500, pacing.OutageFailures)...)
	tr, clk := newTestTransport(t, nil, Policy{Name: "p", MaxAttempts: 1, BreakerCoolDown: 2 * time.Second})
	for range pacing.OutageFailures {
		_, err := getOnce(t, tr, s.URL)
		require.NoError(t, err)
	}
	resp, err := getOnce(t, tr, s.URL)
	assert.Nil(t, resp)
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.True(t, errors.Is(err, ErrCircuitOpen))
	assert.Equal(t, ClassServerError, e.Class)
	assert.Len(t, s.Requests(), pacing.OutageFailures, "failed fast: nothing sent")

	clk.Sleep(context.Background(), 2*time.Second) // the cool-down passes
	resp, err = getOnce(t, tr, s.URL)
	require.NoError(t, err)
	assert.Equal(t, 200, resp.StatusCode, "a probe went through")
	resp, err = getOnce(t, tr, s.URL)
	require.NoError(t, err)
	assert.Equal(t, 200, resp.StatusCode, "closed again")
}

func TestAdaptiveRateAfterRepeated429s(t *testing.T) {
	l := NewLimiter()
	ctx := context.Background()
	now := t0
	// 20 requests in one second, then two 429s without guidance.
	for range 20 {
		d, _, err := l.Take(ctx, "p", nil, now)
		require.NoError(t, err)
		require.Zero(t, d)
		now = now.Add(50 * time.Millisecond)
	}
	throttled := Signal{Limit: -1, Remaining: -1, Throttled: true}
	require.NoError(t, l.Observe(ctx, "p", now, throttled))
	d, _, _ := l.Take(ctx, "p", nil, now)
	assert.Zero(t, d, "one 429 is not a trend")
	require.NoError(t, l.Observe(ctx, "p", now, throttled))

	// The rate is now 0.7 × the measured rate: requests are spaced.
	d1, _, _ := l.Take(ctx, "p", nil, now)
	d2, src, _ := l.Take(ctx, "p", nil, now)
	assert.Zero(t, d1)
	assert.Equal(t, WaitRateLimit, src)
	assert.InDelta(t, float64(time.Second)/14, float64(d2), float64(5*time.Millisecond))

	// A 429 with a Retry-After is a hold instead, not a rate change.
	l2 := NewLimiter()
	for range 2 {
		require.NoError(t, l2.Observe(ctx, "p", t0, Signal{Limit: -1, Remaining: -1, Throttled: true, RetryAt: t0.Add(time.Second)}))
	}
	d, src, _ = l2.Take(ctx, "p", nil, t0)
	assert.Equal(t, time.Second, d)
	assert.Equal(t, WaitRetryAfter, src)
	d, _, _ = l2.Take(ctx, "p", nil, t0.Add(time.Second))
	assert.Zero(t, d)

	// Successes raise the rate back until it no longer binds.
	for range 300 {
		now = now.Add(time.Second / 14)
		l.Take(ctx, "p", nil, now)
		require.NoError(t, l.Observe(ctx, "p", now, Signal{Limit: -1, Remaining: -1, OK: true}))
	}
	assert.Zero(t, l.(*localLimiter).scope("p").adaptive.Limit(), "recovered")
}

// A token bucket that makes a request wait gives the adaptive rate's place
// back: the next request may take it.
func TestAdaptiveRateGivesBackItsPlaceWhenABucketWaits(t *testing.T) {
	l := NewLimiter()
	ctx := context.Background()
	now := t0
	for range 20 {
		l.Take(ctx, "p/pay", nil, now)
		now = now.Add(50 * time.Millisecond)
	}
	throttled := Signal{Limit: -1, Remaining: -1, Throttled: true}
	require.NoError(t, l.Observe(ctx, "p/pay", now, throttled))
	require.NoError(t, l.Observe(ctx, "p/pay", now, throttled)) // 14/s
	limits := []Limit{{Name: "pay", Rate: 1, Burst: 1}}
	d, _, _ := l.Take(ctx, "p/pay", limits, now)
	require.Zero(t, d)
	now = now.Add(100 * time.Millisecond) // the adaptive rate has a place again, the bucket not
	d, src, _ := l.Take(ctx, "p/pay", limits, now)
	assert.Equal(t, 900*time.Millisecond, d)
	assert.Equal(t, WaitRateLimit, src)
	d, _, _ = l.Take(ctx, "p/pay", nil, now)
	assert.Zero(t, d, "the place the bucket's wait did not use")
	d, _, _ = l.Take(ctx, "p/pay", nil, now)
	assert.InDelta(t, float64(time.Second)/14, float64(d), float64(time.Millisecond))
}

type failingLimiter struct{}

func (failingLimiter) Take(context.Context, string, []Limit, time.Time) (time.Duration, WaitSource, error) {
	return 0, WaitNone, errors.New("store down")
}

func (failingLimiter) Observe(context.Context, string, time.Time, Signal) error {
	return errors.New("store down")
}

func TestLimiterErrorDoesNotStopPayments(t *testing.T) {
	s := newScript(t, status(200, ""))
	tr, _ := newTestTransport(t, nil, Policy{Name: "p", Limiter: failingLimiter{}})
	resp, err := getOnce(t, tr, s.URL)
	require.NoError(t, err)
	assert.Equal(t, 200, resp.StatusCode)
}

func TestRetryBudgetErrorKeepsTheCause(t *testing.T) {
	p := Policy{Name: "p", RetryBudgetBurst: 1, RetryBudgetRatio: 0.0001}
	tr, _ := newTestTransport(t, nil, p)
	req, _ := http.NewRequest(http.MethodGet, "http://"+closedAddr(t), nil)
	resp, err := tr.RoundTrip(req)
	assert.Nil(t, resp)
	assert.ErrorIs(t, err, ErrRetryBudget)
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, ClassNetwork, e.Class)
	assert.Equal(t, 2, e.Attempts)
	var op interface{ Timeout() bool }
	assert.ErrorAs(t, err, &op, "the dial error is still reachable")
}

func TestDownScopes(t *testing.T) {
	l := NewLimiter().(interface{ DownScopes() []string })
	lim := l.(Limiter)
	ctx := context.Background()
	assert.Empty(t, l.DownScopes())
	for range pacing.OutageFailures {
		require.NoError(t, lim.Observe(ctx, "p/b", t0, Signal{Limit: -1, Remaining: -1, Failed: true}))
		require.NoError(t, lim.Observe(ctx, "p/a", t0, Signal{Limit: -1, Remaining: -1, Failed: true}))
	}
	assert.Equal(t, []string{"p/a", "p/b"}, l.DownScopes())
	require.NoError(t, lim.Observe(ctx, "p/a", t0, Signal{Limit: -1, Remaining: -1, OK: true}))
	assert.Equal(t, []string{"p/b"}, l.DownScopes())
}

// The account is held on evidence about the account only: a provider
// failing across its last requests, not a run of failures that interleaved
// successes break up at any concurrency, and not a Retry-After on one 5xx.
func TestOutageIsAFailureRateOverTheLastRequests(t *testing.T) {
	lim := NewLimiter()
	ctx := context.Background()
	downScopes := func() []string { return lim.(interface{ DownScopes() []string }).DownScopes() }
	failed := Signal{Limit: -1, Remaining: -1, Failed: true}
	ok := Signal{Limit: -1, Remaining: -1, OK: true}
	for i := range 300 { // two in five fail, in any order
		sig := ok
		if i%5 < 2 {
			sig = failed
		}
		require.NoError(t, lim.Observe(ctx, "p", t0, sig))
	}
	assert.Empty(t, downScopes(), "two in five requests failing is not an outage")

	// An outage after a long run of successes: the successes before it do
	// not dilute it; the twelfth failure brings the scope down.
	for range 500 {
		require.NoError(t, lim.Observe(ctx, "q", t0, ok))
	}
	for range pacing.OutageFailures - 1 {
		require.NoError(t, lim.Observe(ctx, "q", t0, failed))
	}
	assert.Empty(t, downScopes())
	require.NoError(t, lim.Observe(ctx, "q", t0, failed))
	assert.Equal(t, []string{"q"}, downScopes())

	// Interleaved with successes, twelve failures of the last twenty.
	for i := range 20 {
		sig := ok
		if i%5 >= 2 {
			sig = failed
		}
		require.NoError(t, lim.Observe(ctx, "r", t0, sig))
	}
	assert.Equal(t, []string{"q", "r"}, downScopes())
}

func TestRetryAfterOnA5xxHoldsOnlyItsRequest(t *testing.T) {
	for _, code := range []int{500, 503, 404} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			s := newScript(t, status(code, "", "Retry-After", "30"), status(200, ""))
			tr, clk := newTestTransport(t, nil, Policy{Name: "p", MaxAttempts: 1})
			for range 2 {
				_, err := getOnce(t, tr, s.URL)
				require.NoError(t, err)
			}
			assert.Empty(t, clk.Waits(), "the next call is not held")
			assert.Len(t, s.Requests(), 2)
		})
	}
	// A 429's Retry-After is about the account: the next call waits.
	s := newScript(t, status(429, "", "Retry-After", "3"), status(200, ""))
	tr, clk := newTestTransport(t, nil, Policy{Name: "p", MaxAttempts: 1})
	for range 2 {
		_, err := getOnce(t, tr, s.URL)
		require.NoError(t, err)
	}
	assert.Equal(t, []time.Duration{3 * time.Second}, clk.Waits())
}

// A 429 replayed for the same key (ORZCash stores it) is no new evidence
// about the account: it holds the account once, not at every replay.
func TestRepeated429ForOneKeyHoldsTheAccountOnce(t *testing.T) {
	s := newScript(t, status(429, "", "Retry-After", "2"))
	p := keyed()
	p.MaxAttempts = 3
	lim := NewLimiter()
	p.Limiter = lim
	var clk *fakeClock
	var held []time.Duration // the account's hold seen after each attempt
	p.OnAttempt = func(Attempt) {
		d, _, err := lim.Take(context.Background(), "test", nil, clk.Now())
		require.NoError(t, err)
		held = append(held, d)
	}
	tr, clk := newTestTransport(t, nil, p)
	_, err := post(t, tr, s.URL, `{}`)
	require.NoError(t, err)
	assert.Equal(t, []time.Duration{2 * time.Second, 2 * time.Second}, clk.Waits(), "the call waits each Retry-After")
	assert.Equal(t, []time.Duration{2 * time.Second, 0, 0}, held,
		"the first 429 holds the account; its replays hold it no longer")
}

// A 429 whose own quota fields say the account has requests left holds only
// its own retry: it is not evidence that the account is spent.
func Test429WithQuotaLeftHoldsOnlyItsRequest(t *testing.T) {
	reset := strconv.FormatInt(t0.Add(time.Second).Unix(), 10)
	s := newScript(t, status(429, "", "Retry-After", "1", "X-RateLimit-Limit", "100", "X-RateLimit-Remaining", "87",
		"X-RateLimit-Reset", reset), status(200, ""))
	tr, clk := newTestTransport(t, nil, Policy{Name: "p", MaxAttempts: 1})
	for range 2 {
		_, err := getOnce(t, tr, s.URL)
		require.NoError(t, err)
	}
	assert.Empty(t, clk.Waits(), "the next call is not held")
}

// Scopes of one provider share its provider-wide bucket: calls racing in
// several scopes for its last token send once, never more.
func TestSharedBucketLastTokenGoesOnce(t *testing.T) {
	for range 50 {
		lim := NewLimiter()
		limits := []Limit{{Name: "all", Rate: 1, Burst: 1}}
		var sent atomic.Int32
		var wg sync.WaitGroup
		for i := range 16 {
			wg.Go(func() {
				scope := fmt.Sprintf("p/s%d", i%4)
				if d, _, err := lim.Take(context.Background(), scope, limits, t0); err == nil && d == 0 {
					sent.Add(1)
				}
			})
		}
		wg.Wait()
		require.Equal(t, int32(1), sent.Load(), "one token, sent %d times", sent.Load())
	}
}
