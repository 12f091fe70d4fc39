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

// retryAfter reads a Retry-After field (RFC 9110 §10.2.3): either
// delay-seconds (1*DIGIT) or an HTTP-date in any form http.ParseTime accepts
// (IMF-fixdate, RFC 850, asctime). A date in the past means "now" (0). ok is
// false when the field is absent or malformed; malformed values are ignored.
func retryAfter(h http.Header, now time.Time) (d time.Duration, ok bool) {
	v := strings.TrimSpace(first(h, "Retry-After"))
	if v == "" {
		return 0, false
	}
	if secs, ok := parseDigits(v); ok {
		return time.Duration(min(secs, maxDelaySeconds)) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	if d = t.Sub(now); d < 0 {
		d = 0
	}
	return d, true
}

// parseDigits parses 1*DIGIT, saturating at maxDigits. Signs, spaces and
// fractions are not digits.
func parseDigits(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n < maxDigits {
			n = n*10 + int64(c-'0')
		}
	}
	return min(n, maxDigits), true
}

// unixThreshold tells the forms of X-RateLimit-Reset apart: a value of a
// billion or more is a unix time in seconds (any date after September 2001;
// SmartRetry docs, Rate limits: "Unix timestamp when the window resets"), a
// smaller one is delta-seconds (GitHub-style APIs and the IETF drafts). No
// window lasts 31 years, and no unix time in use is that small. A value of
// unixMilliThreshold or more is a unix time in milliseconds (any date after
// September 2001 again), as some gateways send.
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
// Retry-After (RFC 9110 §10.2.3); X-RateLimit-Limit, -Remaining and -Reset,
// with Reset as a unix time or as delta-seconds (see unixThreshold); the
// IETF draft's RateLimit-Limit, -Remaining and -Reset (delta-seconds,
// draft-ietf-httpapi-ratelimit-headers-06); and the structured RateLimit
// ("policy";r=remaining;t=seconds) and RateLimit-Policy ("policy";q=quota;w=
// window) fields of the current draft (-07 to -11). Malformed values are
// ignored, as the drafts require ("Malformed RateLimit header fields MUST be
// ignored"). When several policies are given, the most restrictive one wins.
// Throttled, Failed and OK are left to the caller.
func ParseSignal(h http.Header, now time.Time) Signal {
	s := Signal{Limit: -1, Remaining: -1}
	if !hasRateFields(h) {
		return s
	}
	if d, ok := retryAfter(h, now); ok {
		s.RetryAt = now.Add(d)
	}
	// The X- fields first: their Reset may be a unix time.
	fields := [...]struct {
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
	if items, ok := parseSFList(h["Ratelimit"]); ok {
		for _, it := range items {
			r, okR := it.params["r"]
			if !okR {
				continue
			}
			if s.Remaining < 0 || r < s.Remaining {
				s.Remaining = r
				if t, ok := it.params["t"]; ok {
					s.Reset = now.Add(time.Duration(min(t, maxDelaySeconds)) * time.Second)
				}
			}
		}
	}
	// §3: RateLimit-Policy: "burst";q=100;w=60 — informative: the quota.
	if s.Limit < 0 {
		if items, ok := parseSFList(h["Ratelimit-Policy"]); ok {
			for _, it := range items {
				if q, ok := it.params["q"]; ok && (s.Limit < 0 || q < s.Limit) {
					s.Limit = q
				}
			}
		}
	}
	return s
}

// hasRateFields reports whether h has any field ParseSignal reads: most
// responses have none, and one pass over their few fields beats nine
// lookups.
func hasRateFields(h http.Header) bool {
	for k := range h {
		if len(k) < 9 || (k[0] != 'R' && k[0] != 'X') {
			continue
		}
		if k == "Retry-After" || strings.HasPrefix(k, "Ratelimit") || strings.HasPrefix(k, "X-Ratelimit-") {
			return true
		}
	}
	return false
}

// bound returns s with every instant it holds a scope until (RetryAt, and
// Reset with the limiter's margin after it) at most max after now: what a
// provider or a gateway sends is untrusted, and no header may stop payments
// for longer than the policy allows (Policy.MaxRetryAfter). A spent quota
// that says no reset is spent for DefaultHold, within that bound too.
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

// sfItem is a Structured Fields (RFC 9651) list member's integer
// parameters; parameters of other types are checked and skipped.
type sfItem struct {
	params map[string]int
}

// The grammar of RFC 9651 §3.1 for the Lists that RateLimit and
// RateLimit-Policy are: items (an integer, decimal, string, token, byte
// sequence or boolean) with parameters; no inner lists.
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

// parseSFList parses the List members of one or more field lines. Any
// syntax error makes the whole field malformed (ok false), as RFC 9651 §4.2
// requires.
func parseSFList(lines []string) ([]sfItem, bool) {
	s := strings.Join(lines, ",")
	if len(lines) == 0 || !sfListRe.MatchString(s) {
		return nil, false
	}
	var items []sfItem
	for _, m := range sfItemRe.FindAllStringSubmatch(s, -1) {
		it := sfItem{params: map[string]int{}}
		for _, p := range sfParamRe.FindAllStringSubmatch(m[1], -1) {
			if n, err := strconv.Atoi(p[2]); err == nil && n >= 0 {
				it.params[p[1]] = n
			}
		}
		items = append(items, it)
	}
	return items, true
}
