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
// Every attempt gets a [Class]. A request that provably never left
// ([ClassNetwork]) may always be sent again; one that may have reached the
// provider ([ClassTimeout]) only with the same idempotency key. A response of
// any status is returned with a nil error, and [CheckResponse] turns a non-2xx
// one into an [*Error]; without a response RoundTrip returns an [*Error] whose
// OutcomeUnknown says whether a write may have executed.
//
// Writes get an idempotency key before the first attempt, in a header or a
// JSON body field, kept on every retry unless the provider demands a new one
// after a definitive failure (ORZCash), and never changed after an unknown
// outcome; a key the caller set is respected. With [WithOperation] the keys
// derive from the caller's id for the payment, so that a restarted process
// resumes it without executing it twice. [Attempt].Reason says why a failure
// was not retried.
//
// A [Limiter] holds a provider account only on evidence: its rate-limit
// fields, a 429's Retry-After, or a failure rate that says it is down; it also
// enforces client-side limits ([Limit]). A retry budget keeps retries a bounded
// fraction of traffic. The README has the details and the guarantees; the
// package payretrytest simulates the four providers, with faults, for tests.
package payretry
