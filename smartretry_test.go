package payretry

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// SmartRetry docs, Rate limits: "Always include an Idempotency-Key header
// on POST requests. This ensures retried requests don't create duplicate
// transactions."
func TestSmartRetry_PostKeySameOnEveryAttempt(t *testing.T) {
	pv := newPV(t, SmartRetry(), status(500, ""), status(429, ""), status(200, `{"transaction_id":"tx1"}`))
	body := `{"amount":49.99,"currency":"USD"}`
	resp := pv.send(http.MethodPost, pvSale, body)
	assert.Equal(t, 200, resp.StatusCode)
	keys := pv.keys()
	pvSame(t, keys, 3)
	assert.Equal(t, keys[0], resp.Request.Header.Get("Idempotency-Key"))
	pv.bodies(body)

	// A caller's key ("order-123" in the document's example) is kept.
	s2 := newScript(t, status(502, ""), status(200, ""))
	pv.do(pvRequest(t, http.MethodPost, s2.URL+pvSale, body, "Idempotency-Key", "order-123"))
	assert.Equal(t, []string{"order-123", "order-123"}, s2.headers("Idempotency-Key"))
}

// SmartRetry docs, Rate limits: "429 Yes Use Retry-After header"; "The
// response includes a Retry-After header indicating how long to wait:
// Retry-After: 1".
func TestSmartRetry_429WaitsRetryAfter(t *testing.T) {
	problem := `{"type":"https://api.smartretry.com/errors/rate-limit","title":"Too Many Requests","status":429,` +
		`"detail":"Rate limit exceeded. Retry after 1 second.","reason_code":"RATE_LIMIT_EXCEEDED"}`
	pv := newPV(t, SmartRetry(), status(429, problem, "Content-Type", "application/problem+json", "Retry-After", "1"),
		status(200, `{"transaction_id":"tx1"}`))
	resp := pv.send(http.MethodPost, pvSale, `{"amount":49.99}`)
	assert.Equal(t, 200, resp.StatusCode)
	pvSame(t, pv.keys(), 2)
	pv.waited(time.Second)
	assert.Equal(t, []WaitSource{WaitRetryAfter, WaitNone}, pv.waitSources())
}

// SmartRetry docs, Rate limits, Retry decision matrix: "500 Yes", "502 Yes",
// "503 Yes", "504 Yes"; 501 is not in it: not retried.
func TestSmartRetry_500_502_503_504RetriedNot501(t *testing.T) {
	for _, tc := range []struct {
		status, want, attempts int
		waits                  []time.Duration
	}{
		{500, 200, 2, []time.Duration{time.Second}},
		{502, 200, 2, []time.Duration{time.Second}},
		{503, 200, 2, []time.Duration{time.Second}},
		{504, 200, 2, []time.Duration{time.Second}},
		{501, 501, 1, nil},
	} {
		t.Run(strconv.Itoa(tc.status), func(t *testing.T) {
			pv := newPV(t, SmartRetry(), status(tc.status, ""), status(200, ""))
			resp := pv.send(http.MethodPost, pvSale, `{"amount":1}`)
			assert.Equal(t, tc.want, resp.StatusCode)
			pvSame(t, pv.keys(), tc.attempts)
			pv.waited(tc.waits...)
		})
	}
}

// SmartRetry docs, Rate limits: "503 Yes Use Retry-After if present".
func TestSmartRetry_503HonoursRetryAfter(t *testing.T) {
	pv := newPV(t, SmartRetry(), status(503, "", "Retry-After", "7"), status(200, ""))
	resp := pv.send(http.MethodPost, pvSale, `{"amount":1}`)
	assert.Equal(t, 200, resp.StatusCode)
	pvSame(t, pv.keys(), 2)
	pv.waited(7 * time.Second)
}

// SmartRetry docs, Rate limits: "max_retries=5", "base_delay = 1",
// "delay = min(base_delay * (2 ** attempt), max_delay)": at most 6 attempts
// (5 retries), waits 1s, 2s, 4s, 8s, 16s (jitter at the middle).
func TestSmartRetry_Max5RetriesExponential(t *testing.T) {
	pv := newPV(t, SmartRetry(), status(500, ""), status(502, ""), status(503, ""), status(504, ""), status(500, ""),
		status(500, `{"reason_code":"INTERNAL_ERROR"}`), status(200, ""))
	resp := pv.send(http.MethodPost, pvSale, `{"amount":1}`)
	assert.Equal(t, 500, resp.StatusCode, "the 6th answer is returned; no 7th attempt")
	pvSame(t, pv.keys(), 6)
	pv.waited(time.Second, 2*time.Second, 4*time.Second, 8*time.Second, 16*time.Second)
	e := pvCheck(t, resp)
	assert.Equal(t, 6, e.Attempts)
	assert.Equal(t, "INTERNAL_ERROR", e.Code)
	assert.True(t, e.OutcomeUnknown, "a 5xx to a write does not say it did not execute")
}

// SmartRetry docs, Rate limits: "delay += random.uniform(0, delay * 0.1)  #
// Add 10% jitter": the jitter only lengthens a delay, so no wait is shorter
// than the documented 1 s, 2 s, ...
func TestSmartRetry_JitterNeverShortensTheDelay(t *testing.T) {
	for _, r := range []float64{0, 0.5, 0.999999} {
		pv := newPV(t, SmartRetry(), status(500, ""), status(502, ""), status(200, ""))
		pv.tr.rand = func() float64 { return r }
		resp := pv.send(http.MethodPost, pvSale, `{"amount":1}`)
		assert.Equal(t, 200, resp.StatusCode)
		waits := pv.clk.Waits()
		require.Len(t, waits, 2)
		for i, base := range []time.Duration{time.Second, 2 * time.Second} {
			assert.GreaterOrEqual(t, waits[i], base, "r=%v", r)
			assert.LessOrEqual(t, waits[i], base+base/10, "r=%v", r)
		}
	}
}

// SmartRetry docs, Rate limits: "401 No Check API key": never retried, not
// even with RefreshAuth set.
func TestSmartRetry_401NeverRetried(t *testing.T) {
	pv := newPV(t, pvWithRefresh(SmartRetry()), status(401, `{"title":"Unauthorized","reason_code":"INVALID_API_KEY"}`), status(200, ""))
	resp := pv.send(http.MethodPost, pvSale, `{"amount":1}`, "x-api-key", "k1")
	assert.Equal(t, 401, resp.StatusCode)
	pv.notRetried()
	e := pvCheck(t, resp)
	assert.Equal(t, ClassUnauthorized, e.Class)
	assert.Equal(t, "INVALID_API_KEY", e.Code)
}

// SmartRetry docs, Rate limits: "400 No Fix request and resubmit"; "Never
// retry 400 Bad Request errors automatically"; "404 No Check resource ID".
func TestSmartRetry_400And404NotRetried(t *testing.T) {
	for _, code := range []int{400, 404} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			pv := newPV(t, SmartRetry(), status(code, `{"title":"no","reason_code":"INVALID_REQUEST"}`), status(200, ""))
			resp := pv.send(http.MethodPost, pvSale, `{"amount":1}`)
			assert.Equal(t, code, resp.StatusCode)
			pv.notRetried()
		})
	}
}

// SmartRetry docs, Rate limits: "For payment operations, a 409 Conflict with
// an idempotency key often means the original request succeeded. Check the
// response body for the transaction ID before retrying": returned at once,
// and flagged OutcomeUnknown.
func TestSmartRetry_409WithKeyOutcomeUnknown(t *testing.T) {
	body := `{"title":"Conflict","reason_code":"DUPLICATE_REQUEST","transaction_id":"tx1"}`
	pv := newPV(t, SmartRetry(), status(409, body), status(200, ""))
	resp := pv.send(http.MethodPost, pvSale, `{"amount":1}`)
	assert.Equal(t, 409, resp.StatusCode)
	pv.notRetried()
	e := pvCheck(t, resp)
	assert.Equal(t, ClassConflict, e.Class)
	assert.True(t, e.OutcomeUnknown)
	assert.Equal(t, "DUPLICATE_REQUEST", e.Code)
	assert.Equal(t, pv.keys()[0], e.IdempotencyKey)
	assert.Equal(t, body, readAll(t, resp), "the transaction id stays readable")

	// Without a key (a GET) a 409 settles nothing unknown.
	s2 := newScript(t, status(409, `{"title":"Conflict"}`), status(200, ""))
	resp2 := pv.do(pvRequest(t, http.MethodGet, s2.URL+"/v1/payments/ABC123", ""))
	assert.Len(t, s2.Requests(), 1)
	e2 := pvCheck(t, resp2)
	assert.Equal(t, ClassConflict, e2.Class)
	assert.False(t, e2.OutcomeUnknown)
}

// SmartRetry docs, Rate limits: the rate-limit problem details carry
// "reason_code": "RATE_LIMIT_EXCEEDED": whatever the 4xx status, it is a rate
// limit and retried.
func TestSmartRetry_RateLimitReasonCodeRetried(t *testing.T) {
	problem := `{"type":"https://api.smartretry.com/errors/rate-limit","title":"Too Many Requests",` +
		`"detail":"Rate limit exceeded.","reason_code":"RATE_LIMIT_EXCEEDED"}`
	for _, tc := range []struct {
		status int
		kv     []string
		wait   time.Duration
	}{
		{400, []string{"Content-Type", "application/problem+json", "Retry-After", "1"}, time.Second},
		{403, []string{"Content-Type", "application/problem+json"}, time.Second}, // backoff
	} {
		t.Run(strconv.Itoa(tc.status), func(t *testing.T) {
			pv := newPV(t, SmartRetry(), status(tc.status, problem, tc.kv...), status(200, ""))
			resp := pv.send(http.MethodPost, pvSale, `{"amount":1}`)
			assert.Equal(t, 200, resp.StatusCode)
			pvSame(t, pv.keys(), 2)
			assert.Equal(t, []Class{ClassRateLimited, ClassSuccess}, pv.classes())
			pv.waited(tc.wait)
		})
	}
}

// SmartRetry docs, Rate limits: "Every response includes headers showing
// your current usage: X-RateLimit-Limit: 100, X-RateLimit-Remaining: 87,
// X-RateLimit-Reset: 1711979533": they change nothing while quota is left.
func TestSmartRetry_RateLimitHeadersHarmless(t *testing.T) {
	reset := strconv.FormatInt(t0.Add(time.Second).Unix(), 10)
	hdr := func(remaining int) []string {
		return []string{"X-RateLimit-Limit", "100", "X-RateLimit-Remaining", strconv.Itoa(remaining), "X-RateLimit-Reset", reset}
	}
	pv := newPV(t, SmartRetry(),
		status(200, `{"transaction_id":"tx1"}`, hdr(87)...),
		status(503, "", hdr(86)...),
		status(200, `{"transaction_id":"tx2"}`, hdr(85)...),
		// The document's own example: a reset already past.
		status(200, `{"transaction_id":"tx3"}`, "X-RateLimit-Limit", "100", "X-RateLimit-Remaining", "87", "X-RateLimit-Reset", "1711979533"),
		status(200, `{"transaction_id":"tx4"}`))
	for i, want := range []string{"tx1", "tx2", "tx3", "tx4"} {
		resp := pv.send(http.MethodPost, pvSale, `{"amount":1}`)
		assert.Equal(t, 200, resp.StatusCode, "call %d", i+1)
		assert.Equal(t, `{"transaction_id":"`+want+`"}`, readAll(t, resp))
	}
	assert.Len(t, pv.Requests(), 5)
	assert.Equal(t, []time.Duration{time.Second}, pv.clk.Waits(), "only the 5xx backoff")
}

// SmartRetry docs, Rate limits: "Monitor remaining quota: Check
// X-RateLimit-Remaining headers and throttle proactively before hitting
// limits": with none left, the next request waits for the reset (a unix
// timestamp) instead of collecting a 429.
func TestSmartRetry_ThrottlesWhenRemainingZero(t *testing.T) {
	reset := strconv.FormatInt(t0.Add(2*time.Second).Unix(), 10)
	pv := newPV(t, SmartRetry(),
		status(200, "", "X-RateLimit-Limit", "100", "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", reset),
		status(200, ""))
	for range 2 {
		resp := pv.send(http.MethodPost, pvSale, `{"amount":1}`)
		assert.Equal(t, 200, resp.StatusCode)
	}
	assert.Len(t, pv.Requests(), 2)
	pv.waited(2*time.Second + pacing.HoldMargin)
}

// SmartRetry docs, Rate limits, Rate limits: "Payment operations (sale,
// capture, refund, void) 100 requests per second", "Status queries 500
// requests per second": client-side token buckets (burst a tenth of the
// rate) pace the calls on the fake clock.
func TestSmartRetry_ClientSideLimitsPerEndpointClass(t *testing.T) {
	t.Run("payments 100/s", func(t *testing.T) {
		pv := newPV(t, SmartRetry(), status(200, ""))
		for range 11 {
			pv.send(http.MethodPost, "/v1/payments/capture/ABC", `{"amount":1}`)
		}
		assert.Len(t, pv.Requests(), 11)
		assert.Equal(t, []time.Duration{10 * time.Millisecond}, pv.clk.Waits(), "burst of 10, then one per 10ms")
	})
	t.Run("status 500/s", func(t *testing.T) {
		pv := newPV(t, SmartRetry(), status(200, ""))
		for range 51 {
			pv.send(http.MethodGet, "/v1/payments/ABC", "")
		}
		assert.Len(t, pv.Requests(), 51)
		assert.Equal(t, []time.Duration{2 * time.Millisecond}, pv.clk.Waits(), "burst of 50, then one per 2ms")
	})
}
