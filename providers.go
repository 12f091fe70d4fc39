package payretry

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// presetAttemptTimeout bounds one attempt in the presets. No document gives
// one; a call unanswered after 20 s is a time-out, retried with the same key.
const presetAttemptTimeout = 20 * time.Second

// ORZCash returns the policy of the ORZCash Access API. ORZCash stores every
// response under its key, so a retry after its own 5xx or 429 carries a new
// key; after a time-out or a gateway's 5xx the key stays.
func ORZCash() Policy {
	return Policy{
		Name: "orzcash",
		// ORZCash Access API, 3.2 Responses: "Retries should have an exponential backoff and/or jitter."
		MaxAttempts: 4, InitialInterval: 500 * time.Millisecond, MaxInterval: 8 * time.Second,
		Multiplier: 2, RandomizationFactor: 0.5,
		MaxElapsedTime: time.Minute, AttemptTimeout: presetAttemptTimeout, MaxRetryAfter: time.Minute,
		// ORZCash Access API, 4.3 Idempotency: "add Idempotency-Key: $key header
		// to your POST request"; "A UUID key".
		IdempotencyHeader: "Idempotency-Key",
		KeyMethods:        []string{http.MethodPost},
		Stored:            orzcashOwn,
		Rules: map[Class]Rule{
			// ORZCash Access API, 3.2 Responses: retry "5xx" and "429"; "a new idempotency
			// key should be provided as all requests with the same idempotency key returns
			// the same result, including 500 requests." Nothing else is retried.
			ClassServerError: {Retry: true, NewKey: true},
			ClassRateLimited: {Retry: true, NewKey: true},
			// ORZCash Access API, 4.3 Idempotency: "If a transient error or a time-out
			// occurred ... the subsequent retry pushes the action to its completion".
			ClassTimeout: {Retry: true},
			ClassNetwork: {Retry: true}, // never left: no key was stored
		},
	}
}

// orzcashOwn reports whether resp is in ORZCash's error format, a JSON object
// with "code" and "message", and so stored under the key; a CDN's, proxy's or
// WAF's answer stored nothing, and the key must not change.
func orzcashOwn(resp *http.Response) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(peekBody(resp), &m) != nil {
		return false
	}
	var msg string
	return rawString(m["code"]) != "" && json.Unmarshal(m["message"], &msg) == nil
}

// Verto returns the policy of the Verto API: an Idempotency-Key on every write
// and a Vfx-Correlation-Id per logical call; 5xx retried after 5-10 s, a 401
// once after Policy.RefreshAuth, an open RFI or compliance review never.
func Verto() Policy {
	return Policy{
		Name:        "verto",
		MaxAttempts: 4, InitialInterval: time.Second, MaxInterval: 10 * time.Second,
		Multiplier: 2, RandomizationFactor: 0.5,
		MaxElapsedTime: time.Minute, AttemptTimeout: presetAttemptTimeout, MaxRetryAfter: time.Minute,
		// Verto API, Errors and Retries: "Send an Idempotency-Key on any write
		// request that can create a financial side effect."
		IdempotencyHeader: "Idempotency-Key",
		KeyMethods:        []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete},
		// Verto API, Errors and Retries: "Vfx-Correlation-Id ... Mandatory. A unique GUID
		// provided by you to track a logical operation"; "retry with the same logical tracking IDs".
		CorrelationHeader: "Vfx-Correlation-Id",
		Classify:          classifyVerto,
		Rules: map[Class]Rule{
			// Verto API, Errors and Retries: "401/403 ... Refresh Token", "Usually no":
			// a 401 once after the refresh; a 403 (ROUTE_NOT_AVAILABLE) never.
			ClassUnauthorized: {Retry: true},
			// Verto API, Errors and Retries: "429 ... Wait. Implement exponential backoff."
			ClassRateLimited: {Retry: true},
			// Verto API, Errors and Retries: "5xx ... Retry Safely. Use your
			// Idempotency-Key and wait 5-10 seconds."
			ClassServerError: {Retry: true, MinWait: 5 * time.Second, MaxWait: 10 * time.Second},
			// Verto API, Errors and Retries: "Network timeout / unknown result: Yes,
			// carefully. Retry with the same Idempotency-Key".
			ClassTimeout: {Retry: true},
			ClassNetwork: {Retry: true},
			// Verto API, Errors and Retries: "400 ... Don't Retry"; "Compliance review or
			// RFI open: No" (no policy retries it).
		},
	}
}

// classifyVerto refines a 4xx with the errorCode of Verto's error dictionary
// (Verto API, Errors and Retries); a 5xx stays one, as it may have executed.
func classifyVerto(resp *http.Response, err error) Class {
	c := Classify(resp, err)
	if resp == nil || resp.StatusCode < 400 || resp.StatusCode >= 500 {
		return c
	}
	switch code, _ := decodeError(peekBody(resp)); code {
	case "INSUFFICIENT_FUNDS", "INVALID_CURRENCY", "VALIDATION_ERROR":
		return ClassBadRequest
	case "WALLET_NOT_FOUND":
		return ClassNotFound
	case "ROUTE_NOT_AVAILABLE":
		return ClassForbidden
	}
	return c
}

// KeyStone returns the policy of the KeyStone settlement API: the key in the
// JSON body's "idempotency_key", kept on every attempt; a 401 retried once
// after Policy.RefreshAuth; 400, 404, 409 and 422 never.
func KeyStone() Policy {
	return Policy{
		Name: "keystone",
		// KeyStone API, HTTP status codes: "5xx server error: Yes, Exponential backoff".
		MaxAttempts: 4, InitialInterval: 500 * time.Millisecond, MaxInterval: 10 * time.Second,
		Multiplier: 2, RandomizationFactor: 0.5,
		MaxElapsedTime: time.Minute, AttemptTimeout: presetAttemptTimeout, MaxRetryAfter: time.Minute,
		// KeyStone API, HTTP status codes: "Settlement creation is idempotent via
		// idempotency_key"; "Subsequent calls: returns the existing settlement (200)".
		IdempotencyField: "idempotency_key",
		KeyMethods:       []string{http.MethodPost},
		Classify:         classifyKeyStone,
		Rules: map[Class]Rule{
			// KeyStone API, HTTP status codes: "401 Unauthorized: Yes, Refresh token first, then retry".
			ClassUnauthorized: {Retry: true},
			ClassServerError:  {Retry: true},
			// KeyStone API, HTTP status codes: "Network timeout: Yes, Retry with same idempotency key".
			ClassTimeout: {Retry: true},
			ClassNetwork: {Retry: true},
			// The document lists no 429; a rate limit executed nothing, so it is retried.
			ClassRateLimited: {Retry: true},
			// KeyStone API, HTTP status codes: "400/422 Validation: No", "409 Conflict: No,
			// Check current state", "404 Not Found: No".
		},
	}
}

// classifyKeyStone reads KeyStone's {"detail": ...} bodies (KeyStone API, HTTP
// status codes): an expired JWT is a 401 whatever the status, and a
// list-shaped detail is a validation error (422).
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

// SmartRetry returns the policy of the SmartRetry payments API: an
// Idempotency-Key on POSTs; 429 and 500/502/503/504 retried; a 409 to a keyed
// request returned at once with OutcomeUnknown; a 401 never retried.
func SmartRetry() Policy {
	return Policy{
		Name: "smartretry",
		// SmartRetry docs, Rate limits: "base_delay = 1", "max_delay = 60", "Add 10%
		// jitter", "max_retries=5".
		MaxAttempts: 6, InitialInterval: time.Second, MaxInterval: 60 * time.Second,
		Multiplier: 2, RandomizationFactor: 0.1, JitterUpOnly: true,
		MaxElapsedTime: 2 * time.Minute, AttemptTimeout: presetAttemptTimeout, MaxRetryAfter: time.Minute,
		// SmartRetry docs, Rate limits: "Always include an Idempotency-Key header on POST requests."
		IdempotencyHeader: "Idempotency-Key",
		KeyMethods:        []string{http.MethodPost},
		Classify:          classifySmartRetry,
		// SmartRetry docs, Rate limits: payment operations 100/s, status queries 500/s,
		// recurring 100/s, all endpoints 1,000/s, per API key; "throttle proactively".
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
			// SmartRetry docs, Rate limits: "500/502/504 Yes Exponential backoff", "503 Yes
			// Use Retry-After if present"; other 5xx are not in the matrix.
			ClassServerError: {Retry: true, Statuses: []int{500, 502, 503, 504}},
			// SmartRetry docs, Rate limits: "a 409 Conflict with an idempotency key often
			// means the original request succeeded."
			ClassConflict: {OutcomeUnknown: true},
			// Not in the matrix: a time-out keeps its key, as the other three ask.
			ClassTimeout: {Retry: true},
			ClassNetwork: {Retry: true},
			// SmartRetry docs, Rate limits: "400 No", "401 No Check API key", "404 No".
		},
	}
}

// classifySmartRetry reads SmartRetry's RFC 9457 problem details (SmartRetry
// docs, Rate limits): reason_code RATE_LIMIT_EXCEEDED is a rate limit whatever the status.
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
