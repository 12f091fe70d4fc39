// Package payretrytest provides loopback simulators of four payment
// providers, in the spirit of net/http/httptest: a Server answers like
// ORZCash, Verto, KeyStone or SmartRetry, following each provider's published
// rules on idempotency, errors and rate limits, injects faults from a seeded
// FaultPlan, and keeps a ledger of executed payments so that a test can count
// double payments (Duplicates) and lost ones.
//
// # Endpoints
//
// Every provider has one payment-creating endpoint (PaymentPath) and a status
// lookup by client reference (StatusPath):
//
//	ORZCash     POST /v1/transfers          GET /v1/transfers/{reference}
//	Verto       POST /v1/payouts            GET /v1/payouts/{reference}
//	KeyStone    POST /v1/settlements        GET /v1/settlements/{reference}
//	SmartRetry  POST /v1/payments/sale      GET /v1/payments/status/{reference}
//
// A payment body is {"reference": "...", "amount": 1000, "currency": "EUR"},
// the amount an integer in minor units, the currency three capital letters;
// KeyStone takes its idempotency key as a body field, "idempotency_key". An
// executed payment is answered 201 {"id": "...", "reference": "...",
// "status": "executed"}. The lookup answers 200 with the payment (id,
// reference, amount, currency, status, created_at) or 404: it is how a client
// reconciles a payment whose outcome it does not know. KeyStone also has POST
// /v1/settlements/{id}/compliance-decision, /confirm and /reject, which answer
// the documented 409s for an executed settlement; SmartRetry also has POST
// /v1/payments/capture, /refund and /void (body {"reference": ...}) and a stub
// under /v1/recurring/, for its rate-limit classes.
//
// # Providers
//
// ORZCash: Idempotency-Key header, which must be a UUID (400
// INVALID_IDEMPOTENCY_KEY otherwise). Every response to a key, 4xx and 5xx
// included, is stored and replayed for 24 hours. Errors are
// {"code": "...", "message": "..."}.
//
// Verto: Idempotency-Key header; Vfx-Correlation-Id is required on every
// request (400 VALIDATION_ERROR without it); every response carries a unique
// Vfx-Api-Call-Id. Definitive answers (2xx, 4xx but 429) are cached 24 hours;
// 5xx and 429 are not, so a retry with the same key is handled afresh. Errors
// are {"errorCode": "...", "message": "..."}; the documented codes have
// triggers: currency "XXX" gives 400 INVALID_CURRENCY, an amount above
// MaxAmount 400 INSUFFICIENT_FUNDS, currency "KPW" 403 ROUTE_NOT_AVAILABLE, a
// reference starting "nowallet-" 404 WALLET_NOT_FOUND, and one starting "rfi-"
// 409 RFI_REQUIRED (an open compliance review, never to be retried).
//
// KeyStone: idempotency_key body field; the first request creates the
// settlement (201), a repeat returns it (200, same body); only creations are
// kept. Errors are {"detail": "..."}; field validation errors are 422 with a
// list, {"detail": [{"loc": ["body", "amount"], "msg": "Field required",
// "type": "missing"}]}; malformed JSON is 400; business rules (currency "XXX",
// an amount above MaxAmount) are 422 with a string detail.
//
// SmartRetry: Idempotency-Key header, handled like Verto's. Per API key
// (x-api-key) and fixed one-second window: payment operations 100, status
// queries 500, recurring 100, all endpoints 1000 (see Limits). Every response
// carries X-RateLimit-Limit, -Remaining and -Reset (a Unix time) of the class
// hit; beyond a limit the answer is 429 application/problem+json with
// reason_code RATE_LIMIT_EXCEEDED and Retry-After. All errors are problem+json
// with a reason_code. A 409 for a key in flight carries the transaction_id
// once the first request has executed.
//
// For all four: the currency "XXX" and an amount above MaxAmount are declined
// (400, KeyStone 422); a second request with a key whose first request is
// still in flight is answered 409 IDEMPOTENCY_CONFLICT (KeyStone {"detail":
// "Request with this idempotency key is in progress"}) and not executed; a key
// reused with another payload is answered 422, as the IETF Idempotency-Key
// draft says; a POST without a key is executed every time; malformed JSON, a
// wrong method (405) and an unknown path (404) are answered in the provider's
// format. With Options.RequireAuth, a missing or "expired" credential gets 401
// (KeyStone {"detail": "Invalid or expired JWT"}).
//
// A request first passes the provider's edge, in this order: rate limit
// (429), outage (503), credential (401), Verto's Vfx-Correlation-Id (400).
// The edge comes before the idempotency store: its answers are never stored,
// except by ORZCash, whose document stores the response to every request with
// an Idempotency-Key: its edge answers to a payment are stored under the key,
// and a stored key is answered before the edge.
//
// # Faults
//
// A FaultPlan fails a fraction of payment requests before or after executing
// them, stalls, resets or rate-limits them, adds latency, and takes the whole
// server down in outage windows; its injected 503s carry Retry-After: 1, and
// with RetryAfter5xx its 500s and 502s too. Its Phases are periods of degraded service:
// added latency for every payment request, and a fraction of connections
// dropped before the request is handled (no byte answered, nothing executed).
// Draws depend only on the seed, the reference and the number of earlier
// requests with that reference, so the same seed gives the same faults
// whatever the goroutine interleaving; which requests fall in an outage or a
// phase depends on when they arrive. A replay of a stored response is never
// faulted, but for latency and a phase's drops, which come before the store is
// consulted.
//
// Stalls and latency are waited out on the real clock, and end early when the
// client goes away or Close is called, so Close never hangs on them.
//
// The reset fault writes part of a status line before the reset, so the
// client sees a transport error ("unexpected EOF" or "connection reset"). Go's
// http.Transport would itself retry a request that carries an Idempotency-Key
// header and a replayable body if a reused keep-alive connection failed before
// the first response byte; a test that must see every reset can use fresh
// connections (http.Transport.DisableKeepAlives). A phase's drop sends no byte
// at all, so that retry applies to it: a test that must see every drop needs
// fresh connections, or a proxy in front (a reverse proxy does not replay a
// request body and answers 502).
package payretrytest
