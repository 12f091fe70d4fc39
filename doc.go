// Package payretry makes calls to payment APIs safe to retry.
//
// A [Transport] is an [http.RoundTripper] that wraps any base transport. For
// every request it decides, from the provider's own published rules (a
// [Policy]), whether a failure may be retried, how long to wait, and which
// idempotency key the retry must carry, so that a payment runs once: never
// twice, never silently lost.
//
//	t, err := payretry.NewTransport(nil, payretry.Verto())
//	if err != nil { ... }
//	client := &http.Client{Transport: t}
//
// # Outcomes
//
// Every attempt gets a [Class]. A request that provably never left (dial,
// DNS, TLS handshake, refused: seen on the wire with net/http/httptrace) is
// [ClassNetwork] and may always be sent again; one that may have reached the
// provider without an answer is [ClassTimeout], retried only with the same
// idempotency key. A response of any status is returned with a nil error, as
// the RoundTripper contract requires; [CheckResponse] turns a non-2xx one into
// an [*Error]. When no response was obtained, RoundTrip returns an [*Error]
// whose OutcomeUnknown field says whether a write may have executed.
//
// # Keys
//
// Writes get an idempotency key before the first attempt, in a header or in a
// JSON body field, and keep it on every retry, except where the provider
// demands a new one after a definitive failure (ORZCash). After an unknown
// outcome the key never changes. A key the caller set is respected.
//
// # Pacing
//
// A [Limiter] holds requests while a provider's rate limit is spent
// (Retry-After, X-RateLimit-*, the IETF RateLimit fields), enforces
// client-side limits ([Limit]), lowers the rate after repeated 429s, and holds requests
// while a provider is down until a probe succeeds. A retry budget keeps
// retries a bounded fraction of traffic.
//
// The package payretrytest simulates the four providers with faults on
// demand, for tests.
package payretry
