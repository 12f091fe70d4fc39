package payretry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// ErrAttemptTimeout is the cause of an attempt cut short by Policy.AttemptTimeout
// or Policy.MaxElapsedTime; errors.Is also matches [context.DeadlineExceeded].
var ErrAttemptTimeout error = attemptTimeoutError{}

// ErrBodyNotReplayable is reported when a retry was needed but the body, with
// no GetBody and larger than Policy.MaxBufferedBody, could not be sent again.
var ErrBodyNotReplayable = errors.New("payretry: request body cannot be replayed")

// ErrThrottled is the cause of an [Error] when the provider's rate limit holds
// the request past the call's deadline or MaxElapsedTime: it was not sent, and
// Error.RetryAt says when to come back.
var ErrThrottled = errors.New("payretry: held by the provider's rate limit")

// ErrUnavailable is the cause of an [Error] when the provider is down and the
// call's deadline came before a probe found it back: the request was not sent.
var ErrUnavailable = errors.New("payretry: provider unavailable")

// ErrCircuitOpen is the cause of an [Error] when Policy.BreakerCoolDown is set
// and the provider is down: the request was not sent.
var ErrCircuitOpen = errors.New("payretry: circuit open")

// ErrRetryBudget is the cause of an [Error] when a retry was needed but the
// transport's retry budget (Policy.RetryBudgetRatio) was spent.
var ErrRetryBudget = errors.New("payretry: retry budget spent")

// ErrEmptyOperation is the cause of an [Error] when a request's context
// carries an empty operation id (see [WithOperation]): nothing was sent.
var ErrEmptyOperation = errors.New("payretry: empty operation id")

// ErrNotRetryable is the reason (see [Attempt].Reason) when the policy does not
// retry the attempt's class or status, or the failure is permanent.
var ErrNotRetryable = errors.New("payretry: not retryable")

// ErrRetriesExhausted is the reason when Policy.MaxAttempts were made.
var ErrRetriesExhausted = errors.New("payretry: retries exhausted")

// ErrUnsafeRetry is the reason when a write without an idempotency key may
// have reached the provider: sending it again could execute it twice.
var ErrUnsafeRetry = errors.New("payretry: write without idempotency key may have executed")

// ErrCompliance is the reason when the provider reports a compliance review
// or a request for information, which no policy retries.
var ErrCompliance = errors.New("payretry: compliance review")

// ErrWaitTooLong is the reason when the wait before a retry would pass
// Policy.MaxRetryAfter, Policy.MaxElapsedTime or the context's deadline.
var ErrWaitTooLong = errors.New("payretry: wait too long")

type attemptTimeoutError struct{}

func (attemptTimeoutError) Error() string        { return "payretry: attempt timed out" }
func (attemptTimeoutError) Timeout() bool        { return true }
func (attemptTimeoutError) Temporary() bool      { return true }
func (attemptTimeoutError) Is(target error) bool { return target == context.DeadlineExceeded }

// Error describes a payment call that did not succeed. RoundTrip returns it
// when no response was obtained; [CheckResponse] builds it from a non-2xx
// response. Its text never contains header values, credentials, idempotency
// keys or request bodies, so it is safe to log.
type Error struct {
	Provider       string // Policy.Name of the transport ("" if unknown)
	Class          Class  // what the outcome means, after the policy's refinement
	StatusCode     int    // 0 when no response was received
	Code           string // provider's machine-readable code from the body (errorCode, reason_code, ...)
	Message        string // provider's human message (detail, message, title, ...)
	Attempts       int    // attempts made in the logical call, the first included
	IdempotencyKey string // key carried by the last attempt ("" if none)
	Operation      string // the caller's operation id (see WithOperation), "" if none
	RequestID      string // provider's request id header, if any
	// OutcomeUnknown is true when the provider may have executed the operation:
	// reconcile (webhook, lookup by IdempotencyKey) before acting again.
	OutcomeUnknown bool
	RetryAt        time.Time // when not zero, when the provider may be called again (see ErrThrottled)
	Err            error     // cause; errors.Is and errors.As reach through it
}

// Error returns a one-line description: provider, class, status, the
// provider's code and message, attempts and cause.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("payretry: ")
	if e.Provider != "" {
		b.WriteString(e.Provider + ": ")
	}
	b.WriteString(e.Class.String())
	switch {
	case e.StatusCode != 0 && e.Code != "":
		fmt.Fprintf(&b, " (%d %s)", e.StatusCode, e.Code)
	case e.StatusCode != 0:
		fmt.Fprintf(&b, " (%d)", e.StatusCode)
	case e.Code != "":
		b.WriteString(" (" + e.Code + ")")
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.Attempts > 1 {
		fmt.Fprintf(&b, " after %d attempts", e.Attempts)
	}
	if e.OutcomeUnknown {
		b.WriteString(" (outcome unknown: reconcile before retrying)")
	}
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// requestID returns the provider's request id header, in order of preference
// (Verto API, Errors and Retries: "Vfx-Api-Call-Id").
func requestID(h http.Header) string {
	for _, k := range [...]string{"Vfx-Api-Call-Id", "Request-Id", "X-Request-Id"} {
		if v := h.Get(k); v != "" {
			return v
		}
	}
	return ""
}

// CheckResponse returns nil for a 2xx response and otherwise an *Error decoded
// from it: the provider's code and message from the body, the request id and,
// from a [Transport], what it knew of the call. resp.Body stays readable.
func CheckResponse(resp *http.Response) error {
	if resp == nil {
		return &Error{Class: ClassOther, Message: "no response"}
	}
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return nil
	}
	code, msg := decodeError(peekBody(resp))
	e := &Error{
		Class:      Classify(resp, nil),
		StatusCode: resp.StatusCode,
		Code:       code,
		Message:    msg,
		Attempts:   1,
		RequestID:  requestID(resp.Header),
	}
	if resp.Request != nil {
		if o, ok := resp.Request.Context().Value(outcomeKey{}).(*callOutcome); ok {
			e.Provider, e.Class, e.Attempts = o.provider, o.class, o.attempts
			e.IdempotencyKey, e.Operation, e.OutcomeUnknown = o.key, o.operation, o.unknown
		} else {
			e.IdempotencyKey = resp.Request.Header.Get("Idempotency-Key")
		}
	}
	return e
}

// callOutcome is attached to the request of a final non-2xx response returned
// by a Transport, so that CheckResponse can report what the transport knew.
type callOutcome struct {
	operation, provider, key string
	class                    Class
	attempts                 int
	unknown                  bool
}

type outcomeKey struct{}
