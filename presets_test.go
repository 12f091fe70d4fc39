package payretry

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// One test per documented rule of each preset (in orzcash_test.go,
// verto_test.go, keystone_test.go and smartretry_test.go), against a
// loopback server (newScript): what the provider received on the wire, and
// the waits the fake clock recorded. The document and section each rule
// comes from is cited above each test; rules that several presets share are
// tables here.

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

// A time-out leaves a payment's outcome unknown: every preset retries it with
// the same key, so that the provider answers the first request's outcome.
//   - ORZCash Access API, 4.3 Idempotency: "If a transient error or a
//     time-out occurred and the action was not completed in the previous
//     request, the subsequent retry pushes the action to its completion".
//   - Verto API, Errors and Retries: "Network timeout / unknown result: Yes,
//     carefully. Retry with the same Idempotency-Key"; the correlation id
//     too ("the same logical tracking IDs").
//   - KeyStone API, HTTP status codes: "Network timeout: Yes, Retry with same
//     idempotency key"; the replay of the created settlement is a 200.
//   - SmartRetry docs, Rate limits: no row for it; the same key is what its
//     "Use idempotency keys" asks.
func TestPresets_SameKeyAfterTimeout(t *testing.T) {
	cases := []struct {
		preset   Policy
		path     string
		handlers []http.HandlerFunc
		classes  []Class
		waits    []time.Duration
	}{
		{ORZCash(), "/transfers", []http.HandlerFunc{stall, stall, status(201, `{"id":"t1"}`)},
			[]Class{ClassTimeout, ClassTimeout, ClassSuccess}, []time.Duration{500 * time.Millisecond, time.Second}},
		{Verto(), "/payouts", []http.HandlerFunc{stall, status(201, "")},
			[]Class{ClassTimeout, ClassSuccess}, []time.Duration{time.Second}}, // backoff, not the 5xx floor
		{KeyStone(), "/settlements", []http.HandlerFunc{stall, reset, status(200, `{"id":"s1"}`)},
			[]Class{ClassTimeout, ClassTimeout, ClassSuccess}, []time.Duration{500 * time.Millisecond, time.Second}},
		{SmartRetry(), pvSale, []http.HandlerFunc{stall, status(200, "")},
			[]Class{ClassTimeout, ClassSuccess}, []time.Duration{time.Second}},
	}
	for _, tc := range cases {
		t.Run(tc.preset.Name, func(t *testing.T) {
			pv := newPV(t, pvWithTimeout(tc.preset), tc.handlers...)
			body := `{"amount":"10.00"}`
			resp := pv.send(http.MethodPost, tc.path, body)
			assert.Less(t, resp.StatusCode, 300)
			assert.NoError(t, CheckResponse(resp))
			keys := pv.keys()
			if tc.preset.IdempotencyField != "" {
				keys = pv.bodyKeys()
			} else {
				pv.bodies(body)
			}
			pvSame(t, keys, len(tc.handlers))
			if tc.preset.CorrelationHeader != "" {
				pvSame(t, pv.headers(tc.preset.CorrelationHeader), len(tc.handlers))
			}
			assert.Equal(t, tc.classes, pv.classes())
			pv.waited(tc.waits...)
		})
	}
}
