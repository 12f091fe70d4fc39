package payretrytest

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
)

// Provider names one of the simulated payment providers.
type Provider string

// The simulated providers. Each follows its published documentation, cited by seed file name in the code.
const (
	// ORZCash is the ORZCash Access API: Idempotency-Key header, every response stored for 24 h.
	ORZCash Provider = "orzcash"
	// Verto is Verto's API: Idempotency-Key and a mandatory Vfx-Correlation-Id header, errorCode bodies.
	Verto Provider = "verto"
	// KeyStone is KeyStone's settlement API: idempotency_key in the JSON body, {"detail": ...} errors.
	KeyStone Provider = "keystone"
	// SmartRetry is SmartRetry's API: per-key rate limits per endpoint type, RFC 9457 problem+json errors.
	SmartRetry Provider = "smartretry"
)

// PaymentPath returns the path of p's payment-creating endpoint, such as
// "/v1/transfers" for ORZCash, or "" for an unknown provider.
func PaymentPath(p Provider) string {
	switch p {
	case ORZCash:
		return "/v1/transfers"
	case Verto:
		return "/v1/payouts"
	case KeyStone:
		return "/v1/settlements"
	case SmartRetry:
		return "/v1/payments/sale"
	}
	return ""
}

// StatusPath returns the path of p's status lookup for the payment with the
// given client reference, escaped for use in a URL, or "" for an unknown
// provider.
func StatusPath(p Provider, reference string) string {
	prefix := statusPrefix(p)
	if prefix == "" {
		return ""
	}
	return prefix + url.PathEscape(reference)
}

func statusPrefix(p Provider) string {
	switch p {
	case ORZCash, Verto, KeyStone:
		return PaymentPath(p) + "/"
	case SmartRetry:
		return "/v1/payments/status/"
	}
	return ""
}

func (p Provider) valid() bool { return PaymentPath(p) != "" }

// idPrefix starts the provider's transaction ids.
func (p Provider) idPrefix() string {
	switch p {
	case ORZCash:
		return "trf_"
	case Verto:
		return "po_"
	case KeyStone:
		return "stl_"
	}
	return "txn_"
}

// stores reports whether p keeps a final response with this status under its
// idempotency key, to replay it for later requests with the same key. Conflict
// and key-reuse answers (409, 422 for another payload) never get here: they
// are answers about the key, not to it.
func (p Provider) stores(status int) bool {
	switch p {
	case ORZCash:
		// ORZCash Access API, 4.3 Idempotency: "For any request with the Idempotency-Key header, we will
		// store the response and re-send it for every request for the same idempotency key for 24H."
		// ORZCash Access API, 3.2 Responses: "all requests with the same idempotency key returns the same
		// result, including 500 requests".
		return true
	case KeyStone:
		// KeyStone API, HTTP status codes: "First call: creates the settlement (201)" and "Subsequent
		// calls: returns the existing settlement (200)": only a creation is kept.
		return status == http.StatusCreated
	}
	// Verto, Verto API, Errors and Retries: "Verto caches the result for 24 hours. Retrying with the
	// same key will return the original success/failure", yet a 5xx is to be retried "safely with the
	// same Idempotency-Key", which only makes sense if a 5xx is not cached; nor is a 429 ("retry with
	// the same logical tracking IDs"). SmartRetry (SmartRetry docs, Rate limits) retries 429 and 5xx
	// with the same key too, so the same rule applies: definitive answers are kept, transient ones not.
	return status < 500 && status != http.StatusTooManyRequests
}

// Machine-readable error codes. Verto's come from its document (Verto API, Errors and Retries),
// RATE_LIMIT_EXCEEDED from SmartRetry's (SmartRetry docs, Rate limits); the rest follow their style.
// ORZCash sends them as "code", Verto as "errorCode", SmartRetry as "reason_code"; KeyStone has only
// the human-readable "detail".
const (
	codeValidation        = "VALIDATION_ERROR"
	codeInvalidCurrency   = "INVALID_CURRENCY"
	codeInsufficientFunds = "INSUFFICIENT_FUNDS"
	codeWalletNotFound    = "WALLET_NOT_FOUND"
	codeRouteNotAvailable = "ROUTE_NOT_AVAILABLE"
	codeRFIRequired       = "RFI_REQUIRED"
	codeNotFound          = "NOT_FOUND"
	codeMethodNotAllowed  = "METHOD_NOT_ALLOWED"
	codeUnauthorized      = "UNAUTHORIZED"
	codeInvalidAPIKey     = "INVALID_API_KEY"
	codeInvalidKey        = "INVALID_IDEMPOTENCY_KEY"
	codeConflict          = "IDEMPOTENCY_CONFLICT"
	codeKeyReused         = "IDEMPOTENCY_KEY_REUSED"
	codeRateLimited       = "RATE_LIMIT_EXCEEDED"
	codeInternal          = "INTERNAL_ERROR"
	codeBadGateway        = "BAD_GATEWAY"
	codeUnavailable       = "SERVICE_UNAVAILABLE"
)

// Messages shared by all providers.
const (
	msgRateLimited = "Rate limit exceeded. Retry after 1 second." // SmartRetry docs, Rate limits
	msgInFlight    = "Request with this idempotency key is in progress"
	msgKeyReused   = "Idempotency key reused with a different request payload"
	msgMalformed   = "Malformed JSON body"
)

// response is one HTTP answer, built before it is written so that it can be
// stored under an idempotency key and replayed.
type response struct {
	status int
	header http.Header
	body   []byte
}

func jsonResponse(status int, contentType string, v any) response {
	body, err := json.Marshal(v)
	if err != nil { // only plain structs, maps and strings are passed in
		body = []byte("{}")
	}
	return response{status: status, header: http.Header{"Content-Type": {contentType}}, body: body}
}

// clone returns a copy that shares nothing mutable with r.
func (r response) clone() response {
	r.header = r.header.Clone()
	return r
}

type orzError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

type vertoError struct {
	ErrorCode string `json:"errorCode"`
	Message   string `json:"message"`
}

type keystoneError struct {
	Detail any `json:"detail"` // a string, or []fieldError for validation errors
}

// problem is an RFC 9457 problem detail with SmartRetry's reason_code member.
type problem struct {
	Type          string `json:"type"`
	Title         string `json:"title"`
	Status        int    `json:"status"`
	Detail        string `json:"detail"`
	ReasonCode    string `json:"reason_code"`
	TransactionID string `json:"transaction_id,omitempty"`
}

// errorResponse renders an error in p's format.
func (p Provider) errorResponse(status int, code, msg string) response {
	switch p {
	case ORZCash:
		return jsonResponse(status, "application/json", orzError{code, msg})
	case Verto:
		// Verto API, Errors and Retries: "the response body contains a specific errorCode string".
		return jsonResponse(status, "application/json", vertoError{code, msg})
	case KeyStone:
		// KeyStone API, HTTP status codes: "All errors return a consistent structure: {"detail": ...}".
		return jsonResponse(status, "application/json", keystoneError{msg})
	}
	// SmartRetry docs, Rate limits: the 429 body is a problem detail with "reason_code"; other
	// errors use the same shape.
	return jsonResponse(status, "application/problem+json", problem{
		Type:       problemType(code),
		Title:      http.StatusText(status),
		Status:     status,
		Detail:     msg,
		ReasonCode: code,
	})
}

// problemType is SmartRetry's problem type URI for a reason code;
// RATE_LIMIT_EXCEEDED maps to the documented ".../errors/rate-limit".
func problemType(code string) string {
	slug := "rate-limit"
	if code != codeRateLimited {
		slug = strings.ToLower(strings.ReplaceAll(code, "_", "-"))
	}
	return "https://api.smartretry.com/errors/" + slug
}
