package payretry

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// One test per documented rule of each preset, against a loopback server
// (newScript): what the provider received on the wire, and the waits the fake
// clock recorded. The seed file each rule comes from is cited above each test.

// pvAttemptTimeout is the real time-out of an attempt in the time-out tests.
const pvAttemptTimeout = 100 * time.Millisecond

// pvSale is the SmartRetry endpoint of the document's examples.
const pvSale = "/v1/payments/sale/ABC123"

// pvEnv is a loopback script server and, in front of it, a preset's transport
// on the fake clock, with what the transport reported to the policy's hooks.
type pvEnv struct {
	*script
	t         *testing.T
	tr        *Transport
	clk       *fakeClock
	attempts  []Attempt // as Policy.OnAttempt received them
	refreshes int       // calls of Policy.RefreshAuth
}

// newPV starts a script server that answers with handlers, and a transport
// for p that records every Attempt and counts the calls of p.RefreshAuth.
func newPV(t *testing.T, p Policy, handlers ...http.HandlerFunc) *pvEnv {
	t.Helper()
	pv := &pvEnv{script: newScript(t, handlers...), t: t}
	p.OnAttempt = func(a Attempt) { pv.attempts = append(pv.attempts, a) }
	if refresh := p.RefreshAuth; refresh != nil {
		p.RefreshAuth = func(r *http.Request) error {
			pv.refreshes++
			return refresh(r)
		}
	}
	pv.tr, pv.clk = newTestTransport(t, nil, p)
	if p.JitterUpOnly {
		pv.tr.rand = func() float64 { return 0 } // the bottom of an upward jitter: the delay itself
	}
	return pv
}

// pvWithRefresh returns p with a RefreshAuth that sets a new bearer token.
func pvWithRefresh(p Policy) Policy {
	p.RefreshAuth = func(r *http.Request) error {
		r.Header.Set("Authorization", "Bearer new-token")
		return nil
	}
	return p
}

// pvWithTimeout returns p with an AttemptTimeout of pvAttemptTimeout, for the
// tests in which the server stalls.
func pvWithTimeout(p Policy) Policy {
	p.AttemptTimeout = pvAttemptTimeout
	return p
}

// pvRequest returns a request: method, url, body ("" = none) and header
// pairs. The body has a GetBody (strings.NewReader).
func pvRequest(t *testing.T, method, url, body string, kv ...string) *http.Request {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	require.NoError(t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(kv); i += 2 {
		req.Header.Set(kv[i], kv[i+1])
	}
	return req
}

// do sends req through the transport as one logical call and requires a
// response.
func (pv *pvEnv) do(req *http.Request) *http.Response {
	pv.t.Helper()
	resp, err := pv.tr.RoundTrip(req)
	if resp != nil {
		pv.t.Cleanup(func() { resp.Body.Close() })
	}
	require.NoError(pv.t, err)
	return resp
}

// send sends one logical call to path on the script server; see pvRequest.
func (pv *pvEnv) send(method, path, body string, kv ...string) *http.Response {
	pv.t.Helper()
	return pv.do(pvRequest(pv.t, method, pv.URL+path, body, kv...))
}

// post sends a JSON body without GetBody (helpers' post), so that the
// transport buffers it to replay it, as KeyStone's tests want.
func (pv *pvEnv) post(path, body string) *http.Response {
	pv.t.Helper()
	resp, err := post(pv.t, pv.tr, pv.URL+path, body)
	require.NoError(pv.t, err)
	return resp
}

// keys returns the Idempotency-Key header of every request received.
func (pv *pvEnv) keys() []string {
	return pv.headers("Idempotency-Key")
}

// bodyKeys returns the idempotency_key field of every request's body.
func (pv *pvEnv) bodyKeys() []string {
	pv.t.Helper()
	var keys []string
	for _, r := range pv.Requests() {
		keys = append(keys, pvKeyField(pv.t, r.Body))
	}
	return keys
}

// bodies asserts that every request carried exactly body.
func (pv *pvEnv) bodies(body string) {
	pv.t.Helper()
	for i, r := range pv.Requests() {
		assert.Equal(pv.t, body, string(r.Body), "body of attempt %d", i+1)
	}
}

// waited asserts the waits the fake clock recorded, in order: none when ds
// is empty.
func (pv *pvEnv) waited(ds ...time.Duration) {
	pv.t.Helper()
	if len(ds) == 0 {
		assert.Empty(pv.t, pv.clk.Waits())
		return
	}
	assert.Equal(pv.t, ds, pv.clk.Waits())
}

// notRetried asserts that the call made one attempt, waited for nothing and
// did not call RefreshAuth.
func (pv *pvEnv) notRetried() {
	pv.t.Helper()
	require.Len(pv.t, pv.Requests(), 1, "attempts")
	assert.Zero(pv.t, pv.refreshes, "RefreshAuth called")
	assert.Empty(pv.t, pv.clk.Waits())
}

// classes returns the class of every attempt.
func (pv *pvEnv) classes() []Class {
	var out []Class
	for _, a := range pv.attempts {
		out = append(out, a.Class)
	}
	return out
}

// waitSources returns the WaitSource of every attempt.
func (pv *pvEnv) waitSources() []WaitSource {
	var out []WaitSource
	for _, a := range pv.attempts {
		out = append(out, a.WaitSource)
	}
	return out
}

// last returns the last attempt reported.
func (pv *pvEnv) last() Attempt {
	pv.t.Helper()
	require.NotEmpty(pv.t, pv.attempts, "no attempt reported")
	return pv.attempts[len(pv.attempts)-1]
}

// pvUUID asserts that s is a random (version 4) UUID.
func pvUUID(t *testing.T, s string) {
	t.Helper()
	u, err := uuid.Parse(s)
	if assert.NoError(t, err, "not a UUID: %q", s) {
		assert.Equal(t, uuid.Version(4), u.Version(), "not a v4 UUID: %q", s)
		assert.Equal(t, u.String(), s, "not in canonical form")
	}
}

// pvDistinct asserts that there are n keys, all UUIDs and pairwise different.
func pvDistinct(t *testing.T, keys []string, n int) {
	t.Helper()
	require.Len(t, keys, n, "attempts")
	seen := map[string]bool{}
	for i, k := range keys {
		pvUUID(t, k)
		assert.False(t, seen[k], "key of attempt %d reused: %q (keys %q)", i+1, k, keys)
		seen[k] = true
	}
}

// pvSame asserts that there are n keys, all equal to the first, a UUID.
func pvSame(t *testing.T, keys []string, n int) {
	t.Helper()
	require.Len(t, keys, n, "attempts")
	pvUUID(t, keys[0])
	for i, k := range keys {
		assert.Equal(t, keys[0], k, "key of attempt %d", i+1)
	}
}

// pvCheck returns the *Error CheckResponse builds from resp.
func pvCheck(t *testing.T, resp *http.Response) *Error {
	t.Helper()
	var e *Error
	require.ErrorAs(t, CheckResponse(resp), &e)
	return e
}

// pvKeyField returns the "idempotency_key" string of a JSON body sent.
func pvKeyField(t *testing.T, body []byte) string {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(body, &m), "body sent is not a JSON object: %s", body)
	k, ok := m["idempotency_key"].(string)
	require.True(t, ok, "no string idempotency_key in %s", body)
	return k
}

// ---------------------------------------------------------------- ORZCash

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
// new idempotency key should be provided".
func TestORZCash_NewKeyAfter429(t *testing.T) {
	pv := newPV(t, ORZCash(), status(429, `{"message":"slow down"}`), status(500, `{"code":"E500","message":"internal"}`),
		status(429, ""), status(201, `{"id":"t1"}`))
	body := `{"amount":"10.00"}`

	resp := pv.send(http.MethodPost, "/transfers", body)
	assert.Equal(t, 201, resp.StatusCode)

	keys := pv.keys()
	pvDistinct(t, keys, 4)
	assert.Equal(t, keys[3], resp.Request.Header.Get("Idempotency-Key"))
	pv.bodies(body)
	pv.waited(500*time.Millisecond, time.Second, 2*time.Second)
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

// ORZCash Access API, 4.3 Idempotency: "If a transient error or a time-out occurred
// and the action was not completed in the previous request, the subsequent
// retry pushes the action to its completion": after a time-out, the SAME key.
func TestORZCash_SameKeyAfterTimeout(t *testing.T) {
	pv := newPV(t, pvWithTimeout(ORZCash()), stall, stall, status(201, `{"id":"t1"}`))
	body := `{"amount":"10.00"}`

	resp := pv.send(http.MethodPost, "/transfers", body)
	assert.Equal(t, 201, resp.StatusCode)
	pvSame(t, pv.keys(), 3)
	assert.Equal(t, []Class{ClassTimeout, ClassTimeout, ClassSuccess}, pv.classes())
	pv.bodies(body)
	pv.waited(500*time.Millisecond, time.Second)
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
	assert.Equal(t, p.derivedKey("key", callerKey, 1), keys[1])
	assert.Equal(t, callerKey, req.Header.Get("Idempotency-Key"), "caller's request not modified")
	assert.Equal(t, keys[1], resp.Request.Header.Get("Idempotency-Key"))
}

// ------------------------------------------------------------------ Verto

// Verto API, Errors and Retries: "Send an Idempotency-Key on any write
// request that can create a financial side effect"; "Server error (5xx): Yes.
// Retry safely with the same Idempotency-Key on write operations."
func TestVerto_SameKeyOnEveryAttemptForWrites(t *testing.T) {
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		t.Run(m, func(t *testing.T) {
			pv := newPV(t, Verto(), status(500, ""), status(503, ""), status(200, `{"ok":true}`))
			body := `{"beneficiaryId":"b-1","amount":100}`
			if m == http.MethodDelete {
				body = ""
			}

			resp := pv.send(m, "/payouts/p-1", body)
			assert.Equal(t, 200, resp.StatusCode)
			keys := pv.keys()
			pvSame(t, keys, 3)
			assert.Equal(t, keys[0], resp.Request.Header.Get("Idempotency-Key"))
			for i, r := range pv.Requests() {
				assert.Equal(t, m, r.Method, "attempt %d", i+1)
			}
			pv.bodies(body)
		})
	}
}

// Verto API, Errors and Retries: "Vfx-Correlation-Id ... Mandatory. A unique
// GUID provided by you to track a logical operation"; "Generate a
// Vfx-Correlation-Id for each logical operation so you can trace retries".
func TestVerto_CorrelationIdPerLogicalCall(t *testing.T) {
	t.Run("same on every attempt, new for the next call", func(t *testing.T) {
		pv := newPV(t, Verto(), status(503, ""), status(429, ""), status(201, ""), status(201, ""))
		pv.send(http.MethodPost, "/payouts", `{"amount":1}`)
		pv.send(http.MethodPost, "/payouts", `{"amount":1}`)
		ids := pv.headers("Vfx-Correlation-Id")
		require.Len(t, ids, 4)
		pvSame(t, ids[:3], 3)
		pvUUID(t, ids[3])
		assert.NotEqual(t, ids[0], ids[3], "a new logical call gets a new id")
		keys := pv.keys()
		assert.NotEqual(t, keys[0], keys[3], "and a new key")
		assert.NotEqual(t, ids[0], keys[0], "the id is not the key")
	})
	t.Run("reads carry one too", func(t *testing.T) {
		pv := newPV(t, Verto(), status(500, ""), status(200, "[]"))
		pv.send(http.MethodGet, "/wallets", "")
		pvSame(t, pv.headers("Vfx-Correlation-Id"), 2)
		assert.Equal(t, []string{"", ""}, pv.keys(), "a GET has no key")
	})
	t.Run("a caller-set id is kept", func(t *testing.T) {
		pv := newPV(t, Verto(), status(502, ""), status(201, ""))
		const mine = "order-flow-8b1f"
		resp := pv.send(http.MethodPost, "/payouts", `{"amount":1}`, "Vfx-Correlation-Id", mine)
		assert.Equal(t, []string{mine, mine}, pv.headers("Vfx-Correlation-Id"))
		for _, r := range pv.Requests() {
			assert.Len(t, r.Header.Values("Vfx-Correlation-Id"), 1)
		}
		assert.Equal(t, mine, resp.Request.Header.Get("Vfx-Correlation-Id"))
	})
}

// Verto API, Errors and Retries: "5xx ... Retry Safely. Use your
// Idempotency-Key and wait 5-10 seconds."
func TestVerto_Wait5to10sOn5xx(t *testing.T) {
	t.Run("jitter at the middle", func(t *testing.T) {
		// Backoff 1s, 2s, 4s is raised to the 5s floor.
		pv := newPV(t, Verto(), status(500, ""), status(502, ""), status(503, ""), status(201, ""))
		resp := pv.send(http.MethodPost, "/payouts", `{"amount":1}`)
		assert.Equal(t, 201, resp.StatusCode)
		pvSame(t, pv.keys(), 4)
		pv.waited(5*time.Second, 5*time.Second, 5*time.Second)
	})
	for _, draw := range []float64{0, 0.999999} {
		t.Run("jitter at "+strconv.FormatFloat(draw, 'f', -1, 64), func(t *testing.T) {
			// More attempts, so that the backoff (up to 10s ±50%) passes
			// the 10s ceiling.
			p := Verto()
			p.MaxAttempts = 7
			e500 := status(500, "")
			pv := newPV(t, p, e500, e500, e500, e500, e500, e500, status(201, ""))
			pv.tr.rand = func() float64 { return draw }
			resp := pv.send(http.MethodPost, "/payouts", `{"amount":1}`)
			assert.Equal(t, 201, resp.StatusCode)
			waits := pv.clk.Waits()
			require.Len(t, waits, 6)
			for i, w := range waits {
				assert.GreaterOrEqual(t, w, 5*time.Second, "wait %d", i+1)
				assert.LessOrEqual(t, w, 10*time.Second, "wait %d", i+1)
			}
			if draw > 0.5 {
				// 8s and 10s intervals +50% are cut to 10s.
				assert.Equal(t, 10*time.Second, waits[4])
				assert.Equal(t, 10*time.Second, waits[5])
			}
		})
	}
}

// Verto API, Errors and Retries: "5xx ... wait 5-10 seconds". A Retry-After
// on the 5xx is honoured when it asks for longer, never when it asks for
// less: the wait is the longer of the two.
func TestVerto_RetryAfterOn503AtLeastFiveSeconds(t *testing.T) {
	for _, tc := range []struct {
		ra   int
		wait time.Duration
		src  WaitSource
	}{
		{0, 5 * time.Second, WaitBackoff},
		{2, 5 * time.Second, WaitBackoff},
		{30, 30 * time.Second, WaitRetryAfter},
	} {
		t.Run(strconv.Itoa(tc.ra)+"s", func(t *testing.T) {
			pv := newPV(t, Verto(), status(503, "", "Retry-After", strconv.Itoa(tc.ra)), status(201, ""))
			resp := pv.send(http.MethodPost, "/payouts", `{"amount":1}`)
			assert.Equal(t, 201, resp.StatusCode)
			pvSame(t, pv.keys(), 2)
			pv.waited(tc.wait)
			assert.Equal(t, []WaitSource{tc.src, WaitNone}, pv.waitSources())
		})
	}
}

// Verto API, Errors and Retries: "401/403 ... Refresh Token"; "Refresh the
// token ... before retrying": a 401 calls RefreshAuth once and the retry
// carries the new Authorization, with the same key and correlation id.
func TestVerto_401RefreshesAuthOnce(t *testing.T) {
	t.Run("refreshed and retried", func(t *testing.T) {
		pv := newPV(t, pvWithRefresh(Verto()),
			status(401, `{"errorCode":"UNAUTHORIZED","message":"token expired"}`), status(201, `{"id":"p1"}`))
		resp := pv.send(http.MethodPost, "/payouts", `{"amount":1}`, "Authorization", "Bearer old-token")
		assert.Equal(t, 201, resp.StatusCode)
		assert.Equal(t, 1, pv.refreshes)
		assert.Equal(t, []string{"Bearer old-token", "Bearer new-token"}, pv.headers("Authorization"))
		pvSame(t, pv.keys(), 2)
		pvSame(t, pv.headers("Vfx-Correlation-Id"), 2)
		pv.bodies(`{"amount":1}`)
		assert.Equal(t, []time.Duration{0}, pv.clk.Waits(), "no wait after a refresh")
	})
	t.Run("a second 401 is returned", func(t *testing.T) {
		pv := newPV(t, pvWithRefresh(Verto()), status(401, ""), status(401, `{"message":"still no"}`), status(201, ""))
		resp := pv.send(http.MethodPost, "/payouts", `{"amount":1}`, "Authorization", "Bearer old-token")
		assert.Equal(t, 401, resp.StatusCode)
		assert.Len(t, pv.Requests(), 2)
		assert.Equal(t, 1, pv.refreshes)
		e := pvCheck(t, resp)
		assert.Equal(t, ClassUnauthorized, e.Class)
		assert.Equal(t, 2, e.Attempts)
	})
	t.Run("without RefreshAuth not retried", func(t *testing.T) {
		pv := newPV(t, Verto(), status(401, ""), status(201, ""))
		resp := pv.send(http.MethodPost, "/payouts", `{"amount":1}`)
		assert.Equal(t, 401, resp.StatusCode)
		pv.notRetried()
	})
}

// Verto API, Errors and Retries, Error Code Dictionary: ROUTE_NOT_AVAILABLE
// 403 ("Contact your account manager"), INSUFFICIENT_FUNDS, INVALID_CURRENCY
// and VALIDATION_ERROR 400 ("Don't Retry"), WALLET_NOT_FOUND 404: returned
// after one attempt; CheckResponse gives the errorCode, the class and the
// Vfx-Api-Call-Id.
func TestVerto_ErrorCodesNotRetried(t *testing.T) {
	for _, tc := range []struct {
		status int
		code   string
		class  Class
	}{
		{403, "ROUTE_NOT_AVAILABLE", ClassForbidden},
		{400, "INSUFFICIENT_FUNDS", ClassBadRequest},
		{400, "INVALID_CURRENCY", ClassBadRequest},
		{400, "VALIDATION_ERROR", ClassBadRequest},
		{404, "WALLET_NOT_FOUND", ClassNotFound},
	} {
		t.Run(tc.code, func(t *testing.T) {
			body := `{"errorCode":"` + tc.code + `","message":"see dictionary"}`
			pv := newPV(t, pvWithRefresh(Verto()), status(tc.status, body, "Vfx-Api-Call-Id", "call-"+tc.code), status(201, ""))
			resp := pv.send(http.MethodPost, "/payouts", `{"amount":1}`)
			assert.Equal(t, tc.status, resp.StatusCode)
			pv.notRetried()

			e := pvCheck(t, resp)
			assert.Equal(t, "verto", e.Provider)
			assert.Equal(t, tc.class, e.Class)
			assert.Equal(t, tc.status, e.StatusCode)
			assert.Equal(t, tc.code, e.Code)
			assert.Equal(t, "see dictionary", e.Message)
			assert.Equal(t, "call-"+tc.code, e.RequestID)
			assert.Equal(t, 1, e.Attempts)
			assert.Equal(t, pv.keys()[0], e.IdempotencyKey)
			assert.False(t, e.OutcomeUnknown)
			assert.Equal(t, body, readAll(t, resp), "body still readable")
		})
	}
}

// Verto API, Errors and Retries: "Compliance review or RFI open: No"; "Do not
// retry an open RFI"; "Do not retry the write request": not even on a 503.
func TestVerto_RFINotRetried(t *testing.T) {
	for _, body := range []string{
		`{"errorCode":"RFI_REQUIRED","message":"More information needed"}`,
		`{"errorCode":"RFI_OPEN"}`,
		`{"errorCode":"COMPLIANCE_REVIEW","message":"Payout under review"}`,
		`{"errorCode":"PAYOUT_ON_HOLD","message":"A request for information is open for this payout"}`,
	} {
		t.Run(body, func(t *testing.T) {
			pv := newPV(t, Verto(), status(503, body), status(201, ""))
			resp := pv.send(http.MethodPost, "/payouts", `{"amount":1}`)
			assert.Equal(t, 503, resp.StatusCode)
			pv.notRetried()
			assert.ErrorIs(t, pv.last().Reason, ErrCompliance)
		})
	}
}

// Verto API, Errors and Retries: "429 ... Wait. Implement exponential
// backoff"; "Rate limit (429): Yes. Wait, back off exponentially, and retry
// with the same logical tracking IDs."
func TestVerto_429RetriedWithBackoff(t *testing.T) {
	pv := newPV(t, Verto(), status(429, ""), status(429, ""), status(201, ""))
	resp := pv.send(http.MethodPost, "/payouts", `{"amount":1}`)
	assert.Equal(t, 201, resp.StatusCode)
	pvSame(t, pv.keys(), 3)
	pvSame(t, pv.headers("Vfx-Correlation-Id"), 3)
	// InitialInterval 1s ×2, jitter at the middle; no 5-10s clamp for 429.
	pv.waited(time.Second, 2*time.Second)
	assert.Equal(t, []WaitSource{WaitBackoff, WaitBackoff, WaitNone}, pv.waitSources())
}

// Verto API, Errors and Retries: "Network timeout / unknown result: Yes,
// carefully. Retry with the same Idempotency-Key"; "Payment request timed out
// after submit: Retry with the same Idempotency-Key".
func TestVerto_SameKeyAfterTimeout(t *testing.T) {
	pv := newPV(t, pvWithTimeout(Verto()), stall, status(201, ""))
	body := `{"amount":1}`
	resp := pv.send(http.MethodPost, "/payouts", body)
	assert.Equal(t, 201, resp.StatusCode)
	pvSame(t, pv.keys(), 2)
	pvSame(t, pv.headers("Vfx-Correlation-Id"), 2)
	pv.bodies(body)
	assert.Equal(t, []time.Duration{time.Second}, pv.clk.Waits(), "backoff, not the 5xx floor")
}

// --------------------------------------------------------------- KeyStone

// KeyStone API, HTTP status codes: "Settlement creation is idempotent via
// idempotency_key": a top-level field of the JSON body, not a header; the
// same on every attempt; the rest of the caller's body unchanged.
func TestKeyStone_KeyInBodyFieldSameOnEveryAttempt(t *testing.T) {
	pv := newPV(t, KeyStone(), status(500, ""), status(503, ""), status(201, `{"id":"s1"}`))
	body := `{"template_id":"t-1","parties":[{"role":"buyer","id":"p1"}],"amount":"100.00","meta":{"a":[1,2.5,null,true]}}`

	resp := pv.post("/settlements", body)
	assert.Equal(t, 201, resp.StatusCode)

	reqs := pv.Requests()
	require.Len(t, reqs, 3, "attempts")
	keys := pv.bodyKeys()
	pvSame(t, keys, 3)
	var orig map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &orig))
	for i, r := range reqs {
		assert.Empty(t, r.Header.Values("Idempotency-Key"), "attempt %d: no key header", i+1)
		assert.Equal(t, reqs[0].Body, r.Body, "attempt %d: same bytes", i+1)
		assert.Equal(t, 1, strings.Count(string(r.Body), `"idempotency_key"`), "one key field")
		var sent map[string]any
		require.NoError(t, json.Unmarshal(r.Body, &sent))
		delete(sent, "idempotency_key")
		assert.Equal(t, orig, sent, "attempt %d: the caller's fields unchanged", i+1)
		assert.Equal(t, strconv.Itoa(len(r.Body)), r.Header.Get("Content-Length"))
	}
	// The key is inserted first and the caller's bytes follow as they were.
	assert.Equal(t, `{"idempotency_key":"`+keys[0]+`",`+body[1:], string(reqs[0].Body))
}

// KeyStone API, HTTP status codes: "If you send the same key: First call:
// creates the settlement (201); Subsequent calls: returns the existing
// settlement (200)": the caller's key is kept, never duplicated, and both
// answers are successes.
func TestKeyStone_CallerKeyKeptAnd201Then200Success(t *testing.T) {
	pv := newPV(t, KeyStone(), status(201, `{"id":"s1"}`), status(500, ""), status(200, `{"id":"s1"}`))
	body := `{"amount":"100.00","idempotency_key":"settle-2026-0001","parties":[]}`

	resp1 := pv.post("/settlements", body)
	assert.Equal(t, 201, resp1.StatusCode)
	assert.NoError(t, CheckResponse(resp1))

	// The same settlement again: a 5xx, then the replay of the first.
	resp2 := pv.post("/settlements", body)
	assert.Equal(t, 200, resp2.StatusCode)
	assert.NoError(t, CheckResponse(resp2))
	assert.Equal(t, `{"id":"s1"}`, readAll(t, resp2))

	require.Len(t, pv.Requests(), 3)
	pv.bodies(body)
	for _, r := range pv.Requests() {
		assert.Equal(t, 1, strings.Count(string(r.Body), "idempotency_key"))
		assert.Empty(t, r.Header.Get("Idempotency-Key"))
	}
	pv.waited(500 * time.Millisecond)
}

// KeyStone API, HTTP status codes: "Settlement creation is idempotent via
// idempotency_key": a caller's body that has the field but no usable value
// (null or "") must not be sent with a second idempotency_key member: JSON
// parsers keep the last member, so the provider would see no key at all.
func TestKeyStone_EmptyCallerKeyNotDuplicated(t *testing.T) {
	for _, body := range []string{
		`{"idempotency_key":null,"amount":"100.00"}`,
		`{"idempotency_key":"","amount":"100.00"}`,
	} {
		t.Run(body, func(t *testing.T) {
			pv := newPV(t, KeyStone(), status(500, ""), status(201, ""))
			pv.post("/settlements", body)
			for _, r := range pv.Requests() {
				assert.Equal(t, 1, strings.Count(string(r.Body), `"idempotency_key"`), "%s", r.Body)
				pvUUID(t, pvKeyField(t, r.Body))
			}
		})
	}
}

// KeyStone API, HTTP status codes: "401 Unauthorized: Yes, Refresh token
// first, then retry."
func TestKeyStone_401RefreshThenRetry(t *testing.T) {
	pv := newPV(t, pvWithRefresh(KeyStone()), status(401, `{"detail":"Invalid or expired JWT"}`), status(201, `{"id":"s1"}`))
	req := pvRequest(t, http.MethodPost, pv.URL+"/settlements", `{"amount":"1"}`, "Authorization", "Bearer old-token")

	resp := pv.do(req)
	assert.Equal(t, 201, resp.StatusCode)
	assert.Equal(t, 1, pv.refreshes)
	assert.Equal(t, []string{"Bearer old-token", "Bearer new-token"}, pv.headers("Authorization"))
	assert.Equal(t, "Bearer old-token", req.Header.Get("Authorization"), "caller's request not modified")
	pvSame(t, pv.bodyKeys(), 2)
	reqs := pv.Requests()
	assert.Equal(t, reqs[0].Body, reqs[1].Body)
	pv.waited(0)
}

// KeyStone API, HTTP status codes: "400/422 Validation: No, Fix the request";
// "409 Conflict: No, Check current state"; "404 Not Found: No" (not even with
// RefreshAuth set).
func TestKeyStone_4xxNotRetried(t *testing.T) {
	for _, tc := range []struct {
		status int
		detail string
		class  Class
	}{
		{400, "Malformed JSON", ClassBadRequest},
		{404, "Settlement not found", ClassNotFound},
		{409, "Settlement is not awaiting a compliance decision", ClassConflict},
		{409, "Settlement is not cross-platform", ClassConflict},
		{422, "Missing required role: buyer", ClassUnprocessable},
	} {
		t.Run(strconv.Itoa(tc.status)+" "+tc.detail, func(t *testing.T) {
			pv := newPV(t, pvWithRefresh(KeyStone()), status(tc.status, `{"detail":"`+tc.detail+`"}`), status(201, ""))
			resp := pv.post("/settlements", `{"amount":"1"}`)
			assert.Equal(t, tc.status, resp.StatusCode)
			pv.notRetried()
			e := pvCheck(t, resp)
			assert.Equal(t, tc.class, e.Class)
			assert.Equal(t, tc.detail, e.Message)
			assert.Equal(t, pv.bodyKeys()[0], e.IdempotencyKey)
			assert.False(t, e.OutcomeUnknown)
		})
	}
}

// KeyStone API, HTTP status codes: "For validation errors (422): {"detail":
// [{"loc": ["body", "parties", 0, "role"], "msg": "Field required", ...}]}":
// not retried, and CheckResponse makes a readable Message of it.
func TestKeyStone_422ListDetailDecoded(t *testing.T) {
	detail := `{"detail":[{"loc":["body","parties",0,"role"],"msg":"Field required","type":"missing"}]}`
	for _, code := range []int{422, 400} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			pv := newPV(t, KeyStone(), status(code, detail), status(201, ""))
			resp := pv.post("/settlements", `{"parties":[{}]}`)
			assert.Equal(t, code, resp.StatusCode)
			pv.notRetried()
			e := pvCheck(t, resp)
			assert.Equal(t, ClassUnprocessable, e.Class, "a list-shaped detail is a validation error")
			assert.Equal(t, "body.parties.0.role: Field required", e.Message)
			assert.Contains(t, e.Error(), "body.parties.0.role: Field required")
			assert.Equal(t, detail, readAll(t, resp))
		})
	}
}

// KeyStone API, HTTP status codes: "5xx server error: Yes, Exponential
// backoff": InitialInterval 500ms ×2, jitter pinned at the middle.
func TestKeyStone_5xxExponentialBackoff(t *testing.T) {
	pv := newPV(t, KeyStone(), status(500, `{"detail":"Internal Server Error"}`), status(502, ""), status(503, ""), status(201, `{"id":"s1"}`))
	resp := pv.post("/settlements", `{"amount":"1"}`)
	assert.Equal(t, 201, resp.StatusCode)
	pvSame(t, pv.bodyKeys(), 4)
	pv.waited(500*time.Millisecond, time.Second, 2*time.Second)
}

// KeyStone API, HTTP status codes: "Network timeout: Yes, Retry with same
// idempotency key"; "This makes all creation calls safe to retry on network
// errors."
func TestKeyStone_SameKeyAfterTimeout(t *testing.T) {
	pv := newPV(t, pvWithTimeout(KeyStone()), stall, reset, status(200, `{"id":"s1"}`))
	resp := pv.post("/settlements", `{"amount":"1"}`)
	assert.Equal(t, 200, resp.StatusCode, "the replay of the settlement created by the timed-out attempt")
	assert.NoError(t, CheckResponse(resp))
	pvSame(t, pv.bodyKeys(), 3)
	reqs := pv.Requests()
	assert.Equal(t, reqs[0].Body, reqs[1].Body)
	assert.Equal(t, reqs[0].Body, reqs[2].Body)
	assert.Equal(t, []Class{ClassTimeout, ClassTimeout, ClassSuccess}, pv.classes())
	pv.waited(500*time.Millisecond, time.Second)
}

// KeyStone API, HTTP status codes: the key is a field of the JSON body; a body
// that is not a JSON object cannot carry it, and a write without a key is not
// retried after a 5xx: it could execute twice.
func TestKeyStone_NonObjectBodyGetsNoKeyAndNo5xxRetry(t *testing.T) {
	for _, body := range []string{`[{"amount":"1"}]`, `amount=1&currency=EUR`, `"just a string"`, `{"amount":`} {
		t.Run(body, func(t *testing.T) {
			pv := newPV(t, KeyStone(), status(503, ""), status(201, ""))
			resp := pv.post("/settlements", body)
			assert.Equal(t, 503, resp.StatusCode)
			pv.notRetried()
			reqs := pv.Requests()
			assert.Equal(t, body, string(reqs[0].Body), "body sent as it was")
			assert.Empty(t, reqs[0].Header.Get("Idempotency-Key"))
			assert.ErrorIs(t, pv.last().Reason, ErrUnsafeRetry)
			e := pvCheck(t, resp)
			assert.Empty(t, e.IdempotencyKey)
		})
	}
}

// ------------------------------------------------------------- SmartRetry

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
