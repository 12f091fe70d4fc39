package payretry

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ORZCash Access API, 4.3 Idempotency: "add Idempotency-Key: $key header to your
// POST request"; "Idempotency-Key: A UUID key used to serve as request level
// idempotency".
func TestORZCash_PostGetsUUIDKeyHeader(t *testing.T) {
	pv := newPV(t, ORZCash(), status(201, `{"id":"t1"}`))
	body := `{"amount":"10.00","currency":"EUR"}`

	resp := pv.send(http.MethodPost, "/transfers", body)
	assert.Equal(t, 201, resp.StatusCode)
	require.NoError(t, CheckResponse(resp))

	reqs := pv.Requests()
	require.Len(t, reqs, 1)
	key := reqs[0].Header.Get("Idempotency-Key")
	pvUUID(t, key)
	assert.Len(t, reqs[0].Header.Values("Idempotency-Key"), 1, "one key header")
	assert.Equal(t, key, resp.Request.Header.Get("Idempotency-Key"))
	assert.Equal(t, body, string(reqs[0].Body))
	assert.Equal(t, "/transfers", reqs[0].Path)
	pv.waited()
}

// ORZCash Access API, 3.2 Responses: "When retrying requests, a new idempotency
// key should be provided as all requests with the same idempotency key
// returns the same result, including 500 requests." (5xx).
func TestORZCash_NewKeyAfter5xx(t *testing.T) {
	pv := newPV(t, ORZCash(), status(500, `{"code":"E500","message":"internal"}`),
		status(503, `{"code":"E503","message":"unavailable"}`), status(201, `{"id":"t1"}`))
	body := `{"amount":"10.00"}`

	resp := pv.send(http.MethodPost, "/transfers", body)
	assert.Equal(t, 201, resp.StatusCode)
	assert.Equal(t, `{"id":"t1"}`, readAll(t, resp))

	keys := pv.keys()
	pvDistinct(t, keys, 3)
	assert.Equal(t, keys[2], resp.Request.Header.Get("Idempotency-Key"), "resp.Request shows the last key")
	pv.bodies(body)
	pv.waited(500*time.Millisecond, time.Second)
}

// ORZCash Access API, 3.2 Responses: "Only the requests that fails with the
// following HTTP status codes should be retried ... 429 (Rate Limits)" and "a
// new idempotency key should be provided". A 429 that is not in ORZCash's
// format (a WAF's, a CDN's) stored nothing: its key is unused, and kept.
func TestORZCash_NewKeyAfter429(t *testing.T) {
	rate := status(429, `{"code":"RATE_LIMITED","message":"slow down"}`)
	pv := newPV(t, ORZCash(), rate, status(500, `{"code":"E500","message":"internal"}`), rate, status(201, `{"id":"t1"}`))
	body := `{"amount":"10.00"}`

	resp := pv.send(http.MethodPost, "/transfers", body)
	assert.Equal(t, 201, resp.StatusCode)

	keys := pv.keys()
	pvDistinct(t, keys, 4)
	assert.Equal(t, keys[3], resp.Request.Header.Get("Idempotency-Key"))
	pv.bodies(body)
	pv.waited(500*time.Millisecond, time.Second, 2*time.Second)

	gw := newPV(t, ORZCash(), status(429, "Too Many Requests", "Content-Type", "text/plain"), status(201, `{"id":"t2"}`))
	resp = gw.send(http.MethodPost, "/transfers", body)
	assert.Equal(t, 201, resp.StatusCode)
	pvSame(t, gw.keys(), 2)
}

// ORZCash Access API, 3.2 Responses: "Retries should have an exponential backoff
// and/or jitter." InitialInterval 500ms, ×2, jitter pinned at the middle;
// MaxAttempts 4: the last 5xx is returned, with the key of the last attempt.
func TestORZCash_ExponentialBackoffAndLastResponse(t *testing.T) {
	e500 := status(500, `{"code":"E500","message":"internal"}`)
	pv := newPV(t, ORZCash(), e500, e500, e500, status(502, `{"code":"E502","message":"bad gateway"}`), status(201, ""))

	resp := pv.send(http.MethodPost, "/transfers", `{"amount":"1"}`)
	assert.Equal(t, 502, resp.StatusCode)
	keys := pv.keys()
	pvDistinct(t, keys, 4) // MaxAttempts
	pv.waited(500*time.Millisecond, time.Second, 2*time.Second)

	e := pvCheck(t, resp)
	assert.Equal(t, "orzcash", e.Provider)
	assert.Equal(t, ClassServerError, e.Class)
	assert.Equal(t, 4, e.Attempts)
	assert.Equal(t, "E502", e.Code)
	assert.Equal(t, keys[3], e.IdempotencyKey)
	assert.False(t, e.OutcomeUnknown, "ORZCash stores a 5xx as the key's answer: a definitive failure")
}

// ORZCash Access API, 4.3 Idempotency ("the subsequent retry pushes the action to
// its completion") with ORZCash Access API, 3.2 Responses ("a new idempotency
// key"): once an attempt timed out, the first request may have executed, so a
// later 5xx or 429 must NOT rotate the key: it stays pinned.
func TestORZCash_KeyPinnedAfterTimeout(t *testing.T) {
	pv := newPV(t, pvWithTimeout(ORZCash()), stall, status(500, ""), status(429, ""), status(201, `{"id":"t1"}`))

	resp := pv.send(http.MethodPost, "/transfers", `{"amount":"10.00"}`)
	assert.Equal(t, 201, resp.StatusCode)
	keys := pv.keys()
	pvSame(t, keys, 4)
	assert.Equal(t, keys[0], resp.Request.Header.Get("Idempotency-Key"))
	pv.waited(500*time.Millisecond, time.Second, 2*time.Second)
}

// ORZCash Access API, 3.2 Responses: "Only the requests that fails with the
// following HTTP status codes should be retried": 5xx and 429. 400, 401,
// 403, 404, 409 and 422 are not, not even a 401 with RefreshAuth set.
func TestORZCash_4xxNotRetried(t *testing.T) {
	for _, code := range []int{400, 401, 403, 404, 409, 422} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			pv := newPV(t, pvWithRefresh(ORZCash()), status(code, `{"code":"E`+strconv.Itoa(code)+`","message":"no"}`), status(201, ""))

			resp := pv.send(http.MethodPost, "/transfers", `{"amount":"1"}`, "Authorization", "Bearer old")
			assert.Equal(t, code, resp.StatusCode)
			pv.notRetried()
			e := pvCheck(t, resp)
			assert.Equal(t, 1, e.Attempts)
			assert.Equal(t, "E"+strconv.Itoa(code), e.Code)
			assert.Equal(t, pv.keys()[0], e.IdempotencyKey)
		})
	}
}

// ORZCash Access API, 4.3 Idempotency: "ORZCash Access API supports the submission
// of idempotent requests for all POST requests": a GET carries no key (and,
// being safe, is still retried after a 5xx).
func TestORZCash_GetHasNoKey(t *testing.T) {
	pv := newPV(t, ORZCash(), status(500, ""), status(200, `{"accounts":[]}`))

	resp := pv.send(http.MethodGet, "/accounts", "")
	assert.Equal(t, 200, resp.StatusCode)
	reqs := pv.Requests()
	require.Len(t, reqs, 2)
	for i, r := range reqs {
		assert.Empty(t, r.Header.Values("Idempotency-Key"), "attempt %d", i+1)
	}
	pv.waited(500 * time.Millisecond)
}

// ORZCash Access API, 4.3 Idempotency: "add Idempotency-Key: $key header to your
// POST request": a key the caller set goes on attempt 1; ORZCash Access API,
// 3.2 Responses: the retry after a 5xx needs a new one. It is the next of a
// chain derived from the caller's key, so that a caller who sends the
// payment again with its key walks the same keys.
func TestORZCash_CallerKeyUsedOnFirstAttempt(t *testing.T) {
	pv := newPV(t, ORZCash(), status(500, `{"code":"E500","message":"internal"}`), status(201, ""))
	const callerKey = "7d3c6a4e-52b1-4f7a-9a43-0f6c1b2d3e4f"
	req := pvRequest(t, http.MethodPost, pv.URL+"/transfers", `{"amount":"1"}`, "Idempotency-Key", callerKey)

	resp := pv.do(req)
	assert.Equal(t, 201, resp.StatusCode)
	keys := pv.keys()
	require.Len(t, keys, 2)
	assert.Equal(t, callerKey, keys[0], "caller's key on attempt 1")
	assert.NotEqual(t, callerKey, keys[1], "new key after the 5xx")
	p := ORZCash()
	assert.Equal(t, p.derivedKey("key", httptestRequest(http.MethodPost, "/transfers"), callerKey, 1), keys[1])
	assert.Equal(t, callerKey, req.Header.Get("Idempotency-Key"), "caller's request not modified")
	assert.Equal(t, keys[1], resp.Request.Header.Get("Idempotency-Key"))
}
