package payretry

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// maxDelaySeconds bounds delay-seconds values so that converting them to a
// time.Duration cannot overflow; anything longer is far past any MaxRetryAfter.
const maxDelaySeconds = 1 << 30

// maxDigits is where parseDigits saturates: above any unix time in
// microseconds, and small enough that no arithmetic on it overflows.
const maxDigits = 1 << 53

// retryAfter reads a Retry-After field (RFC 9110 §10.2.3): delay-seconds or
// an HTTP-date in any of its three forms, a past one meaning 0. ok is false
// when the field is absent or malformed.
func retryAfter(h http.Header, now time.Time) (d time.Duration, ok bool) {
	v := strings.TrimSpace(first(h, "Retry-After"))
	if secs, ok := parseDigits(v); ok {
		return time.Duration(min(secs, maxDelaySeconds)) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

// parseDigits parses 1*DIGIT, saturating at maxDigits. Signs, spaces and
// fractions are not digits.
func parseDigits(s string) (int64, bool) {
	var n int64
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = min(n*10+int64(c-'0'), maxDigits)
	}
	return n, s != ""
}

// unixThreshold tells the forms of X-RateLimit-Reset apart: below it, delta-seconds
// (no window lasts 31 years); from it, a unix time (SmartRetry docs, Rate limits:
// "Unix timestamp when the window resets"), in milliseconds from unixMilliThreshold.
const (
	unixThreshold      = 1_000_000_000
	unixMilliThreshold = 1_000_000_000_000
)

// Signal is what one response said about the rate limit of its scope, read
// by [ParseSignal] and passed to [Limiter.Observe].
type Signal struct {
	Limit     int       // requests allowed in the current window; -1 if not said
	Remaining int       // requests left in the current window; -1 if not said
	Reset     time.Time // when the window resets; zero if not said
	RetryAt   time.Time // a Retry-After on an error status: send nothing in scope before it; zero if none
	Throttled bool      // the response was a 429
	Failed    bool      // the provider failed (5xx, time-out, network): outage detection
	OK        bool      // the provider answered normally (any other response)
	// CoolDown, with Failed, is how long a scope that is down sends
	// nothing before its next probe (Policy.BreakerCoolDown); 0 means 100ms.
	CoolDown time.Duration
}

// ParseSignal reads the rate-limit fields of a response header at now:
// Retry-After, X-RateLimit-*, and the IETF drafts' RateLimit-* and structured
// RateLimit and RateLimit-Policy (see the README, "Pacing and overload").
// Malformed values are ignored. Throttled, Failed and OK are left to the caller.
func ParseSignal(h http.Header, now time.Time) Signal {
	s := Signal{Limit: -1, Remaining: -1}
	if !hasRateFields(h) {
		return s
	}
	if d, ok := retryAfter(h, now); ok {
		s.RetryAt = now.Add(d)
	}
	fields := [...]struct { // the X- fields first: their Reset may be a unix time
		limit, remaining, reset string
		unix                    bool
	}{
		{"X-Ratelimit-Limit", "X-Ratelimit-Remaining", "X-Ratelimit-Reset", true},
		{"Ratelimit-Limit", "Ratelimit-Remaining", "Ratelimit-Reset", false},
	}
	for _, f := range fields {
		if v, ok := firstInt(first(h, f.limit)); ok && s.Limit < 0 {
			s.Limit = v
		}
		if v, ok := firstInt(first(h, f.remaining)); ok && s.Remaining < 0 {
			s.Remaining = v
		}
		if v, ok := parseDigits(strings.TrimSpace(first(h, f.reset))); ok && s.Reset.IsZero() {
			switch {
			case f.unix && v >= unixMilliThreshold:
				s.Reset = time.UnixMilli(v)
			case f.unix && v >= unixThreshold:
				s.Reset = time.Unix(v, 0)
			case v < unixThreshold:
				s.Reset = now.Add(time.Duration(v) * time.Second)
			}
		}
	}
	// draft-ietf-httpapi-ratelimit-headers-11 §4: RateLimit: "default";r=50;t=30
	items, _ := parseSFList(h["Ratelimit"]) // nil when malformed
	for _, it := range items {
		if r, ok := it["r"]; ok && (s.Remaining < 0 || r < s.Remaining) {
			s.Remaining = r
			if t, ok := it["t"]; ok {
				s.Reset = now.Add(time.Duration(min(t, maxDelaySeconds)) * time.Second)
			}
		}
	}
	// §3: RateLimit-Policy: "burst";q=100;w=60 — informative: the quota.
	if s.Limit < 0 {
		items, _ = parseSFList(h["Ratelimit-Policy"])
		for _, it := range items {
			if q, ok := it["q"]; ok && (s.Limit < 0 || q < s.Limit) {
				s.Limit = q
			}
		}
	}
	return s
}

// hasRateFields reports whether h has any field ParseSignal reads: most
// responses have none, and one pass over their few fields beats nine lookups.
func hasRateFields(h http.Header) bool {
	for k := range h {
		if k == "Retry-After" || strings.HasPrefix(k, "Ratelimit") || strings.HasPrefix(k, "X-Ratelimit-") {
			return true
		}
	}
	return false
}

// bound returns s with RetryAt and Reset (plus the hold margin) at most max
// after now: no untrusted header stops payments past Policy.MaxRetryAfter. A
// spent quota without a reset holds for DefaultHold.
func (s Signal) bound(now time.Time, max time.Duration) Signal {
	if s.Reset.IsZero() && (s.Remaining == 0 || s.Limit == 0) {
		s.Reset = now.Add(pacing.DefaultHold)
	}
	if limit := now.Add(max); s.RetryAt.After(limit) {
		s.RetryAt = limit
	}
	if limit := now.Add(max - pacing.HoldMargin); s.Reset.After(limit) {
		s.Reset = limit
	}
	return s
}

// first returns the first value of a field by its canonical name, without
// canonicalizing it again as Header.Get would.
func first(h http.Header, canonical string) string {
	if v := h[canonical]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// firstInt reads the leading integer of a field such as "100" or the
// draft-03 form "100, 100;w=60".
func firstInt(v string) (int, bool) {
	v = strings.TrimSpace(v)
	if i := strings.IndexAny(v, ",;"); i >= 0 {
		v = strings.TrimSpace(v[:i])
	}
	n, ok := parseDigits(v)
	return int(min(n, 1<<31-1)), ok
}

// RFC 9651 §3.1 Lists of bare items with parameters, no inner lists: the
// grammar of RateLimit and RateLimit-Policy.
const (
	sfBare  = `(?:-?[0-9]{1,15}(?:\.[0-9]{1,3})?|"(?:[ !#-\[\]-~]|\\["\\])*"|[A-Za-z*][!#-'*+\-.^_` + "`" + `|~0-9A-Za-z:/]*|:[A-Za-z0-9+/=]*:|\?[01])`
	sfParam = `;[ ]*([a-z*][a-z0-9_\-.*]*)(?:=(` + sfBare + `))?`
	sfItemP = sfBare + `((?:` + sfParam + `)*)`
)

var (
	sfListRe  = regexp.MustCompile(`^[ \t]*` + sfItemP + `(?:[ \t]*,[ \t]*` + sfItemP + `)*[ \t]*$`)
	sfItemRe  = regexp.MustCompile(sfItemP)
	sfParamRe = regexp.MustCompile(sfParam)
)

// parseSFList returns the integer parameters of each List member of one or more
// field lines; any syntax error makes the whole field malformed (RFC 9651 §4.2).
func parseSFList(lines []string) ([]map[string]int, bool) {
	s := strings.Join(lines, ",")
	if len(lines) == 0 || !sfListRe.MatchString(s) {
		return nil, false
	}
	var items []map[string]int
	for _, m := range sfItemRe.FindAllStringSubmatch(s, -1) {
		params := map[string]int{}
		for _, p := range sfParamRe.FindAllStringSubmatch(m[1], -1) {
			if n, err := strconv.Atoi(p[2]); err == nil && n >= 0 {
				params[p[1]] = n
			}
		}
		items = append(items, params)
	}
	return items, true
}
