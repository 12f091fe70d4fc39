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
// outcome the key never changes. A key the caller set is respected. With
// [WithOperation], the keys derive from the caller's id for the payment, so
// that a restarted process resumes it without executing it twice.
//
// What happens after each attempt is decided in one place, a function with
// no I/O that keeps every guarantee no policy can lift (see the README's
// "What payretry guarantees"); [Attempt].Reason says why a failure was not
// retried.
//
// # Pacing
//
// A [Limiter] holds a provider account only on evidence about it: quota
// fields saying the window is spent (X-RateLimit-*, the IETF RateLimit
// fields), a 429 and its Retry-After, or a failure rate across the last
// requests (the provider is down, and a probe finds out when it is back). It
// also enforces client-side limits ([Limit]) and lowers the rate after
// repeated 429s. A retry budget keeps retries a bounded fraction of traffic.
//
// The package payretrytest simulates the four providers with faults on
// demand, for tests.
package payretry
