package payretry

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// HTTP/2: Go's client re-sends a request with a nil or NoBody body after a
// PROTOCOL_ERROR reset (http2shouldRetryRequest), whatever its GetBody: a
// keyless write without a body gets an empty one it cannot rewind.
func TestH2BodylessKeylessWriteIsNeverResentByTheBase(t *testing.T) {
	cases := []struct {
		name   string
		p      Policy
		method string
	}{
		{"generic POST", Policy{Name: "nokeys"}, http.MethodPost},
		{"KeyStone POST without body (confirm/reject)", KeyStone(), http.MethodPost},
		{"ORZCash DELETE (cancel a card)", ORZCash(), http.MethodDelete},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newResettingH2(t)
			base := s.client()
			defer base.CloseIdleConnections()
			tr, _ := newTestTransport(t, base, tc.p)
			req, err := http.NewRequest(tc.method, s.URL()+"/v1/settlements/s1/confirm", nil)
			require.NoError(t, err)
			resp, err := tr.RoundTrip(req)
			if resp != nil {
				resp.Body.Close()
			}
			t.Logf("resp=%v err=%v", resp != nil, err)
			assert.Len(t, s.executed(), 1, "a keyless write must execute at most once")
		})
	}
}

// orzStore is a loopback ORZCash-like server: every response to a key is stored
// and replayed for that key (ORZCash Access API, 4.3 Idempotency). edge, when
// it returns true, answers first in front of the store, as a CDN/WAF/gateway
// does, without storing anything.
type orzStore struct {
	*httptest.Server
	mu       sync.Mutex
	stored   map[string]string
	executed []string // "path key"
	seen     []string // keys in order
	edge     func(n int, r *http.Request, w http.ResponseWriter) bool
	n        int
}

func newORZStore(t *testing.T, edge func(n int, r *http.Request, w http.ResponseWriter) bool) *orzStore {
	s := &orzStore{stored: map[string]string{}, edge: edge}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		key := r.Header.Get("Idempotency-Key")
		s.mu.Lock()
		defer s.mu.Unlock()
		s.n++
		s.seen = append(s.seen, r.URL.Path+" "+key)
		if s.edge != nil && s.edge(s.n, r, w) {
			return
		}
		if body, ok := s.stored[key]; ok && key != "" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(201)
			io.WriteString(w, body)
			return
		}
		s.executed = append(s.executed, r.URL.Path+" "+key)
		body := fmt.Sprintf(`{"id":"obj_%d","path":%q}`, len(s.executed), r.URL.Path)
		if key != "" {
			s.stored[key] = body
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(201)
		io.WriteString(w, body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *orzStore) Executed() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.executed...)
}

// ORZCash: a 429 that ORZCash did not store (an edge, WAF or gateway rate
// limit without ORZCash's error body) must not move the chain to K1: a
// restarted process with the same operation id starts again at K0, which
// ORZCash would then execute a second time.
func TestORZCashGateway429KeepsTheChainAcrossRestart(t *testing.T) {
	s := newORZStore(t, func(n int, r *http.Request, w http.ResponseWriter) bool {
		if n == 1 { // the edge's rate limiter, in front of the idempotency store
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(429)
			io.WriteString(w, "Too Many Requests")
			return true
		}
		return false
	})
	pay := func() {
		tr, _ := newTestTransport(t, &http.Transport{}, ORZCash()) // a fresh process
		ctx := WithOperation(context.Background(), "order-8812/charge")
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/v1/payouts", strings.NewReader(`{"amount":1}`))
		resp, err := tr.RoundTrip(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, 201, resp.StatusCode)
	}
	pay() // K0 -> edge 429 -> K0 again -> 201 (executed); the process dies before recording it
	pay() // restart, same operation id: K0 reaches ORZCash for the first time
	t.Logf("keys seen: %v", s.seen)
	assert.Len(t, s.Executed(), 1, "one payment, one execution")
}

// ORZCash: a gateway's 5xx with a JSON body of another format (a nested
// Google-style error, an RFC 9457 problem, an error_code) is not ORZCash's
// stored answer: the key stays, and the outcome is unknown.
func TestORZCashGatewayJSON5xxIsNotORZCashs(t *testing.T) {
	bodies := []string{
		`{"error":{"code":503,"message":"The service is currently unavailable.","status":"UNAVAILABLE"}}`,
		`{"type":"https://gateway.example/problems/upstream-timeout","title":"Gateway Timeout","status":504}`,
		`{"error_code":"UPSTREAM_TIMEOUT","message":"upstream request timeout"}`,
	}
	for _, b := range bodies {
		t.Run(b[:20], func(t *testing.T) {
			s := newScript(t, status(503, b, "Content-Type", "application/json"), status(201, `{}`))
			p := ORZCash()
			var unknown []bool
			p.OnAttempt = func(a Attempt) { unknown = append(unknown, a.OutcomeUnknown) }
			tr, _ := newTestTransport(t, s.base, p)
			resp, err := post(t, tr, s.URL, `{"amount":1}`)
			require.NoError(t, err)
			keys := s.headers("Idempotency-Key")
			require.Len(t, keys, 2)
			assert.Equal(t, keys[0], keys[1], "a gateway's 5xx must keep the key")
			assert.True(t, unknown[0], "a gateway's 5xx leaves the outcome unknown")
			resp.Body.Close()
			assert.Equal(t, 201, resp.StatusCode, "retried with the same key")
		})
	}
}

// The operation id is a context value that later requests may carry too
// (resp.Request.Context() carries it to a follow-up): a request to another
// endpoint gets another key, or ORZCash would replay the first request's
// stored answer for it and never execute it.
func TestOperationKeysDifferByRequest(t *testing.T) {
	s := newORZStore(t, nil)
	tr, _ := newTestTransport(t, &http.Transport{}, ORZCash())
	ctx := WithOperation(context.Background(), "order-8812")
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/v1/transfers", strings.NewReader(`{"amount":1}`))
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	resp.Body.Close()

	// the follow-up, on the context the response carries
	req2, _ := http.NewRequestWithContext(resp.Request.Context(), http.MethodPost, s.URL+"/v1/payouts", strings.NewReader(`{"amount":2}`))
	resp2, err := tr.RoundTrip(req2)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp2.Body)
	resp2.Body.Close()
	t.Logf("payout answered %d %s; keys %v", resp2.StatusCode, b, s.seen)
	assert.Equal(t, 201, resp2.StatusCode)
	assert.Len(t, s.Executed(), 2, "the payout must execute (it was answered with the transfer's stored response)")
}

// A generic policy (no IdempotencyHeader) with a NewKey rule: the chain after
// the caller's own key derives from it, so that a restart walks the same keys.
func TestCallerKeyChainWithoutIdempotencyHeader(t *testing.T) {
	var second []string
	for i := 0; i < 2; i++ { // two processes
		s := newScript(t, status(500, `{"code":"E500","message":"stored"}`), status(201, `{}`))
		tr, _ := newTestTransport(t, s.base, Policy{Name: "gen", Rules: map[Class]Rule{ClassServerError: {Retry: true, NewKey: true}}})
		req, _ := http.NewRequest(http.MethodPost, s.URL, strings.NewReader(`{}`))
		req.Header.Set("Idempotency-Key", "caller-key-1")
		resp, err := tr.RoundTrip(req)
		require.NoError(t, err)
		resp.Body.Close()
		keys := s.headers("Idempotency-Key")
		require.Len(t, keys, 2)
		assert.Equal(t, "caller-key-1", keys[0], "the caller's key goes first")
		assert.NotEqual(t, "caller-key-1", keys[1], "NewKey: the retry carries the chain's next key")
		second = append(second, keys[1])
	}
	assert.Equal(t, second[0], second[1], "the chain from the caller's key must be the same in every process")
}

// RefreshAuth may replace the retry's headers: the call's key and correlation
// id are put back, so that no retry leaves without them.
func TestRefreshAuthKeepsTheKey(t *testing.T) {
	s := newScript(t, status(401, `{}`), stall, status(201, `{}`)) // the second executes, its answer too late
	p := Verto()
	p.AttemptTimeout = 100 * time.Millisecond
	p.RefreshAuth = func(r *http.Request) error {
		r.Header = http.Header{"Authorization": {"Bearer fresh"}, "Content-Type": {"application/json"}}
		return nil
	}
	var reported []string
	p.OnAttempt = func(a Attempt) { reported = append(reported, a.IdempotencyKey) }
	tr, _ := newTestTransport(t, s.base, p)
	resp, err := post(t, tr, s.URL, `{"amount":1}`)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 201, resp.StatusCode)
	keys := s.headers("Idempotency-Key")
	pvSame(t, keys, 3)
	assert.Equal(t, keys, reported, "the keys reported are the keys sent")
	corr := s.headers("Vfx-Correlation-Id")
	require.Len(t, corr, 3)
	assert.NotEmpty(t, corr[0])
	assert.Equal(t, []string{corr[0], corr[0], corr[0]}, corr, "the correlation id is put back after RefreshAuth")
}

// A quota header with neither Reset nor Retry-After holds the scope no longer
// than Policy.MaxRetryAfter.
func TestDefaultHoldWithinMaxRetryAfter(t *testing.T) {
	s := newScript(t, status(200, `{}`, "X-RateLimit-Remaining", "0"))
	p := Policy{Name: "x", MaxRetryAfter: 100 * time.Millisecond}
	var holds []time.Duration
	p.OnAttempt = func(a Attempt) { holds = append(holds, a.Hold) }
	tr, _ := newTestTransport(t, s.base, p)
	for i := 0; i < 2; i++ {
		req, _ := http.NewRequest(http.MethodGet, s.URL, nil)
		resp, err := tr.RoundTrip(req)
		require.NoError(t, err)
		resp.Body.Close()
	}
	t.Logf("holds %v", holds)
	require.Len(t, holds, 2)
	assert.Positive(t, holds[1], "a spent quota without a reset holds the next request")
	assert.LessOrEqual(t, holds[1], p.MaxRetryAfter)
}

// A stored 429 replayed (Idempotent-Replayed: true) with a stale Retry-After
// longer than MaxRetryAfter is history: the next key goes at once, and it
// holds nothing.
func TestReplayedStale429DoesNotBlockTheChain(t *testing.T) {
	s := newScript(t, status(429, `{"code":"RATE","message":"slow down"}`, "Retry-After", "120", "Idempotent-Replayed", "true"), status(201, `{}`))
	tr, _ := newTestTransport(t, s.base, ORZCash())
	req, _ := http.NewRequestWithContext(WithOperation(context.Background(), "op-1"), http.MethodPost, s.URL, strings.NewReader(`{}`))
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 201, resp.StatusCode, "the replayed history should be walked past to K1")
	assert.Len(t, s.Requests(), 2)
}

// Verto: a 5xx whose body carries a dictionary errorCode stays a 5xx, which
// "you might double-pay": retried with the same key, not taken for a 4xx.
func TestVerto5xxWithErrorCodeIsRetried(t *testing.T) {
	s := newScript(t, status(500, `{"errorCode":"INSUFFICIENT_FUNDS","message":"ledger timeout while debiting"}`), status(201, `{}`))
	tr, _ := newTestTransport(t, s.base, Verto())
	resp, err := post(t, tr, s.URL, `{"amount":1}`)
	require.NoError(t, err)
	assert.Equal(t, 201, resp.StatusCode, "retried as the 5xx it is, with the same key")
	pvSame(t, s.headers("Idempotency-Key"), 2)
}
