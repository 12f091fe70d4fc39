package payretry

import (
	"log/slog"
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

// String returns "none", "backoff", "retry-after", "rate-limit" or "outage".
func (s WaitSource) String() string {
	switch s {
	case WaitBackoff:
		return "backoff"
	case WaitRetryAfter:
		return "retry-after"
	case WaitRateLimit:
		return "rate-limit"
	case WaitOutage:
		return "outage"
	}
	return "none"
}

// Attempt describes one attempt of a logical call, for Policy.OnAttempt.
type Attempt struct {
	Provider       string // Policy.Name
	Number         int    // 1 for the first attempt
	Method         string
	Class          Class
	StatusCode     int    // 0 when no response was received
	Code           string // provider's error code from the body, if any
	Err            error  // transport error, when no response was received
	IdempotencyKey string // key this attempt carried ("" if none)
	Retry          bool   // another attempt follows
	Wait           time.Duration
	WaitSource     WaitSource
	Reason         string // why no attempt follows, when Retry is false and the call failed
}

// report calls the attempt hook and logs retries and failed calls.
func (c *call) report(a Attempt) {
	if h := c.t.p.OnAttempt; h != nil {
		h(a)
	}
	l := c.t.p.Logger
	if l == nil || a.Class == ClassSuccess {
		return
	}
	level, msg := slog.LevelInfo, "payretry: retrying"
	if !a.Retry {
		level, msg = slog.LevelWarn, "payretry: call failed"
	}
	attrs := []slog.Attr{
		slog.String("provider", a.Provider),
		slog.Int("attempt", a.Number),
		slog.String("method", a.Method),
		slog.String("host", c.req.URL.Host),
		slog.String("path", c.req.URL.Path),
		slog.String("class", a.Class.String()),
	}
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
	} else {
		attrs = append(attrs, slog.String("reason", a.Reason))
		if c.write && c.unknown {
			attrs = append(attrs, slog.Bool("outcome_unknown", true))
		}
	}
	l.LogAttrs(c.req.Context(), level, msg, attrs...)
}
