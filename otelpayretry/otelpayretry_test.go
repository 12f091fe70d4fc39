package otelpayretry_test

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/payretry/payretry"
	"github.com/payretry/payretry/otelpayretry"
)

const (
	post503  = "http.request.method=POST,payretry.class=server_error,payretry.provider=smartretry"
	post429  = "http.request.method=POST,payretry.class=rate_limited,payretry.provider=smartretry"
	postOK   = "http.request.method=POST,payretry.class=success,payretry.provider=smartretry"
	provider = "payretry.provider=smartretry"
)

// scopesUp is the down_scopes gauge of fast() while no scope is down.
var scopesUp = map[string]int64{
	provider + ",payretry.scope=smartretry":           0,
	provider + ",payretry.scope=smartretry/payment":   0,
	provider + ",payretry.scope=smartretry/recurring": 0,
	provider + ",payretry.scope=smartretry/status":    0,
}

// TestRetriedCall follows one payment through a 503, a 429 with
// Retry-After: 0 and a 201: every metric and span it makes.
func TestRetriedCall(t *testing.T) {
	tel := newTelemetry(t)
	srv := newScripted(t, status(503), status(429, "Retry-After", "0"), status(201))
	rt, err := otelpayretry.NewTransport(newBase(t), fast(), tel.options())
	require.NoError(t, err)

	ctx, checkout := tel.tp.Tracer("test").Start(context.Background(), "checkout")
	resp, err := post(t, ctx, rt, srv.URL+"/v1/payments/sale")
	checkout.End()
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	keys := []string{}
	for _, r := range srv.requests() {
		keys = append(keys, r.Header.Get("Idempotency-Key"))
	}
	require.Len(t, keys, 3)
	assert.NotEmpty(t, keys[0])
	assert.Equal(t, []string{keys[0], keys[0], keys[0]}, keys, "the instrumentation changes nothing that is sent")

	m := tel.collect(t)
	assert.ElementsMatch(t, []string{
		"payretry.call.duration", "payretry.attempts", "payretry.wait.duration", "payretry.limiter.down_scopes",
	}, keysOf(m), "no unknown outcome, hold or refusal was recorded")
	assert.Equal(t, map[string]int64{
		post503 + ",payretry.retry=false": 1,
		post429 + ",payretry.retry=true":  1,
		postOK + ",payretry.retry=true":   1,
	}, sums(t, m["payretry.attempts"]))
	assert.Equal(t, map[string]histogram{
		provider + ",payretry.wait.kind=retry,payretry.wait.source=backoff":     {1, 0.001}, // InitialInterval, no jitter
		provider + ",payretry.wait.kind=retry,payretry.wait.source=retry-after": {1, 0},
	}, histograms(t, m["payretry.wait.duration"]))
	calls := histograms(t, m["payretry.call.duration"])
	require.Len(t, calls, 1)
	call := calls["http.request.method=POST,payretry.outcome=success,"+provider]
	assert.Equal(t, uint64(1), call.Count)
	assert.Greater(t, call.Sum, 0.001, "the call lasted at least its backoff")
	assert.Less(t, call.Sum, 2.0)
	assert.Equal(t, scopesUp, sums(t, m["payretry.limiter.down_scopes"]))

	spans := tel.spans.Ended()
	require.Len(t, spans, 5, "checkout, the call and three attempts")
	callSpans := byName(spans, "payretry smartretry")
	require.Len(t, callSpans, 1)
	cs := callSpans[0]
	assert.Equal(t, trace.SpanKindInternal, cs.SpanKind())
	assert.Equal(t, checkout.SpanContext().SpanID(), cs.Parent().SpanID(), "the call span is a child of the caller's")
	host, port := hostPort(t, srv.URL)
	assert.Equal(t, map[string]string{
		"payretry.provider": "smartretry", "http.request.method": "POST",
		"server.address": host, "server.port": port,
		"payretry.outcome": "success", "payretry.attempts": "3", "http.response.status_code": "201",
	}, spanAttrs(cs.Attributes()))
	assert.Equal(t, codes.Unset, cs.Status().Code)
	require.Len(t, cs.Events(), 2)
	assert.Equal(t, "payretry.wait", cs.Events()[0].Name)
	assert.Equal(t, map[string]string{"payretry.wait.source": "backoff", "payretry.wait.duration": "0.001"}, spanAttrs(cs.Events()[0].Attributes))
	assert.Equal(t, "payretry.wait", cs.Events()[1].Name)
	assert.Equal(t, map[string]string{"payretry.wait.source": "retry-after", "payretry.wait.duration": "0"}, spanAttrs(cs.Events()[1].Attributes))

	attempts := byName(spans, "POST")
	require.Len(t, attempts, 3)
	url := srv.URL + "/v1/payments/sale"
	base := map[string]string{"http.request.method": "POST", "server.address": host, "server.port": port, "url.full": url}
	want := []map[string]string{
		with(base, "http.response.status_code", "503", "error.type", "server_error"),
		with(base, "http.response.status_code", "429", "error.type", "rate_limited", "http.request.resend_count", "1"),
		with(base, "http.response.status_code", "201", "http.request.resend_count", "2"),
	}
	wantStatus := []codes.Code{codes.Error, codes.Error, codes.Unset}
	for i, a := range attempts {
		assert.Equal(t, trace.SpanKindClient, a.SpanKind())
		assert.Equal(t, cs.SpanContext().SpanID(), a.Parent().SpanID(), "attempt %d is a child of the call", i+1)
		assert.Equal(t, cs.SpanContext().TraceID(), a.SpanContext().TraceID())
		assert.Equal(t, want[i], spanAttrs(a.Attributes()), "attempt %d", i+1)
		assert.Equal(t, wantStatus[i], a.Status().Code, "attempt %d", i+1)
		assert.False(t, a.StartTime().Before(cs.StartTime()))
		assert.False(t, a.EndTime().After(cs.EndTime()))
		if i > 0 {
			assert.False(t, a.StartTime().Before(attempts[i-1].EndTime()), "attempts follow each other")
			assert.False(t, cs.Events()[i-1].Time.Before(attempts[i-1].EndTime()), "the wait follows attempt %d", i)
			assert.False(t, cs.Events()[i-1].Time.After(a.StartTime()), "the wait precedes attempt %d", i+1)
		}
	}
}

// TestOutcomes checks how a call that does not succeed is reported: failed or
// unknown, with its final attempt's reason, with and without a response.
func TestOutcomes(t *testing.T) {
	refused := closedURL(t)
	cases := []struct {
		name     string
		steps    []step
		method   string
		url      string // "" = the scripted server's
		policy   func(*payretry.Policy)
		wantErr  bool
		outcome  string
		attempts map[string]int64
		class    string // error.type of the call and of its last attempt
		reason   string // payretry.reason of the last attempt
		unknown  bool
		callWhy  string // payretry.reason of the call span
		refusals int64
	}{
		{
			name: "503 until exhausted", steps: []step{status(503), status(503), status(503)},
			outcome:  "unknown",
			attempts: map[string]int64{post503 + ",payretry.retry=false": 1, post503 + ",payretry.retry=true": 2},
			class:    "server_error", reason: "retries_exhausted", unknown: true,
		},
		{
			name: "400", steps: []step{status(400)},
			outcome:  "failed",
			attempts: map[string]int64{"http.request.method=POST,payretry.class=bad_request,payretry.provider=smartretry,payretry.retry=false": 1},
			class:    "bad_request", reason: "not_retryable",
		},
		{
			name: "retry budget spent", steps: []step{status(503), status(503)},
			policy:   func(p *payretry.Policy) { p.RetryBudgetBurst, p.RetryBudgetRatio = 1, 0.01 },
			outcome:  "unknown",
			attempts: map[string]int64{post503 + ",payretry.retry=false": 1, post503 + ",payretry.retry=true": 1},
			class:    "server_error", reason: "retry_budget", unknown: true, refusals: 1,
		},
		{
			name: "no answer to a keyed write", steps: []step{hangUp, hangUp, hangUp},
			wantErr: true, outcome: "unknown",
			attempts: map[string]int64{
				"http.request.method=POST,payretry.class=timeout,payretry.provider=smartretry,payretry.retry=false": 1,
				"http.request.method=POST,payretry.class=timeout,payretry.provider=smartretry,payretry.retry=true":  2,
			},
			class: "timeout", reason: "retries_exhausted", unknown: true,
		},
		{
			name: "refused", method: http.MethodGet, url: refused,
			wantErr: true, outcome: "failed",
			attempts: map[string]int64{
				"http.request.method=GET,payretry.class=network,payretry.provider=smartretry,payretry.retry=false": 1,
				"http.request.method=GET,payretry.class=network,payretry.provider=smartretry,payretry.retry=true":  2,
			},
			class: "network", reason: "retries_exhausted",
		},
		{
			name: "budget refuses a retry after no answer", steps: []step{hangUp, hangUp},
			policy:  func(p *payretry.Policy) { p.RetryBudgetBurst, p.RetryBudgetRatio = 1, 0.01 },
			wantErr: true, outcome: "unknown",
			attempts: map[string]int64{
				"http.request.method=POST,payretry.class=timeout,payretry.provider=smartretry,payretry.retry=false": 1,
				"http.request.method=POST,payretry.class=timeout,payretry.provider=smartretry,payretry.retry=true":  1,
			},
			class: "timeout", reason: "retry_budget", unknown: true, callWhy: "retry_budget", refusals: 1,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tel := newTelemetry(t)
			url := tc.url
			if url == "" {
				url = newScripted(t, tc.steps...).URL + "/v1/payments/sale"
			}
			p := fast()
			if tc.policy != nil {
				tc.policy(&p)
			}
			rt, err := otelpayretry.NewTransport(newBase(t), p, tel.options())
			require.NoError(t, err)
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			var resp *http.Response
			if method == http.MethodPost {
				resp, err = post(t, context.Background(), rt, url)
			} else {
				req, _ := http.NewRequest(method, url, nil)
				resp, err = rt.RoundTrip(req)
			}
			var perr *payretry.Error
			if tc.wantErr {
				require.ErrorAs(t, err, &perr)
			} else {
				require.NoError(t, err)
				require.ErrorAs(t, payretry.CheckResponse(resp), &perr)
			}
			require.Equal(t, tc.unknown, perr.OutcomeUnknown, "the test's premise")

			m := tel.collect(t)
			mattrs := "http.request.method=" + method + ",payretry.outcome=" + tc.outcome + "," + provider
			calls := histograms(t, m["payretry.call.duration"])
			assert.Equal(t, []string{mattrs}, keysOf(calls))
			assert.Equal(t, uint64(1), calls[mattrs].Count)
			assert.Equal(t, tc.attempts, sums(t, m["payretry.attempts"]))
			if tc.unknown {
				assert.Equal(t, map[string]int64{"http.request.method=" + method + "," + provider: 1}, sums(t, m["payretry.unknown_outcomes"]))
			} else {
				assert.NotContains(t, m, "payretry.unknown_outcomes")
			}
			if tc.refusals > 0 {
				assert.Equal(t, map[string]int64{provider: tc.refusals}, sums(t, m["payretry.retry_budget.refusals"]))
			} else {
				assert.NotContains(t, m, "payretry.retry_budget.refusals")
			}

			spans := tel.spans.Ended()
			cs := byName(spans, "payretry smartretry")
			require.Len(t, cs, 1)
			ca := spanAttrs(cs[0].Attributes())
			assert.Equal(t, tc.outcome, ca["payretry.outcome"])
			assert.Equal(t, tc.class, ca["error.type"])
			assert.Equal(t, tc.callWhy, ca["payretry.reason"])
			assert.Equal(t, codes.Error, cs[0].Status().Code)
			var n int64
			for _, v := range tc.attempts {
				n += v
			}
			attempts := byName(spans, method)
			require.Len(t, attempts, int(n))
			last := spanAttrs(attempts[len(attempts)-1].Attributes())
			assert.Equal(t, tc.class, last["error.type"])
			assert.Equal(t, tc.reason, last["payretry.reason"])
			if tc.unknown {
				assert.Equal(t, "true", last["payretry.outcome_unknown"])
			} else {
				assert.NotContains(t, last, "payretry.outcome_unknown")
			}
			if tc.wantErr {
				assert.NotContains(t, last, "http.response.status_code")
				assert.NotContains(t, ca, "http.response.status_code")
			}
			for _, a := range attempts[:len(attempts)-1] {
				assert.NotContains(t, spanAttrs(a.Attributes()), "payretry.reason", "only the last attempt says why none follows")
			}
			assert.Len(t, cs[0].Events(), int(n)-1, "a wait before each retry")
		})
	}
}

// TestHolds checks the limiter's holds: a token bucket of 20/s with a burst
// of one holds the second of two payments for up to 50 ms.
func TestHolds(t *testing.T) {
	tel := newTelemetry(t)
	srv := newScripted(t, status(201), status(201))
	p := fast()
	p.Limits = []payretry.Limit{{Name: "pay", Methods: []string{http.MethodPost}, Rate: 20, Burst: 1}}
	rt, err := otelpayretry.NewTransport(newBase(t), p, tel.options())
	require.NoError(t, err)
	for range 2 {
		_, err := post(t, context.Background(), rt, srv.URL+"/v1/payments/sale")
		require.NoError(t, err)
	}

	m := tel.collect(t)
	assert.Equal(t, map[string]int64{provider + ",payretry.wait.source=rate-limit": 1}, sums(t, m["payretry.limiter.holds"]))
	waits := histograms(t, m["payretry.wait.duration"])
	hold := provider + ",payretry.wait.kind=hold,payretry.wait.source=rate-limit"
	assert.Equal(t, []string{hold}, keysOf(waits))
	assert.Equal(t, uint64(1), waits[hold].Count)
	assert.Greater(t, waits[hold].Sum, 0.0)
	assert.LessOrEqual(t, waits[hold].Sum, 0.050)
	assert.Equal(t, map[string]int64{postOK + ",payretry.retry=false": 2}, sums(t, m["payretry.attempts"]))
	assert.Equal(t, map[string]int64{
		provider + ",payretry.scope=smartretry":     0,
		provider + ",payretry.scope=smartretry/pay": 0,
	}, sums(t, m["payretry.limiter.down_scopes"]))

	calls := byName(tel.spans.Ended(), "payretry smartretry")
	require.Len(t, calls, 2)
	assert.Empty(t, calls[0].Events())
	require.Len(t, calls[1].Events(), 1)
	ev := calls[1].Events()[0]
	assert.Equal(t, "payretry.hold", ev.Name)
	assert.Equal(t, map[string]string{
		"payretry.wait.source": "rate-limit", "payretry.wait.duration": strconv.FormatFloat(waits[hold].Sum, 'g', -1, 64),
	}, spanAttrs(ev.Attributes))
	assert.False(t, ev.Time.Before(calls[1].StartTime()), "the hold starts within the call")
	attempt := byName(tel.spans.Ended(), "POST")[1]
	gap := attempt.StartTime().Sub(ev.Time).Seconds()
	assert.GreaterOrEqual(t, gap, waits[hold].Sum-0.001, "the attempt starts when the hold ends")
	assert.Less(t, gap, waits[hold].Sum+0.025, "the attempt starts when the hold ends")
}

// TestDownScopes takes a scope down with failed requests in a row (the
// limiter's threshold, payretry.DefaultPacing) and up again with a probe that
// succeeds.
func TestDownScopes(t *testing.T) {
	tel := newTelemetry(t)
	failures := payretry.DefaultPacing().OutageFailures
	srv := newScripted(t, append(repeat(status(503), failures), status(201))...)
	p := fast()
	p.MaxAttempts = 1
	for i := range p.Limits {
		p.Limits[i].Rate = 0 // the classes scope signals, no bucket holds: only the outage does
	}
	rt, err := otelpayretry.NewTransport(newBase(t), p, tel.options())
	require.NoError(t, err)
	for range failures {
		_, err := post(t, context.Background(), rt, srv.URL+"/v1/payments/sale")
		require.NoError(t, err)
	}
	down := map[string]int64{}
	for k := range scopesUp {
		down[k] = 0
	}
	down[provider+",payretry.scope=smartretry/payment"] = 1
	m := tel.collect(t)
	assert.Equal(t, down, sums(t, m["payretry.limiter.down_scopes"]))
	assert.NotContains(t, m, "payretry.limiter.degraded", "the in-process limiter is never degraded")

	resp, err := post(t, context.Background(), rt, srv.URL+"/v1/payments/sale") // waits for the probe, which succeeds
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	m = tel.collect(t)
	assert.Equal(t, scopesUp, sums(t, m["payretry.limiter.down_scopes"]))
	assert.Equal(t, map[string]int64{provider + ",payretry.wait.source=outage": 1}, sums(t, m["payretry.limiter.holds"]))
	assert.Equal(t, map[string]int64{"http.request.method=POST," + provider: int64(failures)}, sums(t, m["payretry.unknown_outcomes"]))
}

// degradable is a limiter that says whether it is degraded, like
// redislimit's.
type degradable struct {
	payretry.Limiter
	degraded bool
}

func (d *degradable) Degraded() bool { return d.degraded }

func TestDegraded(t *testing.T) {
	tel := newTelemetry(t)
	lim := &degradable{Limiter: payretry.NewLimiter()}
	p := fast()
	p.Limiter = lim
	_, err := otelpayretry.NewTransport(newBase(t), p, tel.options())
	require.NoError(t, err)
	m := tel.collect(t)
	assert.Equal(t, map[string]int64{provider: 0}, sums(t, m["payretry.limiter.degraded"]))
	assert.NotContains(t, m, "payretry.limiter.down_scopes", "this limiter has no DownScopes")
	lim.degraded = true
	assert.Equal(t, map[string]int64{provider: 1}, sums(t, tel.collect(t)["payretry.limiter.degraded"]))
}

// TestSharedLimiter: each Transport reports its own provider's scopes of a
// shared limiter.
func TestSharedLimiter(t *testing.T) {
	tel := newTelemetry(t)
	lim := payretry.NewLimiter()
	a, b := payretry.Policy{Name: "a", Limiter: lim}, payretry.Policy{Name: "b", Limiter: lim}
	_, err := otelpayretry.NewTransport(newBase(t), a, tel.options())
	require.NoError(t, err)
	_, err = otelpayretry.NewTransport(newBase(t), b, tel.options())
	require.NoError(t, err)
	assert.Equal(t, map[string]int64{
		"payretry.provider=a,payretry.scope=a": 0,
		"payretry.provider=b,payretry.scope=b": 0,
	}, sums(t, tel.collect(t)["payretry.limiter.down_scopes"]))
}

// TestKeepsHooks: the caller's OnAttempt sees every attempt, after the
// instrumentation, and its Logger still logs.
func TestKeepsHooks(t *testing.T) {
	tel := newTelemetry(t)
	srv := newScripted(t, status(503), status(201))
	var seen []payretry.Attempt
	p := fast()
	p.OnAttempt = func(a payretry.Attempt) {
		// The attempt's span has ended by now: the call's is the
		// request's.
		assert.Equal(t, "payretry smartretry", spanName(trace.SpanFromContext(a.Request.Context())))
		seen = append(seen, a)
	}
	logs := &recordingHandler{}
	p.Logger = slogLogger(logs)
	rt, err := otelpayretry.NewTransport(newBase(t), p, tel.options())
	require.NoError(t, err)
	_, err = post(t, context.Background(), rt, srv.URL+"/v1/payments/sale")
	require.NoError(t, err)
	require.Len(t, seen, 2)
	assert.Equal(t, payretry.ClassServerError, seen[0].Class)
	assert.True(t, seen[0].Retry)
	assert.Equal(t, payretry.ClassSuccess, seen[1].Class)
	assert.Equal(t, []string{"payretry: retrying"}, logs.messages())
	assert.True(t, logs.traced(), "the log line carries the call's span in its context")
}

// TestPolicy instruments a Policy for a Transport the caller builds: attempt
// spans after the fact under the caller's span, which gets the waits.
func TestPolicy(t *testing.T) {
	tel := newTelemetry(t)
	srv := newScripted(t, status(503), status(503), status(503))
	calls := 0
	p := fast()
	p.OnAttempt = func(payretry.Attempt) { calls++ }
	p.Limiter = payretry.NewLimiter()
	rt, err := payretry.NewTransport(newBase(t), otelpayretry.Policy(p, tel.options()))
	require.NoError(t, err)

	ctx, checkout := tel.tp.Tracer("test").Start(context.Background(), "checkout")
	resp, err := post(t, ctx, rt, srv.URL+"/v1/payments/sale")
	checkout.End()
	require.NoError(t, err)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, 3, calls, "the caller's hook")

	m := tel.collect(t)
	assert.NotContains(t, m, "payretry.call.duration", "needs NewTransport")
	assert.Equal(t, map[string]int64{post503 + ",payretry.retry=false": 1, post503 + ",payretry.retry=true": 2}, sums(t, m["payretry.attempts"]))
	assert.Equal(t, map[string]int64{"http.request.method=POST," + provider: 1}, sums(t, m["payretry.unknown_outcomes"]),
		"from the last attempt")
	assert.Equal(t, map[string]histogram{
		provider + ",payretry.wait.kind=retry,payretry.wait.source=backoff": {2, 0.003},
	}, histograms(t, m["payretry.wait.duration"]))
	assert.Equal(t, scopesUp, sums(t, m["payretry.limiter.down_scopes"]))

	spans := tel.spans.Ended()
	require.Len(t, spans, 4)
	root := byName(spans, "checkout")[0]
	attempts := byName(spans, "POST")
	require.Len(t, attempts, 3)
	for i, a := range attempts {
		assert.Equal(t, root.SpanContext().SpanID(), a.Parent().SpanID())
		assert.Equal(t, "503", spanAttrs(a.Attributes())["http.response.status_code"])
		assert.Equal(t, trace.SpanKindClient, a.SpanKind())
		assert.True(t, a.EndTime().After(a.StartTime()), "attempt %d lasted", i+1)
		if i > 0 {
			assert.Equal(t, "2", spanAttrs(attempts[2].Attributes())["http.request.resend_count"])
			assert.True(t, a.StartTime().After(attempts[i-1].EndTime()), "attempt %d came after the wait", i+1)
		}
	}
	assert.Equal(t, "retries_exhausted", spanAttrs(attempts[2].Attributes())["payretry.reason"])
	require.Len(t, root.Events(), 2)
	assert.Equal(t, "payretry.wait", root.Events()[1].Name)
	assert.Equal(t, "0.002", spanAttrs(root.Events()[1].Attributes)["payretry.wait.duration"])
}

// TestPolicyWithoutLimiter: without a Limiter the gauges have nothing to
// read, and the rest works.
func TestPolicyWithoutLimiter(t *testing.T) {
	tel := newTelemetry(t)
	srv := newScripted(t, status(201))
	rt, err := payretry.NewTransport(newBase(t), otelpayretry.Policy(fast(), tel.options()))
	require.NoError(t, err)
	_, err = post(t, context.Background(), rt, srv.URL+"/v1/payments/sale")
	require.NoError(t, err)
	m := tel.collect(t)
	assert.Equal(t, []string{"payretry.attempts"}, keysOf(m))
	assert.Len(t, tel.spans.Ended(), 1)
}

// TestInvalidPolicy: NewTransport returns payretry's error.
func TestInvalidPolicy(t *testing.T) {
	p := fast()
	p.MaxAttempts = -1
	rt, err := otelpayretry.NewTransport(nil, p, otelpayretry.Options{})
	assert.Nil(t, rt)
	assert.ErrorContains(t, err, "MaxAttempts")
}

// TestGlobalNoop runs with the global providers, no-ops when no SDK is
// installed: the calls go through and the caller's hook runs.
func TestGlobalNoop(t *testing.T) {
	srv := newScripted(t, status(503), status(201))
	n := 0
	p := fast()
	p.OnAttempt = func(a payretry.Attempt) { n++ }
	rt, err := otelpayretry.NewTransport(newBase(t), p, otelpayretry.Options{})
	require.NoError(t, err)
	resp, err := post(t, context.Background(), rt, srv.URL+"/v1/payments/sale")
	require.NoError(t, err)
	assert.Equal(t, http.StatusCreated, resp.StatusCode)
	assert.Equal(t, 2, n)
	assert.NotEmpty(t, resp.Request.Header.Get("Idempotency-Key"), "resp.Request is the final attempt's")
}

// TestConcurrentCalls: spans and counts stay per call under concurrency.
func TestConcurrentCalls(t *testing.T) {
	tel := newTelemetry(t)
	srv := newScripted(t, repeat(status(200), 100)...)
	p := fast()
	p.Limits = nil
	rt, err := otelpayretry.NewTransport(newBase(t), p, tel.options())
	require.NoError(t, err)
	errs := make(chan error, 10)
	for range 10 {
		go func() {
			var err error
			for range 10 {
				if _, e := post(t, context.Background(), rt, srv.URL+"/pay"); e != nil {
					err = e
				}
			}
			errs <- err
		}()
	}
	for range 10 {
		require.NoError(t, <-errs)
	}
	m := tel.collect(t)
	assert.Equal(t, map[string]int64{postOK + ",payretry.retry=false": 100}, sums(t, m["payretry.attempts"]))
	assert.Equal(t, uint64(100), histograms(t, m["payretry.call.duration"])["http.request.method=POST,payretry.outcome=success,"+provider].Count)
	spans := tel.spans.Ended()
	children := map[trace.SpanID]int{}
	for _, s := range byName(spans, "POST") {
		children[s.Parent().SpanID()]++
	}
	calls := byName(spans, "payretry smartretry")
	require.Len(t, calls, 100)
	for _, c := range calls {
		assert.Equal(t, 1, children[c.SpanContext().SpanID()])
	}
}

// TestFollowUpCall: a call made with the context of an earlier call's
// response gets attempts of its own, under its own call span.
func TestFollowUpCall(t *testing.T) {
	tel := newTelemetry(t)
	srv := newScripted(t, status(201), status(200))
	rt, err := otelpayretry.NewTransport(newBase(t), fast(), tel.options())
	require.NoError(t, err)
	resp, err := post(t, context.Background(), rt, srv.URL+"/v1/payments/sale")
	require.NoError(t, err)
	req, err := http.NewRequestWithContext(resp.Request.Context(), http.MethodGet, srv.URL+"/v1/payments/status/order-1", nil)
	require.NoError(t, err)
	resp, err = rt.RoundTrip(req)
	require.NoError(t, err)
	resp.Body.Close()
	spans := tel.spans.Ended()
	calls := byName(spans, "payretry smartretry")
	require.Len(t, calls, 2)
	get := byName(spans, "GET")
	require.Len(t, get, 1)
	assert.Equal(t, calls[1].SpanContext().SpanID(), get[0].Parent().SpanID(), "the GET's attempt is under its own call")
	assert.Equal(t, "1", spanAttrs(calls[1].Attributes())["payretry.attempts"])
}

func repeat(s step, n int) []step {
	out := make([]step, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// closedURL returns the URL of a loopback port that refuses connections.
func closedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return "http://" + addr + "/v1/payments/status/order-1"
}

func hostPort(t *testing.T, raw string) (string, string) {
	t.Helper()
	host, port, err := net.SplitHostPort(raw[len("http://"):])
	require.NoError(t, err)
	return host, port
}

func with(base map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range base {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

func keysOf[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func spanName(s trace.Span) string {
	if ro, ok := s.(sdktrace.ReadOnlySpan); ok {
		return ro.Name()
	}
	return ""
}

// TestHookAlone calls an instrumented policy's hook with an Attempt made by
// hand, without a request or a start time.
func TestHookAlone(t *testing.T) {
	tel := newTelemetry(t)
	p := otelpayretry.Policy(payretry.Policy{Name: "x"}, tel.options())
	p.OnAttempt(payretry.Attempt{
		Provider: "x", Number: 2, Method: "PURGE", Class: payretry.ClassServerError, StatusCode: 500,
		Duration: 3 * time.Millisecond, Retry: true, Wait: time.Second, WaitSource: payretry.WaitBackoff,
	})
	m := tel.collect(t)
	assert.Equal(t, map[string]int64{
		"http.request.method=_OTHER,payretry.class=server_error,payretry.provider=x,payretry.retry=true": 1,
	}, sums(t, m["payretry.attempts"]))
	assert.Equal(t, map[string]histogram{
		"payretry.provider=x,payretry.wait.kind=retry,payretry.wait.source=backoff": {1, 1},
	}, histograms(t, m["payretry.wait.duration"]))
	spans := tel.spans.Ended()
	require.Len(t, spans, 1)
	assert.Equal(t, "HTTP", spans[0].Name())
	assert.Equal(t, map[string]string{
		"http.request.method": "_OTHER", "http.request.resend_count": "1",
		"http.response.status_code": "500", "error.type": "server_error",
	}, spanAttrs(spans[0].Attributes()))
	assert.Equal(t, 3*time.Millisecond, spans[0].EndTime().Sub(spans[0].StartTime()))
}

// TestThrottledCall: a call that the limiter refuses before any attempt
// (its hold would pass the deadline) has a call span and a duration, and no
// attempt.
func TestThrottledCall(t *testing.T) {
	tel := newTelemetry(t)
	srv := newScripted(t, status(201))
	p := fast()
	p.Limits = []payretry.Limit{{Name: "pay", Methods: []string{http.MethodPost}, Rate: 1, Burst: 1}}
	rt, err := otelpayretry.NewTransport(newBase(t), p, tel.options())
	require.NoError(t, err)
	_, err = post(t, context.Background(), rt, srv.URL+"/v1/payments/sale")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = post(t, ctx, rt, srv.URL+"/v1/payments/sale") // the bucket refills in 1 s
	require.ErrorIs(t, err, payretry.ErrThrottled)

	m := tel.collect(t)
	assert.Equal(t, map[string]int64{postOK + ",payretry.retry=false": 1}, sums(t, m["payretry.attempts"]))
	calls := histograms(t, m["payretry.call.duration"])
	assert.Equal(t, uint64(1), calls["http.request.method=POST,payretry.outcome=failed,"+provider].Count)
	cs := byName(tel.spans.Ended(), "payretry smartretry")
	require.Len(t, cs, 2)
	a := spanAttrs(cs[1].Attributes())
	assert.Equal(t, "0", a["payretry.attempts"])
	assert.Equal(t, "throttled", a["payretry.reason"])
	assert.Equal(t, "rate_limited", a["error.type"])
	assert.Equal(t, "failed", a["payretry.outcome"])
	assert.Len(t, byName(tel.spans.Ended(), "POST"), 1, "the first call's attempt only")
}
