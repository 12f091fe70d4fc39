package payretrytest

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPickFrequenciesFollowThePlan(t *testing.T) {
	plan := FaultPlan{Seed: 5, FailBefore: 0.1, RateLimited: 0.2, FailAfter: 0.05, Stall: 0.15, Reset: 0.1, Latency: time.Second, LatencyRate: 0.3}
	const n = 20000
	got := map[Fault]int{}
	statuses := map[int]int{}
	for i := range n {
		ref := fmt.Sprintf("ref-%d", i%500)
		got[plan.pick(ref, i/500)]++
		if plan.delayed(ref, i/500) {
			got[FaultLatency]++
		}
		statuses[plan.status(ref, i/500, 500, 502, 503)]++
	}
	for f, want := range map[Fault]float64{
		FaultFailBefore: 0.1, FaultRateLimited: 0.2, FaultFailAfter: 0.05, FaultStall: 0.15,
		FaultReset: 0.1, "": 0.4, FaultLatency: 0.3,
	} {
		assert.InDelta(t, want, float64(got[f])/n, 0.015, "fault %q", f)
	}
	for _, s := range []int{500, 502, 503} {
		assert.InDelta(t, 1.0/3, float64(statuses[s])/n, 0.015, "status %d", s)
	}
}

func TestDrawDependsOnSeedReferenceAndN(t *testing.T) {
	p := FaultPlan{Seed: 1}
	assert.Equal(t, p.draw(saltFault, "a", 0), p.draw(saltFault, "a", 0))
	for _, other := range []float64{
		p.draw(saltFault, "a", 1), p.draw(saltFault, "b", 0),
		p.draw(saltLatency, "a", 0), FaultPlan{Seed: 2}.draw(saltFault, "a", 0),
	} {
		assert.NotEqual(t, p.draw(saltFault, "a", 0), other)
	}
}

func TestLimiterWindows(t *testing.T) {
	l := newLimiter(SmartRetry, Options{Limits: Limits{Payment: 2, All: 3}})
	t0 := time.Unix(1000, 0)
	for i, tc := range []struct {
		at        time.Duration
		key       string
		c         class
		ok        bool
		limit     int
		remaining int
		reset     int64
	}{
		{0, "a", classPayment, true, 2, 1, 1001},
		{999 * time.Millisecond, "a", classPayment, true, 2, 0, 1001},
		{999 * time.Millisecond, "a", classPayment, false, 2, 0, 1001},
		{999 * time.Millisecond, "b", classPayment, true, 2, 1, 1001},
		{999 * time.Millisecond, "a", classStatus, true, 3, 0, 1001}, // the combined limit binds
		{999 * time.Millisecond, "a", classStatus, false, 3, 0, 1001},
		{time.Second, "a", classPayment, true, 2, 1, 1002},
	} {
		q := l.take(tc.key, tc.c, t0.Add(tc.at))
		assert.Equal(t, tc.ok, q.ok, i)
		assert.Equal(t, tc.limit, q.limit, i)
		assert.Equal(t, tc.remaining, q.remaining, i)
		assert.Equal(t, tc.reset, q.reset, i)
	}
	assert.Equal(t, "1", quota{reset: 1001}.retryAfter(t0.Add(999*time.Millisecond)))
	assert.Equal(t, "1", quota{reset: 1001}.retryAfter(t0))
	assert.Equal(t, "1", quota{reset: 1001}.retryAfter(t0.Add(5*time.Second)))

	assert.Nil(t, newLimiter(Verto, Options{}))
	assert.Nil(t, newLimiter(Verto, Options{Limits: Limits{All: 5}}), "Limits is SmartRetry's")
}

func TestStores(t *testing.T) {
	for _, tc := range []struct {
		p      Provider
		status int
		want   bool
	}{
		{ORZCash, 500, true}, {ORZCash, 429, true}, {ORZCash, 400, true}, {ORZCash, 201, true},
		{Verto, 201, true}, {Verto, 400, true}, {Verto, 409, true}, {Verto, 429, false}, {Verto, 503, false},
		{SmartRetry, 201, true}, {SmartRetry, 500, false},
		{KeyStone, 201, true}, {KeyStone, 422, false}, {KeyStone, 500, false},
	} {
		assert.Equal(t, tc.want, tc.p.stores(tc.status), "%s %d", tc.p, tc.status)
	}
}

func TestIsUUID(t *testing.T) {
	assert.True(t, isUUID("123e4567-e89b-12d3-a456-426614174000"))
	assert.True(t, isUUID("123E4567-E89B-12D3-A456-426614174000"))
	for _, k := range []string{"", "order-1", "123e4567e89b12d3a456426614174000", "123e4567-e89b-12d3-a456-42661417400g", "123e4567-e89b-12d3-a456_426614174000"} {
		assert.False(t, isUUID(k), k)
	}
}

func TestParsePayment(t *testing.T) {
	p := parsePayment(strings.NewReader(`{"reference":"r","amount":10,"currency":"EUR","idempotency_key":"k"}`), true)
	require.False(t, p.malformed)
	require.Empty(t, p.invalid)
	assert.Equal(t, paymentRequest{reference: "r", amount: 10, currency: "EUR", key: "k", raw: p.raw}, p)

	p = parsePayment(strings.NewReader(`{"reference":1,"amount":1.5,"currency":null}`), false)
	assert.Equal(t, []fieldError{
		{Loc: []string{"body", "reference"}, Msg: "Input should be a valid string", Type: "string_type"},
		{Loc: []string{"body", "amount"}, Msg: "Input should be a valid integer", Type: "int_type"},
		{Loc: []string{"body", "currency"}, Msg: "Input should be a valid string", Type: "string_type"},
	}, p.invalid)

	for _, body := range []string{``, `null`, `"x"`, `{"a":1}{}`} {
		assert.True(t, parsePayment(strings.NewReader(body), false).malformed, body)
	}
	assert.Equal(t, http.StatusUnprocessableEntity,
		(&Server{p: KeyStone}).invalidResponse(p.invalid).status)
}

func TestPhaseAtAndDropFrequency(t *testing.T) {
	plan := FaultPlan{Seed: 3, Phases: []Phase{
		{Window: Window{Start: time.Second, End: 2 * time.Second}, Drop: 0.25},
		{Window: Window{Start: 1500 * time.Millisecond, End: 3 * time.Second}, Latency: time.Second},
	}}
	for _, tc := range []struct {
		at   time.Duration
		ok   bool
		drop float64
	}{
		{999 * time.Millisecond, false, 0}, {time.Second, true, 0.25},
		{1700 * time.Millisecond, true, 0.25}, // the first listed wins
		{2 * time.Second, true, 0}, {3 * time.Second, false, 0},
	} {
		ph, ok := plan.phaseAt(tc.at)
		assert.Equal(t, tc.ok, ok, tc.at)
		assert.Equal(t, tc.drop, ph.Drop, tc.at)
	}
	const n = 20000
	drops := 0
	for i := range n {
		if plan.dropped(plan.Phases[0], fmt.Sprintf("ref-%d", i%500), i/500) {
			drops++
		}
	}
	assert.InDelta(t, 0.25, float64(drops)/n, 0.015)
	assert.False(t, plan.dropped(plan.Phases[1], "ref-1", 0), "a phase without drops drops nothing")
}
