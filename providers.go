package payretry

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// presetAttemptTimeout bounds one attempt in the presets. No document gives
// one; a payment call that has not answered in 20 s is treated as a time-out
// (outcome unknown), retried with the same key.
const presetAttemptTimeout = 20 * time.Second

// The presets below follow the providers' own documents; each rule cites the
// document and section it comes from. Every preset keeps the guarantees that
// no rule can lift (see [Policy.Rules]): a write without a key is retried only
// when it provably never left, and after an unknown outcome the key never
// changes.

// ORZCash returns the policy of the ORZCash Access API.
//
// ORZCash stores every response under its Idempotency-Key, failures included,
// and replays it for 24 hours, so a retry after its own 5xx or a 429 must
// carry a new key; after a time-out, or a 5xx that a gateway sent in its
// place (one without ORZCash's error body), the same key is kept, since the
// first request may have executed. A key the caller set is used for the
// first attempt and replaced for such retries: the key of the last attempt
// is in resp.Request.Header, [Error.IdempotencyKey] and
// [Attempt.IdempotencyKey].
func ORZCash() Policy {
	return Policy{
		Name: "orzcash",
		// ORZCash Access API, 3.2 Responses: "Retries should have an exponential
		// backoff and/or jitter."
		MaxAttempts:         4,
		InitialInterval:     500 * time.Millisecond,
		MaxInterval:         8 * time.Second,
		Multiplier:          2,
		RandomizationFactor: 0.5,
		MaxElapsedTime:      time.Minute,
		AttemptTimeout:      presetAttemptTimeout,
		MaxRetryAfter:       time.Minute,
		// ORZCash Access API, 4.3 Idempotency: "add Idempotency-Key: $key header
		// to your POST request"; "A UUID key".
		IdempotencyHeader: "Idempotency-Key",
		KeyMethods:        []string{http.MethodPost},
		Stored:            orzcashOwn,
		Rules: map[Class]Rule{
			// ORZCash Access API, 3.2 Responses: "Only the requests that fails
			// with the following HTTP status codes should be retried ... 5xx
			// ... 429", and "a new idempotency key should be provided as all
			// requests with the same idempotency key returns the same result,
			// including 500 requests."
			ClassServerError: {Retry: true, NewKey: true},
			ClassRateLimited: {Retry: true, NewKey: true},
			// ORZCash Access API, 4.3 Idempotency: "If a transient error or a
			// time-out occurred and the action was not completed in the
			// previous request, the subsequent retry pushes the action to its
			// completion": after a time-out, the same key.
			ClassTimeout: {Retry: true},
			// A request that never left reached no idempotency store.
			ClassNetwork: {Retry: true},
			// Everything else (400, 401, 403, 404, 409, 422) is not in
			// that list: not retried.
		},
	}
}

// orzcashOwn reports whether resp is ORZCash's own answer, which it stores
// under the key and replays (ORZCash Access API, 3.2 Responses: "all requests
// with the same idempotency key returns the same result, including 500
// requests"): an error in ORZCash's format, a JSON object with its "code" and
// "message". Anything else came from a CDN, load balancer or proxy in front
// (Cloudflare's 520-527, Envoy's "upstream connect error", nginx's HTML
// 502/503/504, a WAF's 429): nothing was stored under the key, and ORZCash may
// still be executing the request, so the key must not change.
func orzcashOwn(resp *http.Response) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(peekBody(resp), &m) != nil {
		return false
	}
	var msg string
	return rawString(m["code"]) != "" && json.Unmarshal(m["message"], &msg) == nil
}

// Verto returns the policy of the Verto API.
//
// Every write carries an Idempotency-Key, kept on every attempt, and every
// call a Vfx-Correlation-Id, made once per logical call. A 5xx is retried
// after 5-10 seconds; a 401 once, after Policy.RefreshAuth (set it to renew
// the bearer token); an open RFI or compliance review never.
func Verto() Policy {
	return Policy{
		Name:                "verto",
		MaxAttempts:         4,
		InitialInterval:     time.Second,
		MaxInterval:         10 * time.Second,
		Multiplier:          2,
		RandomizationFactor: 0.5,
		MaxElapsedTime:      time.Minute,
		AttemptTimeout:      presetAttemptTimeout,
		MaxRetryAfter:       time.Minute,
		// Verto API, Errors and Retries: "Send an Idempotency-Key on any
		// write request that can create a financial side effect."
		IdempotencyHeader: "Idempotency-Key",
		KeyMethods:        []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete},
		// Verto API, Errors and Retries: "Vfx-Correlation-Id ... Mandatory. A
		// unique GUID provided by you to track a logical operation", "retry
		// with the same logical tracking IDs".
		CorrelationHeader: "Vfx-Correlation-Id",
		Classify:          classifyVerto,
		Rules: map[Class]Rule{
			// Verto API, Errors and Retries: "401/403 ... Refresh Token";
			// "Authentication or permission failure (401 / 403): Usually no".
			// A 401 is retried once after the token refresh; a 403 (such as
			// ROUTE_NOT_AVAILABLE: "Contact your account manager") is not.
			ClassUnauthorized: {Retry: true},
			// Verto API, Errors and Retries: "429 ... Wait. Implement
			// exponential backoff."
			ClassRateLimited: {Retry: true},
			// Verto API, Errors and Retries: "5xx ... Retry Safely. Use your
			// Idempotency-Key and wait 5-10 seconds."
			ClassServerError: {Retry: true, MinWait: 5 * time.Second, MaxWait: 10 * time.Second},
			// Verto API, Errors and Retries: "Network timeout / unknown
			// result: Yes, carefully. Retry with the same Idempotency-Key".
			ClassTimeout: {Retry: true},
			ClassNetwork: {Retry: true},
			// Verto API, Errors and Retries: "400 ... Don't Retry"; "Compliance
			// review or RFI open: No" (enforced for every policy).
		},
	}
}

// classifyVerto refines the status with the errorCode of Verto's error
// dictionary (Verto API, Errors and Retries).
func classifyVerto(resp *http.Response, err error) Class {
	c := Classify(resp, err)
	if resp == nil || resp.StatusCode < 400 || resp.StatusCode >= 500 {
		return c // a 5xx stays one whatever its code: it may have executed
	}
	code, _ := decodeError(peekBody(resp))
	switch code {
	case "INSUFFICIENT_FUNDS", "INVALID_CURRENCY", "VALIDATION_ERROR":
		return ClassBadRequest
	case "WALLET_NOT_FOUND":
		return ClassNotFound
	case "ROUTE_NOT_AVAILABLE":
		return ClassForbidden
	}
	return c
}

// KeyStone returns the policy of the KeyStone settlement API.
//
// The key travels in the JSON body as "idempotency_key" and is kept on every
// attempt: a replay answers 200 with the existing settlement. A 401 is retried
// once after Policy.RefreshAuth; 400, 404, 409 and 422 never.
func KeyStone() Policy {
	return Policy{
		Name: "keystone",
		// KeyStone API, HTTP status codes: "5xx server error: Yes, Exponential
		// backoff".
		MaxAttempts:         4,
		InitialInterval:     500 * time.Millisecond,
		MaxInterval:         10 * time.Second,
		Multiplier:          2,
		RandomizationFactor: 0.5,
		MaxElapsedTime:      time.Minute,
		AttemptTimeout:      presetAttemptTimeout,
		MaxRetryAfter:       time.Minute,
		// KeyStone API, HTTP status codes: "Settlement creation is idempotent
		// via idempotency_key" (a body field); "Subsequent calls: returns the
		// existing settlement (200)".
		IdempotencyField: "idempotency_key",
		KeyMethods:       []string{http.MethodPost},
		Classify:         classifyKeyStone,
		Rules: map[Class]Rule{
			// KeyStone API, HTTP status codes: "401 Unauthorized: Yes, Refresh
			// token first, then retry".
			ClassUnauthorized: {Retry: true},
			ClassServerError:  {Retry: true},
			// KeyStone API, HTTP status codes: "Network timeout: Yes, Retry with
			// same idempotency key".
			ClassTimeout: {Retry: true},
			ClassNetwork: {Retry: true},
			// Not in the document, which does not list 429; a rate limit
			// executed nothing, so it is retried as for the other three.
			ClassRateLimited: {Retry: true},
			// KeyStone API, HTTP status codes: "400/422 Validation: No", "409
			// Conflict: No, Check current state", "404 Not Found: No".
		},
	}
}

// classifyKeyStone reads KeyStone's {"detail": ...} bodies
// (KeyStone API, HTTP status codes): an expired JWT is a 401 whatever the
// status, and a list-shaped detail is a validation error (422).
func classifyKeyStone(resp *http.Response, err error) Class {
	c := Classify(resp, err)
	if resp == nil || c == ClassSuccess || c == ClassServerError {
		return c
	}
	b := peekBody(resp)
	if _, msg := decodeError(b); c == ClassForbidden && strings.Contains(strings.ToLower(msg), "expired jwt") {
		return ClassUnauthorized
	}
	if c == ClassBadRequest && listDetail(b) {
		return ClassUnprocessable
	}
	return c
}

// SmartRetry returns the policy of the SmartRetry payments API.
//
// POSTs carry an Idempotency-Key. 429 and 500, 502, 503 and 504 are retried
// with a backoff from 1 s doubling to at most 60 s with 10 % jitter, up to 5
// retries, honouring Retry-After. A 409 to a keyed request often means the
// original succeeded: it is returned at once and [CheckResponse] reports
// OutcomeUnknown. A 401 is never retried.
func SmartRetry() Policy {
	return Policy{
		Name: "smartretry",
		// SmartRetry docs, Rate limits: "base_delay = 1", "max_delay = 60",
		// "Add 10% jitter", 5 retries.
		MaxAttempts:         6,
		InitialInterval:     time.Second,
		MaxInterval:         60 * time.Second,
		Multiplier:          2,
		RandomizationFactor: 0.1,
		JitterUpOnly:        true,
		MaxElapsedTime:      2 * time.Minute,
		AttemptTimeout:      presetAttemptTimeout,
		MaxRetryAfter:       time.Minute,
		// SmartRetry docs, Rate limits: "Always include an Idempotency-Key
		// header on POST requests."
		IdempotencyHeader: "Idempotency-Key",
		KeyMethods:        []string{http.MethodPost},
		Classify:          classifySmartRetry,
		// SmartRetry docs, Rate limits, "Rate limits": payment operations
		// (sale, capture, refund, void) 100/s, status queries 500/s,
		// recurring operations 100/s, all endpoints combined 1,000/s, per
		// API key. "Monitor remaining quota: Check X-RateLimit-Remaining
		// headers and throttle proactively before hitting limits."
		Limits: []Limit{
			{Name: "payment", Methods: []string{http.MethodPost}, Rate: 100,
				Paths: []string{"/payments/sale", "/payments/capture", "/payments/refund", "/payments/void"}},
			{Name: "recurring", Paths: []string{"/recurring"}, Rate: 100},
			{Name: "status", Methods: []string{http.MethodGet, http.MethodHead}, Rate: 500},
			{Name: "all", Rate: 1000},
		},
		Rules: map[Class]Rule{
			// SmartRetry docs, Rate limits: "429 Yes Use Retry-After header".
			ClassRateLimited: {Retry: true},
			// SmartRetry docs, Rate limits: "500/502/504 Yes Exponential
			// backoff", "503 Yes Use Retry-After if present"; other 5xx are
			// not in the matrix.
			ClassServerError: {Retry: true, Statuses: []int{500, 502, 503, 504}},
			// SmartRetry docs, Rate limits: "a 409 Conflict with an
			// idempotency key often means the original request succeeded.
			// Check the response body for the transaction ID before
			// retrying."
			ClassConflict: {OutcomeUnknown: true},
			// Not in the document's matrix: a time-out is retried with the
			// same key, as the other three ask, and a request that never
			// left may always be sent again.
			ClassTimeout: {Retry: true},
			ClassNetwork: {Retry: true},
			// SmartRetry docs, Rate limits: "400 No", "401 No Check API key",
			// "404 No".
		},
	}
}

// classifySmartRetry reads RFC 9457 problem details with SmartRetry's
// reason_code (SmartRetry docs, Rate limits): RATE_LIMIT_EXCEEDED is a rate
// limit whatever the status.
func classifySmartRetry(resp *http.Response, err error) Class {
	c := Classify(resp, err)
	if resp == nil || c == ClassSuccess || c == ClassRateLimited {
		return c
	}
	if code, _ := decodeError(peekBody(resp)); code == "RATE_LIMIT_EXCEEDED" {
		return ClassRateLimited
	}
	return c
}
