package payretry

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func keyed() Policy {
	return Policy{Name: "test", IdempotencyHeader: "Idempotency-Key", InitialInterval: 100 * time.Millisecond, RandomizationFactor: -1}
}

func TestRetriesServerErrorWithSameKey(t *testing.T) {
	s := newScript(t, status(503, `{"message":"down"}`), status(502, ""), status(201, `{"id":"p1"}`))
	tr, clk := newTestTransport(t, nil, keyed())

	resp, err := post(t, tr, s.URL+"/pay", `{"amount":1}`)
	require.NoError(t, err)
	assert.Equal(t, 201, resp.StatusCode)
	assert.Equal(t, `{"id":"p1"}`, readAll(t, resp))

	keys := s.headers("Idempotency-Key")
	require.Len(t, keys, 3)
	assert.NotEmpty(t, keys[0])
	assert.Equal(t, []string{keys[0], keys[0], keys[0]}, keys)
	assert.Equal(t, keys[0], resp.Request.Header.Get("Idempotency-Key"))
	for _, r := range s.Requests() {
		assert.Equal(t, `{"amount":1}`, string(r.Body), "body replayed byte for byte")
	}
	// Backoff without jitter: 100ms, then ×2.
	assert.Equal(t, []time.Duration{100 * time.Millisecond, 200 * time.Millisecond}, clk.Waits())
}

func TestMaxAttemptsReturnsLastResponse(t *testing.T) {
	s := newScript(t, status(500, `{"code":"E1","message":"boom"}`, "X-Request-Id", "req-9"))
	p := keyed()
	p.MaxAttempts = 3
	tr, _ := newTestTransport(t, nil, p)

	resp, err := post(t, tr, s.URL, `{}`)
	require.NoError(t, err, "a response obtained is returned with a nil error")
	assert.Equal(t, 500, resp.StatusCode)
	assert.Len(t, s.Requests(), 3)

	cerr := CheckResponse(resp)
	var e *Error
	require.ErrorAs(t, cerr, &e)
	assert.Equal(t, ClassServerError, e.Class)
	assert.Equal(t, 3, e.Attempts)
	assert.Equal(t, "test", e.Provider)
	assert.Equal(t, "E1", e.Code)
	assert.Equal(t, "boom", e.Message)
	assert.Equal(t, "req-9", e.RequestID)
	assert.Equal(t, s.headers("Idempotency-Key")[2], e.IdempotencyKey)
	assert.True(t, e.OutcomeUnknown, "a 5xx to a write does not say it did not execute")
	assert.Equal(t, `{"code":"E1","message":"boom"}`, readAll(t, resp), "body still readable")
}

func TestOutcomeOfAnsweredWrites(t *testing.T) {
	cases := []struct {
		name     string
		handlers []http.HandlerFunc
		unknown  bool
	}{
		{"400 is definitive", []http.HandlerFunc{status(400, "")}, false},
		{"429 exhausted: not executed", []http.HandlerFunc{status(429, "", "Retry-After", "0")}, false},
		{"5xx may have executed", []http.HandlerFunc{status(502, "")}, true},
		{"409 after a time-out: the key is still in progress", []http.HandlerFunc{stall, status(409, "")}, true},
		// The replay may fail for a reason the first attempt caused (funds
		// it spent): no later answer settles an unknown outcome.
		{"400 after a time-out does not settle it", []http.HandlerFunc{stall, status(400, "")}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newScript(t, c.handlers...)
			p := keyed()
			p.AttemptTimeout = 100 * time.Millisecond
			p.MaxAttempts = 3
			tr, _ := newTestTransport(t, nil, p)
			resp, err := post(t, tr, s.URL, `{}`)
			require.NoError(t, err)
			var e *Error
			require.ErrorAs(t, CheckResponse(resp), &e)
			assert.Equal(t, c.unknown, e.OutcomeUnknown)
		})
	}
}

func TestNotRetriedClasses(t *testing.T) {
	for _, code := range []int{400, 401, 403, 404, 409, 422, 301, 418} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			s := newScript(t, status(code, `{}`))
			tr, clk := newTestTransport(t, nil, keyed())
			req, _ := http.NewRequest(http.MethodGet, s.URL, nil)
			resp, err := tr.RoundTrip(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			assert.Equal(t, code, resp.StatusCode)
			assert.Len(t, s.Requests(), 1)
			assert.Empty(t, clk.Waits())
		})
	}
}

func TestRetryAfterWinsOverBackoff(t *testing.T) {
	date := t0.Add(7 * time.Second).Format(http.TimeFormat)
	s := newScript(t,
		status(429, "", "Retry-After", "3"),
		status(503, "", "Retry-After", date),
		status(503, "", "Retry-After", "Mon, 01 Jan 2001 00:00:00 GMT"), // past: now
		status(200, "ok"))
	p := keyed()
	p.MaxAttempts = 5
	tr, clk := newTestTransport(t, nil, p)
	var sources []WaitSource
	tr.p.OnAttempt = func(a Attempt) { sources = append(sources, a.WaitSource) }

	resp, err := post(t, tr, s.URL, `{}`)
	require.NoError(t, err)
	assert.Equal(t, 200, resp.StatusCode)
	// The clock moved 3 s during the first wait, so the date is 4 s away.
	assert.Equal(t, []time.Duration{3 * time.Second, 4 * time.Second, 0}, clk.Waits())
	assert.Equal(t, []WaitSource{WaitRetryAfter, WaitRetryAfter, WaitRetryAfter, WaitNone}, sources)
}

func TestRetryAfterBeyondMaxReturnsAtOnce(t *testing.T) {
	s := newScript(t, status(429, "slow down", "Retry-After", "120"), status(200, ""))
	p := keyed()
	p.MaxRetryAfter = 30 * time.Second
	tr, clk := newTestTransport(t, nil, p)
	var last Attempt
	tr.p.OnAttempt = func(a Attempt) { last = a }

	resp, err := post(t, tr, s.URL, `{}`)
	require.NoError(t, err)
	assert.Equal(t, 429, resp.StatusCode)
	assert.Len(t, s.Requests(), 1)
	assert.Empty(t, clk.Waits(), "neither waited out nor shortened")
	assert.Equal(t, "slow down", readAll(t, resp))
	assert.ErrorIs(t, last.Reason, ErrWaitTooLong)
}

func TestWaitPastMaxElapsedTimeReturnsAtOnce(t *testing.T) {
	s := newScript(t, status(503, ""))
	p := keyed()
	p.MaxAttempts = 10
	p.InitialInterval = time.Second
	p.MaxElapsedTime = 4 * time.Second
	tr, clk := newTestTransport(t, nil, p)

	resp, err := post(t, tr, s.URL, `{}`)
	require.NoError(t, err)
	assert.Equal(t, 503, resp.StatusCode)
	// 1 s + 2 s = 3 s; the next wait (4 s) would end at 7 s > 4 s.
	assert.Equal(t, []time.Duration{time.Second, 2 * time.Second}, clk.Waits())
	assert.Len(t, s.Requests(), 3)
}

func TestWaitPastContextDeadlineReturnsAtOnce(t *testing.T) {
	s := newScript(t, status(503, "", "Retry-After", "5"))
	tr, err := NewTransport(nil, keyed()) // real clock
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL, strings.NewReader("{}"))
	start := time.Now()
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, 503, resp.StatusCode)
	assert.Less(t, time.Since(start), time.Second, "returned at once instead of waiting")
	assert.Len(t, s.Requests(), 1)
}

func TestCancelDuringWaitReturnsLastResponse(t *testing.T) {
	s := newScript(t, status(503, "busy", "Retry-After", "2"))
	tr, err := NewTransport(nil, keyed())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL, strings.NewReader("{}"))
	start := time.Now()
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Less(t, time.Since(start), time.Second)
	assert.Equal(t, 503, resp.StatusCode)
	assert.Equal(t, "busy", readAll(t, resp))
}

func TestContextAlreadyDone(t *testing.T) {
	s := newScript(t, status(200, ""))
	tr, _ := newTestTransport(t, nil, keyed())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL, strings.NewReader("{}"))
	resp, err := tr.RoundTrip(req)
	assert.Nil(t, resp)
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, ClassCanceled, e.Class)
	assert.ErrorIs(t, err, context.Canceled)
	assert.False(t, e.OutcomeUnknown)
	assert.Equal(t, 0, e.Attempts)
	assert.Empty(t, s.Requests())
}

func TestAttemptTimeoutRetriesKeyedWriteWithSameKey(t *testing.T) {
	s := newScript(t, stall, stall, status(201, "done"))
	p := keyed()
	p.AttemptTimeout = 100 * time.Millisecond
	tr, _ := newTestTransport(t, nil, p)
	var classes []Class
	tr.p.OnAttempt = func(a Attempt) { classes = append(classes, a.Class) }

	resp, err := post(t, tr, s.URL, `{"amount":5}`)
	require.NoError(t, err)
	assert.Equal(t, 201, resp.StatusCode)
	keys := s.headers("Idempotency-Key")
	require.Len(t, keys, 3)
	assert.Equal(t, []string{keys[0], keys[0], keys[0]}, keys)
	assert.Equal(t, []Class{ClassTimeout, ClassTimeout, ClassSuccess}, classes)
}

func TestAttemptTimeoutUnkeyedWriteIsOutcomeUnknown(t *testing.T) {
	s := newScript(t, stall, status(201, ""))
	tr, _ := newTestTransport(t, nil, Policy{Name: "nokeys", AttemptTimeout: 100 * time.Millisecond})

	resp, err := post(t, tr, s.URL, `{"amount":5}`)
	assert.Nil(t, resp)
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, ClassTimeout, e.Class)
	assert.True(t, e.OutcomeUnknown)
	assert.Equal(t, 1, e.Attempts)
	assert.Equal(t, "", e.IdempotencyKey)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorIs(t, err, ErrAttemptTimeout)
	assert.Len(t, s.Requests(), 1, "a write without a key is not sent twice")
}

func TestAttemptTimeoutGetIsRetried(t *testing.T) {
	s := newScript(t, stall, status(200, "ok"))
	tr, _ := newTestTransport(t, nil, Policy{AttemptTimeout: 100 * time.Millisecond})
	req, _ := http.NewRequest(http.MethodGet, s.URL, nil)
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, "ok", readAll(t, resp))
	assert.Len(t, s.Requests(), 2)
}

func TestMaxElapsedTimeCutsAStalledRetry(t *testing.T) {
	s := newScript(t, status(503, ""), stall)
	tr, err := NewTransport(nil, Policy{Name: "x", IdempotencyHeader: "Idempotency-Key",
		InitialInterval: time.Millisecond, MaxElapsedTime: 300 * time.Millisecond})
	require.NoError(t, err)
	start := time.Now()
	resp, err := post(t, tr, s.URL, `{}`)
	assert.Nil(t, resp)
	assert.Less(t, time.Since(start), 2*time.Second)
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, ClassTimeout, e.Class)
	assert.True(t, e.OutcomeUnknown)
	assert.Equal(t, 2, e.Attempts)
	assert.NotEmpty(t, e.IdempotencyKey)
}

func TestMaxElapsedTimeBoundsTheFirstAttemptWithAttemptTimeout(t *testing.T) {
	s := newScript(t, stall)
	tr, err := NewTransport(nil, Policy{Name: "x", IdempotencyHeader: "Idempotency-Key",
		AttemptTimeout: 10 * time.Second, MaxElapsedTime: 200 * time.Millisecond})
	require.NoError(t, err)
	start := time.Now()
	_, err = post(t, tr, s.URL, `{}`)
	assert.Less(t, time.Since(start), 2*time.Second, "min(AttemptTimeout, MaxElapsedTime)")
	assert.ErrorIs(t, err, ErrAttemptTimeout)
}

// A hold before the first attempt counts against MaxElapsedTime: the
// attempt gets what is left of it.
func TestMaxElapsedTimeCountsAHoldBeforeTheFirstAttempt(t *testing.T) {
	s := newScript(t, status(429, "", "Retry-After", "1"), stall)
	p := keyed()
	p.MaxAttempts, p.AttemptTimeout, p.MaxElapsedTime = 1, 10*time.Second, 1500*time.Millisecond
	tr, clk := newTestTransport(t, nil, p)
	resp, err := post(t, tr, s.URL, `{}`)
	require.NoError(t, err)
	resp.Body.Close()

	start := time.Now()
	req, _ := http.NewRequest(http.MethodPost, s.URL, strings.NewReader(`{}`)) // replayable: nothing to read first
	_, err = tr.RoundTrip(req)                                                 // held 1 s on the fake clock, then stalled
	elapsed := time.Since(start)
	assert.ErrorIs(t, err, ErrAttemptTimeout)
	assert.Equal(t, []time.Duration{time.Second}, clk.Waits())
	assert.Less(t, elapsed, 1200*time.Millisecond, "the attempt had 0.5 s left, not 1.5 s")
}

// closedAddr returns a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestRefusedConnectionIsNetworkAndRetriedForUnkeyedWrite(t *testing.T) {
	tr, clk := newTestTransport(t, nil, Policy{Name: "nokeys", MaxAttempts: 3})
	var classes []Class
	tr.p.OnAttempt = func(a Attempt) { classes = append(classes, a.Class) }
	resp, err := post(t, tr, "http://"+closedAddr(t)+"/pay", `{"amount":1}`)
	assert.Nil(t, resp)
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, ClassNetwork, e.Class)
	assert.False(t, e.OutcomeUnknown, "the request never left")
	assert.Equal(t, 3, e.Attempts)
	assert.Len(t, clk.Waits(), 2)
	assert.Equal(t, []Class{ClassNetwork, ClassNetwork, ClassNetwork}, classes)
	var op *net.OpError
	assert.ErrorAs(t, err, &op)
}

func TestResetAfterWriteIsUnknown(t *testing.T) {
	t.Run("unkeyed write is not retried", func(t *testing.T) {
		s := newScript(t, reset, status(201, ""))
		tr, _ := newTestTransport(t, nil, Policy{Name: "nokeys"})
		resp, err := post(t, tr, s.URL, `{}`)
		assert.Nil(t, resp)
		var e *Error
		require.ErrorAs(t, err, &e)
		assert.Equal(t, ClassTimeout, e.Class)
		assert.True(t, e.OutcomeUnknown)
		assert.Len(t, s.Requests(), 1)
	})
	t.Run("keyed write is retried with the same key", func(t *testing.T) {
		s := newScript(t, reset, status(201, ""))
		tr, _ := newTestTransport(t, nil, keyed())
		resp, err := post(t, tr, s.URL, `{}`)
		require.NoError(t, err)
		assert.Equal(t, 201, resp.StatusCode)
		keys := s.headers("Idempotency-Key")
		require.Len(t, keys, 2)
		assert.Equal(t, keys[0], keys[1])
	})
}

func TestCallerKeyIsKept(t *testing.T) {
	s := newScript(t, status(500, ""), status(200, ""))
	tr, _ := newTestTransport(t, nil, keyed())
	req, _ := http.NewRequest(http.MethodPost, s.URL, strings.NewReader("{}"))
	req.Header.Set("Idempotency-Key", "order-42")
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, []string{"order-42", "order-42"}, s.headers("Idempotency-Key"))
}

func TestCallerRequestIsNotModified(t *testing.T) {
	s := newScript(t, status(503, ""), status(200, ""))
	p := Verto()
	tr, _ := newTestTransport(t, nil, p)
	req, _ := http.NewRequest(http.MethodPost, s.URL, strings.NewReader(`{"a":1}`))
	req.Header.Set("Authorization", "Bearer secret")
	before := req.Header.Clone()
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, before, req.Header)
	assert.NotSame(t, req, resp.Request)
	assert.NotEmpty(t, resp.Request.Header.Get("Idempotency-Key"))
}

func TestBodyReplay(t *testing.T) {
	body := `{"reference":"r1","amount":100}`
	t.Run("GetBody", func(t *testing.T) {
		s := newScript(t, status(503, ""), status(200, ""))
		tr, _ := newTestTransport(t, nil, keyed())
		req, _ := http.NewRequest(http.MethodPost, s.URL, strings.NewReader(body))
		require.NotNil(t, req.GetBody)
		resp, err := tr.RoundTrip(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		for _, r := range s.Requests() {
			assert.Equal(t, body, string(r.Body))
		}
	})
	t.Run("buffered", func(t *testing.T) {
		s := newScript(t, status(503, ""), status(200, ""))
		tr, _ := newTestTransport(t, nil, keyed())
		resp, err := post(t, tr, s.URL, body) // no GetBody
		require.NoError(t, err)
		assert.Equal(t, 200, resp.StatusCode)
		reqs := s.Requests()
		require.Len(t, reqs, 2)
		for _, r := range reqs {
			assert.Equal(t, body, string(r.Body))
		}
	})
	t.Run("too large is sent once, never empty", func(t *testing.T) {
		s := newScript(t, status(503, ""), status(200, ""))
		p := keyed()
		p.MaxBufferedBody = 8
		tr, _ := newTestTransport(t, nil, p)
		var last Attempt
		tr.p.OnAttempt = func(a Attempt) { last = a }
		resp, err := post(t, tr, s.URL, body)
		require.NoError(t, err)
		assert.Equal(t, 503, resp.StatusCode)
		reqs := s.Requests()
		require.Len(t, reqs, 1)
		assert.Equal(t, body, string(reqs[0].Body), "sent whole")
		assert.ErrorIs(t, last.Reason, ErrBodyNotReplayable)
	})
	t.Run("too large with a network error reports the body", func(t *testing.T) {
		p := Policy{MaxBufferedBody: 8}
		tr, _ := newTestTransport(t, nil, p)
		_, err := post(t, tr, "http://"+closedAddr(t), body)
		assert.ErrorIs(t, err, ErrBodyNotReplayable)
		var e *Error
		require.ErrorAs(t, err, &e)
		assert.Equal(t, 1, e.Attempts)
	})
}

func TestDiscardedResponsesReuseConnection(t *testing.T) {
	s := newScript(t, status(503, strings.Repeat("x", 10000)), status(500, "e"), status(200, "ok"))
	tr, _ := newTestTransport(t, nil, keyed())
	resp, err := post(t, tr, s.URL, `{}`)
	require.NoError(t, err)
	assert.Equal(t, "ok", readAll(t, resp))
	assert.Equal(t, int32(1), s.conns.Load(), "every retry reused the one connection")
}

func TestUnauthorized(t *testing.T) {
	t.Run("without a hook the 401 is returned", func(t *testing.T) {
		s := newScript(t, status(401, `{"detail":"Invalid or expired JWT"}`), status(200, ""))
		tr, _ := newTestTransport(t, nil, keyed())
		resp, err := post(t, tr, s.URL, `{}`)
		require.NoError(t, err)
		assert.Equal(t, 401, resp.StatusCode)
		assert.Len(t, s.Requests(), 1)
	})
	t.Run("refreshed once, headers kept for later attempts", func(t *testing.T) {
		s := newScript(t, status(401, ""), status(503, ""), status(401, ""), status(200, ""))
		p := keyed()
		calls := 0
		p.RefreshAuth = func(r *http.Request) error {
			calls++
			r.Header.Set("Authorization", "Bearer new")
			return nil
		}
		tr, clk := newTestTransport(t, nil, p)
		req, _ := http.NewRequest(http.MethodPost, s.URL, strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer old")
		resp, err := tr.RoundTrip(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		assert.Equal(t, 401, resp.StatusCode, "a second 401 is returned")
		assert.Equal(t, 1, calls)
		assert.Equal(t, []string{"Bearer old", "Bearer new", "Bearer new"}, s.headers("Authorization"))
		keys := s.headers("Idempotency-Key")
		assert.Equal(t, []string{keys[0], keys[0], keys[0]}, keys)
		assert.Equal(t, []time.Duration{0, 100 * time.Millisecond}, clk.Waits())
		assert.Equal(t, "Bearer old", req.Header.Get("Authorization"))
	})
	t.Run("hook error returns the 401", func(t *testing.T) {
		s := newScript(t, status(401, ""), status(200, ""))
		p := keyed()
		p.RefreshAuth = func(*http.Request) error { return errors.New("idp down") }
		tr, _ := newTestTransport(t, nil, p)
		resp, err := post(t, tr, s.URL, `{}`)
		require.NoError(t, err)
		assert.Equal(t, 401, resp.StatusCode)
		assert.Len(t, s.Requests(), 1)
	})
}

func TestUnkeyedWriteNotRetriedOnServerError(t *testing.T) {
	s := newScript(t, status(503, ""), status(200, ""))
	tr, _ := newTestTransport(t, nil, Policy{Name: "nokeys"})
	var last Attempt
	tr.p.OnAttempt = func(a Attempt) { last = a }
	resp, err := post(t, tr, s.URL, `{}`)
	require.NoError(t, err)
	assert.Equal(t, 503, resp.StatusCode)
	assert.Len(t, s.Requests(), 1)
	assert.ErrorIs(t, last.Reason, ErrUnsafeRetry)

	// A GET is safe to repeat.
	s2 := newScript(t, status(503, ""), status(200, ""))
	req, _ := http.NewRequest(http.MethodGet, s2.URL, nil)
	resp2, err := tr.RoundTrip(req)
	require.NoError(t, err)
	defer resp2.Body.Close()
	assert.Equal(t, 200, resp2.StatusCode)
}

func TestComplianceIsNeverRetried(t *testing.T) {
	for _, body := range []string{
		`{"errorCode":"RFI_REQUIRED","message":"x"}`,
		`{"errorCode":"X","message":"Payout held for compliance review"}`,
		`{"reason_code":"COMPLIANCE_HOLD"}`,
	} {
		s := newScript(t, status(503, body), status(200, ""))
		tr, _ := newTestTransport(t, nil, keyed())
		resp, err := post(t, tr, s.URL, `{}`)
		require.NoError(t, err)
		assert.Equal(t, 503, resp.StatusCode, body)
		assert.Len(t, s.Requests(), 1, body)
	}
}

func TestOnAttemptAndLogger(t *testing.T) {
	s := newScript(t, status(503, `{"errorCode":"DOWN"}`), status(200, ""))
	var buf bytes.Buffer
	p := keyed()
	p.Logger = newTextLogger(&buf)
	var got []Attempt
	p.OnAttempt = func(a Attempt) { got = append(got, a) }
	tr, _ := newTestTransport(t, nil, p)
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/pay?api_key=sk_live_123", strings.NewReader(`{"card":"4242424242424242"}`))
	req.Header.Set("Authorization", "Bearer sk_live_456")
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	defer resp.Body.Close()

	require.Len(t, got, 2)
	key := s.headers("Idempotency-Key")[0]
	for i, a := range got {
		require.NotNil(t, a.Request, "attempt %d", i+1)
		assert.Equal(t, key, a.Request.Header.Get("Idempotency-Key"))
		assert.Equal(t, t0.Add(time.Duration(i)*100*time.Millisecond), a.Start, "sent after the wait")
		got[i].Request, got[i].Start = nil, time.Time{}
	}
	// A 503 to a write leaves its outcome unknown, and no later answer settles it.
	assert.Equal(t, Attempt{Provider: "test", Number: 1, Method: "POST", Class: ClassServerError, StatusCode: 503,
		Code: "DOWN", IdempotencyKey: key, Retry: true, Wait: 100 * time.Millisecond, WaitSource: WaitBackoff,
		OutcomeUnknown: true}, got[0])
	assert.Equal(t, Attempt{Provider: "test", Number: 2, Method: "POST", Class: ClassSuccess, StatusCode: 200,
		IdempotencyKey: key}, got[1], "a success settles the outcome")

	out := buf.String()
	assert.Contains(t, out, "payretry: retrying")
	assert.Contains(t, out, "path=/pay")
	for _, secret := range []string{"sk_live_123", "sk_live_456", "4242424242424242", "Bearer"} {
		assert.NotContains(t, out, secret)
	}
}

func TestReadBodyErrorIsReported(t *testing.T) {
	tr, _ := newTestTransport(t, nil, keyed())
	req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:1", io.NopCloser(errReader{errors.New("disk gone")}))
	req.GetBody = nil
	resp, err := tr.RoundTrip(req)
	assert.Nil(t, resp)
	assert.ErrorContains(t, err, "disk gone")
}
