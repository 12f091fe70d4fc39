package payretry

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A header the provider does not read is not a key: a KeyStone PATCH (no body
// key) with an Idempotency-Key header is not sent twice after a reset.
func TestHeaderKeyTheProviderDoesNotReadIsNoKey(t *testing.T) {
	s := newScript(t, reset, status(200, ""))
	tr, _ := newTestTransport(t, nil, KeyStone())
	req, _ := http.NewRequest(http.MethodPatch, s.URL, strings.NewReader(`{"amount":1}`))
	req.Header.Set("Idempotency-Key", "k-1")
	resp, err := tr.RoundTrip(req)
	assert.Nil(t, resp)
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.True(t, e.OutcomeUnknown)
	assert.Len(t, s.Requests(), 1)
}

// A classifier's answer is checked: a response cannot have "never left", and a
// class out of range does not panic.
func TestClassifierAnswersAreChecked(t *testing.T) {
	for _, bad := range []Class{ClassNetwork, ClassCanceled, Class(42), Class(-1)} {
		s := newScript(t, status(503, ""), status(200, ""))
		p := Policy{Name: "p", Classify: func(*http.Response, error) Class { return bad }}
		tr, _ := newTestTransport(t, nil, p)
		resp, err := post(t, tr, s.URL, `{}`)
		require.NoError(t, err)
		assert.Equal(t, 503, resp.StatusCode, "class %v", bad)
		assert.Len(t, s.Requests(), 1, "an unkeyed write is not sent twice (class %v)", bad)
	}
	// An error classed as a success is still an error.
	p := Policy{Name: "p", Classify: func(*http.Response, error) Class { return ClassSuccess }}
	tr, _ := newTestTransport(t, nil, p)
	_, err := post(t, tr, "http://"+closedAddr(t), `{}`)
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, ClassNetwork, e.Class)
}

// AttemptTimeout bounds reading the error body that classifies the attempt.
func TestAttemptTimeoutBoundsTheErrorBody(t *testing.T) {
	s := newScript(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(503)
		w.(http.Flusher).Flush()
		stall(w, r)
	})
	p := keyed()
	p.MaxAttempts = 1
	p.AttemptTimeout = 100 * time.Millisecond
	tr, _ := newTestTransport(t, nil, p)
	start := time.Now()
	resp, err := post(t, tr, s.URL, `{}`)
	assert.Less(t, time.Since(start), 2*time.Second)
	assert.Nil(t, resp)
	assert.ErrorIs(t, err, ErrAttemptTimeout)
}

// When the body cannot be had again, the last response is the answer.
func TestGetBodyFailureReturnsTheLastResponse(t *testing.T) {
	s := newScript(t, status(503, "busy"), status(200, ""))
	tr, _ := newTestTransport(t, nil, keyed())
	req, _ := http.NewRequest(http.MethodPost, s.URL, strings.NewReader(`{}`))
	req.GetBody = func() (io.ReadCloser, error) { return nil, errors.New("gone") }
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, 503, resp.StatusCode)
	assert.Equal(t, "busy", readAll(t, resp))
	var e *Error
	require.ErrorAs(t, CheckResponse(resp), &e)
	assert.Equal(t, 1, e.Attempts)
}

// A new key is made only when the retry is certain: a refused retry reports
// the key the answer was given for.
func TestRefusedRetryReportsTheKeySent(t *testing.T) {
	// The retry is approved (Retry-After: 1), then the window the provider
	// reports as spent until t0+30s holds it past MaxElapsedTime.
	reset := strconv.FormatInt(t0.Add(30*time.Second).Unix(), 10)
	s := newScript(t, status(500, "", "Retry-After", "1", "X-RateLimit-Limit", "5",
		"X-RateLimit-Remaining", "0", "X-RateLimit-Reset", reset), status(201, ""))
	p := ORZCash()
	p.MaxElapsedTime = 10 * time.Second
	tr, clk := newTestTransport(t, nil, p)
	resp, err := post(t, tr, s.URL, `{}`)
	require.NoError(t, err)
	assert.Equal(t, 500, resp.StatusCode)
	sent := s.headers("Idempotency-Key")
	require.Len(t, sent, 1)
	var e *Error
	require.ErrorAs(t, CheckResponse(resp), &e)
	assert.Equal(t, sent[0], e.IdempotencyKey)
	assert.Equal(t, sent[0], resp.Request.Header.Get("Idempotency-Key"))
	assert.Equal(t, []time.Duration{time.Second}, clk.Waits(), "the retry was approved and waited for")
}

// ORZCash: a gateway's 502/504 without ORZCash's own body is an unknown
// outcome, retried with the same key; ORZCash's own 5xx gets a new one.
func TestORZCashGatewayErrorsKeepTheKey(t *testing.T) {
	s := newScript(t, status(504, "<html>Gateway Timeout</html>"), status(502, ""), status(201, ""))
	tr, _ := newTestTransport(t, nil, ORZCash())
	resp, err := post(t, tr, s.URL, `{}`)
	require.NoError(t, err)
	assert.Equal(t, 201, resp.StatusCode)
	keys := s.headers("Idempotency-Key")
	assert.Equal(t, []string{keys[0], keys[0], keys[0]}, keys)

	s2 := newScript(t, status(502, `{"code":"UPSTREAM","message":"bank unavailable"}`), status(201, ""))
	resp, err = post(t, tr, s2.URL, `{}`)
	require.NoError(t, err)
	assert.Equal(t, 201, resp.StatusCode)
	keys = s2.headers("Idempotency-Key")
	assert.NotEqual(t, keys[0], keys[1])
}

// Retry-After on a 2xx or 3xx is no hold.
func TestRetryAfterOnSuccessIsNoHold(t *testing.T) {
	s := newScript(t, status(202, "", "Retry-After", "30"), status(200, ""))
	tr, clk := newTestTransport(t, nil, Policy{Name: "p"})
	for range 2 {
		_, err := getOnce(t, tr, s.URL)
		require.NoError(t, err)
	}
	assert.Empty(t, clk.Waits())
}

// The copy a Transport keeps and the one Policy returns are deep.
func TestPolicyCopiesAreDeep(t *testing.T) {
	p := SmartRetry()
	tr, err := NewTransport(nil, p)
	require.NoError(t, err)
	p.Limits[0].Methods[0] = "GET"
	p.Limits[0].Paths[0] = "/x"
	got := tr.Policy()
	got.KeyMethods[0] = "GET"
	got.Rules[ClassServerError] = Rule{}
	got.Limits[0].Paths[0] = "/y"
	again := tr.Policy()
	assert.Equal(t, []string{http.MethodPost}, again.KeyMethods)
	assert.True(t, again.Rules[ClassServerError].Retry)
	assert.Equal(t, []string{http.MethodPost}, again.Limits[0].Methods)
	assert.Equal(t, "/payments/sale", again.Limits[0].Paths[0])
}

func TestRedactCardNumbersWithSeparators(t *testing.T) {
	assert.Equal(t, "card [16 digits] declined", redactMessage("card 4111 1111 1111 1111 declined"))
	assert.Equal(t, "card [16 digits]", redactMessage("card 4111-1111-1111-1111"))
	assert.Equal(t, "order 2026-11-24 at 12 00", redactMessage("order 2026-11-24 at 12 00"))
}

// On the wire: a request is proved never to have left only when the base
// asked for a connection and got none.
func TestNeverLeftNeedsNoConnection(t *testing.T) {
	c := &call{t: &Transport{p: Policy{Classify: Classify}}, req: httptestRequest(http.MethodPost, "/"), wire: &wire{}}
	classify := func() outcome {
		a := &try{err: io.ErrUnexpectedEOF}
		c.classify(a, false, t0)
		return a.o
	}
	c.wire.asked.Store(true)
	o := classify()
	assert.Equal(t, ClassNetwork, o.class)
	assert.False(t, o.sent)

	c.wire.got.Store(true) // HTTP/2 may have sent it before WroteHeaders
	o = classify()
	assert.Equal(t, ClassTimeout, o.class)
	assert.True(t, o.sent)

	c.wire.reset() // a base that reports nothing proves nothing
	o = classify()
	assert.Equal(t, ClassTimeout, o.class)
	assert.True(t, o.sent)
}
