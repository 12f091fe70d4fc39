package payretry

import (
	"log/slog"
	"net/http"
	"time"
)

// WaitSource says where the wait before a retry came from.
type WaitSource int

// Sources of a wait.
const (
	WaitNone       WaitSource = iota // no wait: no retry, or a retry at once
	WaitBackoff                      // exponential backoff with jitter
	WaitRetryAfter                   // the provider's Retry-After
	WaitRateLimit                    // a rate limit: the provider's window, a token bucket, the adaptive rate
	WaitOutage                       // the provider is down: waiting for a probe to succeed
)

var waitSourceNames = [...]string{"none", "backoff", "retry-after", "rate-limit", "outage"}

// String returns "none", "backoff", "retry-after", "rate-limit" or "outage".
func (s WaitSource) String() string {
	if s > 0 && int(s) < len(waitSourceNames) {
		return waitSourceNames[s]
	}
	return "none"
}

// Attempt describes one attempt of a logical call, for Policy.OnAttempt.
type Attempt struct {
	Provider       string // Policy.Name
	Operation      string // the caller's operation id (see WithOperation); "" if none
	Number         int    // 1 for the first attempt
	Method         string
	Class          Class
	StatusCode     int    // 0 when no response was received
	Code           string // provider's error code from the body, if any
	Err            error  // transport error, when no response was received
	IdempotencyKey string // key this attempt carried ("" if none)

	Start    time.Time     // when the attempt began (the first: when the call did, unless it was held)
	Duration time.Duration // from Start until its response headers or its error
	// Hold is how long the limiter held the attempt before it was sent, and
	// HoldSource why (WaitNone when it was not held).
	Hold       time.Duration
	HoldSource WaitSource

	Retry      bool          // another attempt follows
	Wait       time.Duration // before the next attempt, when Retry
	WaitSource WaitSource
	// Reason says why no attempt follows a failed one: errors.Is matches
	// ErrNotRetryable, ErrRetriesExhausted, ErrUnsafeRetry, ErrCompliance,
	// ErrWaitTooLong, ErrRetryBudget, ErrBodyNotReplayable or the context's error.
	Reason error
	// OutcomeUnknown is true when the attempt failed and a write of the call
	// may have executed; with Retry false, reconcile before acting again.
	OutcomeUnknown bool
	// Request is the request the attempt sent, for its context; read-only, as
	// it may be the caller's own or share its header.
	Request *http.Request
}

// report calls the attempt hook and logs retries and failed calls.
func (c *call) report(t *try, d decision) {
	h, l := c.t.p.OnAttempt, c.t.p.Logger
	if h == nil && (l == nil || t.o.class == ClassSuccess) {
		return
	}
	a := Attempt{
		Provider: c.t.p.Name, Operation: c.op, Number: t.n, Method: c.req.Method, Class: t.o.class,
		Code: t.code, Err: t.err, IdempotencyKey: t.key, Start: t.start, Duration: t.took,
		Hold: c.hold, HoldSource: c.held, Retry: d.retry, Reason: d.reason, Request: t.req,
		OutcomeUnknown: d.unknown && c.st.write,
	}
	if t.resp != nil {
		a.StatusCode = t.resp.StatusCode
	}
	if d.retry {
		a.Wait, a.WaitSource = d.wait, d.source
	}
	if h != nil {
		h(a)
	}
	if l == nil || a.Class == ClassSuccess {
		return
	}
	level, msg := slog.LevelInfo, "payretry: retrying"
	if !a.Retry {
		level, msg = slog.LevelWarn, "payretry: call failed"
	}
	attrs := []slog.Attr{slog.String("provider", a.Provider), slog.Int("attempt", a.Number),
		slog.String("method", a.Method), slog.String("host", c.req.URL.Host), slog.String("path", c.req.URL.Path),
		slog.String("class", a.Class.String())}
	if a.StatusCode != 0 {
		attrs = append(attrs, slog.Int("status", a.StatusCode))
	}
	if a.Code != "" {
		attrs = append(attrs, slog.String("code", a.Code))
	}
	if a.Err != nil {
		attrs = append(attrs, slog.String("error", a.Err.Error()))
	}
	if a.IdempotencyKey != "" {
		attrs = append(attrs, slog.String("idempotency_key", a.IdempotencyKey))
	}
	if a.Retry {
		attrs = append(attrs, slog.Duration("wait", a.Wait), slog.String("wait_source", a.WaitSource.String()))
	} else if a.Reason != nil {
		attrs = append(attrs, slog.String("reason", a.Reason.Error()))
	}
	if a.OutcomeUnknown && !a.Retry {
		attrs = append(attrs, slog.Bool("outcome_unknown", true))
	}
	l.LogAttrs(c.req.Context(), level, msg, attrs...)
}
