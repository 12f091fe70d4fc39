package payretry

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sendOp posts body for operation op through tr.
func sendOp(t *testing.T, tr http.RoundTripper, url, op, body string, kv ...string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(WithOperation(context.Background(), op), http.MethodPost, url,
		strings.NewReader(body))
	require.NoError(t, err)
	for i := 0; i+1 < len(kv); i += 2 {
		req.Header.Set(kv[i], kv[i+1])
	}
	resp, err := tr.RoundTrip(req)
	if resp != nil {
		t.Cleanup(func() { resp.Body.Close() })
	}
	return resp, err
}

// An operation's first key is always the same, for any Transport; it is a
// version-5 UUID namespaced by the provider and the account.
func TestOperationKeysAreDeterministic(t *testing.T) {
	s := newScript(t, status(201, ""))
	keyOf := func(p Policy, op string) string {
		tr, _ := newTestTransport(t, nil, p)
		_, err := sendOp(t, tr, s.URL, op, `{"amount":1}`)
		require.NoError(t, err)
		keys := s.headers("Idempotency-Key")
		return keys[len(keys)-1]
	}
	k := keyOf(ORZCash(), "order-1/charge")
	assert.Equal(t, k, keyOf(ORZCash(), "order-1/charge"), "a new Transport, the same key")
	u, err := uuid.Parse(k)
	require.NoError(t, err)
	assert.Equal(t, uuid.Version(5), u.Version())
	assert.NotEqual(t, k, keyOf(ORZCash(), "order-2/charge"))
	assert.NotEqual(t, k, keyOf(SmartRetry(), "order-1/charge"), "another provider")
	other := ORZCash()
	other.Account = "merchant-2"
	assert.NotEqual(t, k, keyOf(other, "order-1/charge"), "another account")
}

// Verto: the correlation id is one per logical operation, across calls;
// KeyStone: the derived key goes in the body.
func TestOperationCorrelationAndBodyKey(t *testing.T) {
	s := newScript(t, status(201, ""))
	tr, _ := newTestTransport(t, nil, Verto())
	for range 2 {
		_, err := sendOp(t, tr, s.URL, "payout-7", `{"amount":1}`)
		require.NoError(t, err)
	}
	corr := s.headers("Vfx-Correlation-Id")
	assert.Equal(t, corr[0], corr[1])
	assert.NotEqual(t, s.headers("Idempotency-Key")[0], corr[0])

	ks := newScript(t, status(201, ""))
	tr, _ = newTestTransport(t, nil, KeyStone())
	_, err := sendOp(t, tr, ks.URL, "settle-9", `{"amount":"1.00"}`)
	require.NoError(t, err)
	p := KeyStone()
	assert.JSONEq(t, `{"idempotency_key":"`+p.derivedKey("operation", httptestRequest(http.MethodPost, ""), "settle-9", 0)+`","amount":"1.00"}`,
		string(ks.Requests()[0].Body))
}

// ORZCash's new keys after stored failures follow the operation's chain, and
// a key the caller set wins over the operation's.
func TestOperationChainAndCallerKey(t *testing.T) {
	stored := status(500, `{"code":"E500","message":"internal"}`)
	s := newScript(t, stored, stored, status(201, ""))
	tr, _ := newTestTransport(t, nil, ORZCash())
	resp, err := sendOp(t, tr, s.URL, "order-3", `{"amount":1}`)
	require.NoError(t, err)
	assert.Equal(t, 201, resp.StatusCode)
	p := ORZCash()
	want := []string{p.derivedKey("operation", httptestRequest(http.MethodPost, ""), "order-3", 0), p.derivedKey("operation", httptestRequest(http.MethodPost, ""), "order-3", 1),
		p.derivedKey("operation", httptestRequest(http.MethodPost, ""), "order-3", 2)}
	assert.Equal(t, want, s.headers("Idempotency-Key"))

	s2 := newScript(t, status(201, ""))
	_, err = sendOp(t, tr, s2.URL, "order-3", `{"amount":1}`, "Idempotency-Key", "caller-key")
	require.NoError(t, err)
	assert.Equal(t, []string{"caller-key"}, s2.headers("Idempotency-Key"))
}

// An empty operation id is an error at the call: nothing is sent.
func TestEmptyOperationIsAnError(t *testing.T) {
	s := newScript(t, status(201, ""))
	tr, _ := newTestTransport(t, nil, ORZCash())
	body := &closeRecorder{Reader: strings.NewReader(`{}`)}
	req, err := http.NewRequestWithContext(WithOperation(context.Background(), ""), http.MethodPost, s.URL, body)
	require.NoError(t, err)
	resp, err := tr.RoundTrip(req)
	assert.Nil(t, resp)
	assert.ErrorIs(t, err, ErrEmptyOperation)
	assert.Empty(t, s.Requests())
	assert.True(t, body.closed, "the RoundTripper contract: the body is closed")
}

type closeRecorder struct {
	*strings.Reader
	closed bool
}

func (c *closeRecorder) Close() error { c.closed = true; return nil }

// The operation is reported beside the key: in the error, in CheckResponse
// and in every Attempt.
func TestOperationIsReported(t *testing.T) {
	s := newScript(t, status(400, `{"code":"BAD"}`))
	var ops []string
	p := ORZCash()
	p.OnAttempt = func(a Attempt) { ops = append(ops, a.Operation) }
	tr, _ := newTestTransport(t, nil, p)
	resp, err := sendOp(t, tr, s.URL, "order-4", `{}`)
	require.NoError(t, err)
	var e *Error
	require.ErrorAs(t, CheckResponse(resp), &e)
	assert.Equal(t, "order-4", e.Operation)
	assert.Equal(t, s.headers("Idempotency-Key")[0], e.IdempotencyKey)
	assert.Equal(t, []string{"order-4"}, ops)
}

// A stored failure that the provider marks as replayed is history (an
// earlier process's answer): the walk to the next key goes at once and the
// replay costs no attempt, so that a resumed payment still gets its tries
// (at most MaxAttempts replays are walked so).
func TestReplayedStoredFailureIsHistory(t *testing.T) {
	replay := status(500, `{"code":"E500","message":"internal"}`, "Idempotent-Replayed", "true")
	s := newScript(t, replay, replay, stall, status(201, ""))
	p := ORZCash()
	p.MaxAttempts = 2
	p.AttemptTimeout = 50 * time.Millisecond
	var got []Attempt
	p.OnAttempt = func(a Attempt) { got = append(got, a) }
	tr, clk := newTestTransport(t, nil, p)
	resp, err := sendOp(t, tr, s.URL, "order-5", `{}`)
	require.NoError(t, err)
	assert.Equal(t, 201, resp.StatusCode, "two replays, then two real attempts")
	keys := s.headers("Idempotency-Key")
	require.Len(t, keys, 4)
	assert.Equal(t, keys[2], keys[3], "the time-out keeps its key")
	assert.NotEqual(t, keys[1], keys[2])
	assert.Equal(t, []time.Duration{0, 0, 500 * time.Millisecond}, clk.Waits(),
		"no wait after a replay; a backoff after the time-out")
	for i, a := range got[:2] {
		assert.Equal(t, WaitNone, a.WaitSource, "attempt %d", i+1)
		assert.True(t, a.Retry)
	}
	assert.Equal(t, 4, got[3].Number)
}
