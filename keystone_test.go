package payretry

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

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
			pvSame(t, pv.bodyKeys(), 2) // the 500 retried with the key made for the call
			for _, r := range pv.Requests() {
				assert.Equal(t, 1, strings.Count(string(r.Body), `"idempotency_key"`), "%s", r.Body)
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
