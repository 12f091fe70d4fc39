// Package otelpayretry reports what a [payretry.Transport] does to
// OpenTelemetry: metrics of calls, attempts, waits and the limiter, a span per
// logical call and a child span per attempt.
//
// One call instruments a Transport:
//
//	t, err := otelpayretry.NewTransport(nil, payretry.SmartRetry(), otelpayretry.Options{})
//	client := &http.Client{Transport: t}
//
// With the zero [Options] it uses the global providers ([otel.GetMeterProvider],
// [otel.GetTracerProvider]); a program that installs none pays for no-op
// instruments only. A program that does not use this package pays nothing: the
// payretry module does not depend on OpenTelemetry.
//
// # Metrics
//
// All instruments come from the meter "github.com/payretry/payretry/otelpayretry".
// Every measurement has payretry.provider (Policy.Name); none has a key, a
// URL, a header or a body.
//
//	payretry.call.duration          histogram, s       a logical call, until RoundTrip returns; http.request.method, payretry.outcome
//	payretry.attempts               counter, {attempt} http.request.method, payretry.class, payretry.retry
//	payretry.wait.duration          histogram, s       payretry.wait.kind (retry, hold), payretry.wait.source
//	payretry.unknown_outcomes       counter, {call}    calls that ended with an unknown outcome; http.request.method
//	payretry.limiter.holds          counter, {hold}    attempts the limiter held before sending; payretry.wait.source
//	payretry.retry_budget.refusals  counter, {retry}   retries refused because the retry budget was spent
//	payretry.limiter.down_scopes    gauge, {scope}     1 per limiter scope held as down, 0 once it is back; payretry.scope
//	payretry.limiter.degraded       gauge, {limiter}   1 while a shared limiter (redislimit) paces in-process
//
// payretry.outcome is "success", "failed" or "unknown" (a write may have
// executed: reconcile). payretry.class is the attempt's [payretry.Class] in
// snake case ("server_error", "rate_limited"); payretry.retry is true for
// every attempt after the first. payretry.wait.kind "retry" is the wait before
// a retry (Attempt.Wait, source backoff, retry-after or none), "hold" is the
// limiter's hold before an attempt (Attempt.Hold, source rate-limit,
// retry-after or outage).
//
// The two gauges read the policy's Limiter: the in-process one from
// [payretry.NewLimiter] has DownScopes, a redislimit.Limiter has Degraded;
// other limiters report neither. down_scopes reports the policy's scopes (its
// name, and its name/limit for each limit that names methods or paths) from
// the start, and any other scope of the provider once it was down. The
// gauges stop when the Transport (or the Policy's hook) is garbage-collected.
//
// # Traces
//
// [NewTransport] starts a span per logical call, "payretry <provider>" (kind
// internal), as a child of the span in the request's context, and a span per
// attempt under it, named by the method ("POST") and of kind client, with the
// HTTP client semantic conventions: http.request.method, server.address,
// server.port, url.full without its query, http.request.resend_count on
// retries, http.response.status_code, and error.type (the class) with status
// Error when the attempt failed. A failed final attempt also carries
// payretry.reason (why no retry follows: "retries_exhausted",
// "not_retryable", "retry_budget", ...) and payretry.outcome_unknown.
//
// The call span gets an event "payretry.wait" before each retry and
// "payretry.hold" for each hold of the limiter, with payretry.wait.source and
// payretry.wait.duration (seconds), and at its end payretry.outcome,
// payretry.attempts, the final http.response.status_code and, when it failed,
// error.type and payretry.reason.
//
// # With otelhttp
//
// [otelhttp.NewTransport] composes either way. As the base of this Transport,
// it makes one HTTP client span per attempt, the child of the attempt span
// (and injects the trace context into each attempt's headers). Around this
// Transport, it makes one HTTP span per call, the parent of the call span.
//
// # Without the Transport
//
// [Policy] instruments a Policy for a [payretry.Transport] built by the
// caller. It records the same attempt, wait and limiter metrics and makes the
// attempt spans after the fact, from Attempt.Start and Duration, as children
// of the span in the request's context, which also gets the wait and hold
// events. payretry.call.duration and the call span need [NewTransport], and
// payretry.unknown_outcomes counts only the calls whose last attempt ended
// them (not one that ended while waiting for the next).
//
// [otelhttp.NewTransport]: https://pkg.go.dev/go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp#NewTransport
package otelpayretry
