package payretrytest

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Limits is SmartRetry's per-API-key rate-limit table: the requests allowed
// per fixed one-second window, per endpoint type. A zero field takes the
// documented default; a negative field removes that limit. Other providers
// ignore Limits (see Options.RateLimit).
type Limits struct {
	// Payment limits sale, capture, refund and void; default 100.
	Payment int
	// Status limits status queries; default 500.
	Status int
	// Recurring limits /v1/recurring/...; default 100.
	Recurring int
	// All limits all endpoints combined; default 1000.
	All int
}

// class is an endpoint type with its own rate limit.
type class int

const (
	classAll class = iota // every request counts here; an unclassified one only here
	classPayment
	classStatus
	classRecurring
	numClasses
)

// limiter counts requests per API key in fixed one-second windows aligned to
// the Unix second of the server's Clock.
type limiter struct {
	limit [numClasses]int // < 0: unlimited
	keys  map[string]*keyWindow
}

type keyWindow struct {
	sec  int64 // Unix second of the current window
	used [numClasses]int
}

// newLimiter returns the limiter for p, or nil when p is not rate limited.
func newLimiter(p Provider, opts Options) *limiter {
	l := &limiter{keys: make(map[string]*keyWindow)}
	if p == SmartRetry {
		// SmartRetry docs, Rate limits: "Payment operations (sale, capture, refund, void) 100
		// requests per second; Status queries 500; Recurring operations 100; All endpoints combined
		// 1,000"; "Limits are applied per API key."
		l.limit[classPayment] = orDefault(opts.Limits.Payment, 100)
		l.limit[classStatus] = orDefault(opts.Limits.Status, 500)
		l.limit[classRecurring] = orDefault(opts.Limits.Recurring, 100)
		l.limit[classAll] = orDefault(opts.Limits.All, 1000)
		if opts.RateLimit > 0 {
			l.limit[classAll] = opts.RateLimit
		}
		return l
	}
	if opts.RateLimit <= 0 {
		return nil
	}
	l.limit = [numClasses]int{classAll: opts.RateLimit, classPayment: -1, classStatus: -1, classRecurring: -1}
	return l
}

func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// quota is the outcome of one request against the limiter.
type quota struct {
	ok        bool
	limit     int   // of the binding class; < 0 when no class limits this request
	remaining int   // in the current window, after this request
	reset     int64 // Unix time when the window resets
}

// take counts one request of class c for apiKey at now, unless a limit is
// already spent. It reports the class with the fewest requests remaining,
// preferring c over the combined limit on a tie.
func (l *limiter) take(apiKey string, c class, now time.Time) quota {
	sec := now.Unix()
	w := l.keys[apiKey]
	if w == nil {
		w = &keyWindow{}
		l.keys[apiKey] = w
	}
	if w.sec != sec {
		*w = keyWindow{sec: sec}
	}
	classes := []class{c, classAll}
	if c == classAll {
		classes = classes[1:]
	}
	q := quota{ok: true, limit: -1, reset: sec + 1}
	for _, k := range classes {
		if l.limit[k] >= 0 && w.used[k] >= l.limit[k] {
			q.ok = false
		}
	}
	for _, k := range classes {
		if q.ok {
			w.used[k]++
		}
		if l.limit[k] < 0 {
			continue
		}
		if rem := max(0, l.limit[k]-w.used[k]); q.limit < 0 || rem < q.remaining {
			q.limit, q.remaining = l.limit[k], rem
		}
	}
	return q
}

// setHeaders writes the X-RateLimit-* headers of q.
func (q quota) setHeaders(h http.Header) {
	if q.limit < 0 {
		return
	}
	// SmartRetry docs, Rate limits: "Every response includes headers showing your current usage:
	// X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset (Unix timestamp when the window resets)".
	h.Set("X-RateLimit-Limit", strconv.Itoa(q.limit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(q.remaining))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(q.reset, 10))
}

// retryAfter is the Retry-After value for a request refused by q at now: the
// whole seconds until the window resets, at least 1.
func (q quota) retryAfter(now time.Time) string {
	d := time.Unix(q.reset, 0).Sub(now)
	secs := int64((d + time.Second - 1) / time.Second)
	return strconv.FormatInt(max(1, secs), 10)
}

// classOf returns the rate-limit class of a request path for p.
func classOf(p Provider, path string) class {
	if p != SmartRetry {
		return classAll
	}
	under := func(prefix string) bool { return path == prefix || strings.HasPrefix(path, prefix+"/") }
	switch {
	case under("/v1/payments/sale"), under("/v1/payments/capture"),
		under("/v1/payments/refund"), under("/v1/payments/void"):
		return classPayment
	case under("/v1/payments/status"):
		return classStatus
	case under("/v1/recurring"):
		return classRecurring
	}
	return classAll
}

// apiKeyOf is the identity a request is rate limited under: SmartRetry's
// x-api-key, else the Authorization header, else "" (one anonymous bucket).
func apiKeyOf(r *http.Request) string {
	if k := r.Header.Get("X-Api-Key"); k != "" {
		return k
	}
	return r.Header.Get("Authorization")
}
