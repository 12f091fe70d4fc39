package payretry

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The decision, as tables: no HTTP, no clock.

func mustTransport(t *testing.T, p Policy) *Transport {
	t.Helper()
	tr, err := NewTransport(nil, p)
	require.NoError(t, err)
	return tr
}

// A keyed write that may be retried, and room for any wait.
var (
	keyedWrite = state{write: true, keyed: true, attempts: 1, replayable: true}
	roomy      = bounds{left: time.Hour, backoff: 100 * time.Millisecond, budget: true}
)

// answered is the provider's own answer.
func answered(class Class, status int) outcome {
	return outcome{class: class, status: status, sent: true, stored: true}
}

func TestDecide(t *testing.T) {
	generic := mustTransport(t, keyed())
	orz := mustTransport(t, ORZCash())
	verto := mustTransport(t, Verto())
	smart := mustTransport(t, SmartRetry())
	withRefresh := keyed()
	withRefresh.RefreshAuth = func(*http.Request) error { return nil }
	refresher := mustTransport(t, withRefresh)

	noAnswer := outcome{class: ClassTimeout, sent: true}
	neverLeft := outcome{class: ClassNetwork}
	withRA := func(o outcome, d time.Duration) outcome { o.retryAfter, o.hasRetryAfter = d, true; return o }
	st := func(f func(*state)) state { s := keyedWrite; f(&s); return s }
	bd := func(f func(*bounds)) bounds { b := roomy; f(&b); return b }

	cases := []struct {
		name string
		tr   *Transport
		s    state
		o    outcome
		b    bounds
		want decision
	}{
		{"success", generic, keyedWrite, answered(ClassSuccess, 201), roomy, decision{}},
		{"success settles an earlier unknown", generic, st(func(s *state) { s.unknown = true }), answered(ClassSuccess, 201), roomy,
			decision{}},
		{"5xx: same key, backoff, unknown", generic, keyedWrite, answered(ClassServerError, 503), roomy,
			decision{retry: true, wait: 100 * time.Millisecond, source: WaitBackoff, unknown: true}},
		{"5xx to a GET: known", generic, state{attempts: 1, replayable: true}, answered(ClassServerError, 503), roomy,
			decision{retry: true, wait: 100 * time.Millisecond, source: WaitBackoff}},
		{"ORZCash's own 5xx: new key", orz, keyedWrite, answered(ClassServerError, 500), roomy,
			decision{retry: true, wait: 100 * time.Millisecond, source: WaitBackoff, newKey: true}},
		{"ORZCash 429: new key", orz, keyedWrite, answered(ClassRateLimited, 429), roomy,
			decision{retry: true, wait: 100 * time.Millisecond, source: WaitBackoff, newKey: true}},
		{"ORZCash 429 after an unknown outcome: same key", orz, st(func(s *state) { s.unknown = true }),
			answered(ClassRateLimited, 429), roomy,
			decision{retry: true, wait: 100 * time.Millisecond, source: WaitBackoff, unknown: true}},
		{"ORZCash: a gateway's 5xx keeps the key", orz, keyedWrite, outcome{class: ClassServerError, status: 524, sent: true}, roomy,
			decision{retry: true, wait: 100 * time.Millisecond, source: WaitBackoff, unknown: true}},
		{"ORZCash: a gateway's 429 keeps the key", orz, keyedWrite, outcome{class: ClassRateLimited, status: 429, sent: true}, roomy,
			decision{retry: true, wait: 100 * time.Millisecond, source: WaitBackoff}},
		{"ORZCash time-out: same key", orz, keyedWrite, noAnswer, roomy,
			decision{retry: true, wait: 100 * time.Millisecond, source: WaitBackoff, unknown: true}},
		{"no answer without a key: not sent again", generic, st(func(s *state) { s.keyed = false }), noAnswer, roomy,
			decision{unknown: true, reason: ErrUnsafeRetry}},
		{"5xx without a key: not sent again", generic, st(func(s *state) { s.keyed = false }), answered(ClassServerError, 502), roomy,
			decision{unknown: true, reason: ErrUnsafeRetry}},
		{"never left without a key: sent again", generic, st(func(s *state) { s.keyed = false }), neverLeft, roomy,
			decision{retry: true, wait: 100 * time.Millisecond, source: WaitBackoff}},
		{"permanent: not retried", generic, keyedWrite, outcome{class: ClassNetwork, permanent: true}, roomy,
			decision{reason: ErrNotRetryable}},
		{"canceled: the context's error", generic, keyedWrite, outcome{class: ClassCanceled, sent: true, cause: context.Canceled}, roomy,
			decision{unknown: true, reason: context.Canceled}},
		{"400", generic, keyedWrite, answered(ClassBadRequest, 400), roomy, decision{reason: ErrNotRetryable}},
		{"400 after an unknown outcome stays unknown", generic, st(func(s *state) { s.unknown = true }),
			answered(ClassBadRequest, 400), roomy, decision{unknown: true, reason: ErrNotRetryable}},
		{"409 key in use: unknown", generic, keyedWrite, outcome{class: ClassConflict, status: 409, sent: true, keyInUse: true}, roomy,
			decision{unknown: true, reason: ErrNotRetryable}},
		{"409 state conflict: known", generic, keyedWrite, answered(ClassConflict, 409), roomy,
			decision{reason: ErrNotRetryable}},
		{"SmartRetry 409 with a key: unknown", smart, keyedWrite, answered(ClassConflict, 409), roomy,
			decision{unknown: true, reason: ErrNotRetryable}},
		{"SmartRetry 501: not in its statuses", smart, keyedWrite, answered(ClassServerError, 501), roomy,
			decision{unknown: true, reason: ErrNotRetryable}},
		{"compliance: never", generic, keyedWrite, outcome{class: ClassServerError, status: 503, sent: true, compliance: true}, roomy,
			decision{unknown: true, reason: ErrCompliance}},
		{"401 without RefreshAuth", generic, keyedWrite, answered(ClassUnauthorized, 401), roomy,
			decision{reason: ErrNotRetryable}},
		{"401: refresh and retry at once", refresher, keyedWrite, answered(ClassUnauthorized, 401), roomy,
			decision{retry: true, refresh: true}},
		{"401 without a key: retried after refresh", refresher, st(func(s *state) { s.keyed = false }),
			answered(ClassUnauthorized, 401), roomy, decision{retry: true, refresh: true}},
		{"401 once only", refresher, st(func(s *state) { s.refreshed = true }), answered(ClassUnauthorized, 401), roomy,
			decision{reason: ErrNotRetryable}},
		{"attempts exhausted", generic, st(func(s *state) { s.attempts = 4 }), answered(ClassServerError, 503), roomy,
			decision{unknown: true, reason: ErrRetriesExhausted}},
		{"body not replayable", generic, st(func(s *state) { s.replayable = false }), answered(ClassRateLimited, 429), roomy,
			decision{reason: ErrBodyNotReplayable}},
		{"budget spent", generic, keyedWrite, answered(ClassRateLimited, 429), bd(func(b *bounds) { b.budget = false }),
			decision{reason: ErrRetryBudget}},
		{"Retry-After wins over backoff", generic, keyedWrite, withRA(answered(ClassRateLimited, 429), 3*time.Second), roomy,
			decision{retry: true, wait: 3 * time.Second, source: WaitRetryAfter}},
		{"Retry-After beyond MaxRetryAfter: returned", generic, keyedWrite,
			withRA(answered(ClassRateLimited, 429), 2*time.Minute), roomy, decision{reason: ErrWaitTooLong}},
		{"wait past the time left: returned", generic, keyedWrite, answered(ClassRateLimited, 429),
			bd(func(b *bounds) { b.left = 50 * time.Millisecond }), decision{reason: ErrWaitTooLong}},
		{"Verto 5xx: at least 5 s", verto, keyedWrite, answered(ClassServerError, 503), roomy,
			decision{retry: true, wait: 5 * time.Second, source: WaitBackoff, unknown: true}},
		{"Verto 5xx: at most 10 s of backoff", verto, keyedWrite, answered(ClassServerError, 503),
			bd(func(b *bounds) { b.backoff = time.Minute }),
			decision{retry: true, wait: 10 * time.Second, source: WaitBackoff, unknown: true}},
		{"Verto 5xx: Retry-After 0 is not shorter than 5 s", verto, keyedWrite, withRA(answered(ClassServerError, 503), 0), roomy,
			decision{retry: true, wait: 5 * time.Second, source: WaitBackoff, unknown: true}},
		{"Verto 5xx: a longer Retry-After wins", verto, keyedWrite, withRA(answered(ClassServerError, 503), 30*time.Second), roomy,
			decision{retry: true, wait: 30 * time.Second, source: WaitRetryAfter, unknown: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, tc.tr.decide(tc.s, tc.o, tc.b))
		})
	}
}
