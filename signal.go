package payretry

import (
	"net/http"
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

// bound returns s with every instant it holds a scope until (RetryAt, Reset)
// at most max after now: what a provider or a gateway sends is untrusted,
// and no header may stop payments for longer than the policy allows
// (Policy.MaxRetryAfter).
func (s Signal) bound(now time.Time, max time.Duration) Signal {
	limit := now.Add(max)
	if s.RetryAt.After(limit) {
		s.RetryAt = limit
	}
	if s.Reset.After(limit) {
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

// sfItem is a Structured Fields (RFC 9651) list member with its integer
// parameters; other parameter types are checked and skipped.
type sfItem struct {
	params map[string]int
}

// parseSFList parses the List members of one or more field lines: items
// (string, token or integer) each with parameters. Any syntax error makes the
// whole field malformed (ok false), as RFC 9651 §4.2 requires.
func parseSFList(lines []string) ([]sfItem, bool) {
	if len(lines) == 0 {
		return nil, false
	}
	p := sfParser{s: strings.Join(lines, ",")}
	var items []sfItem
	p.ows()
	for !p.done() {
		it, ok := p.item()
		if !ok {
			return nil, false
		}
		items = append(items, it)
		p.ows()
		if p.done() {
			break
		}
		if p.s[p.i] != ',' {
			return nil, false
		}
		p.i++
		p.ows()
		if p.done() {
			return nil, false // trailing comma
		}
	}
	return items, len(items) > 0
}

type sfParser struct {
	s string
	i int
}

func (p *sfParser) done() bool { return p.i >= len(p.s) }

func (p *sfParser) ows() {
	for !p.done() && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

func (p *sfParser) item() (sfItem, bool) {
	if _, ok := p.bareItem(); !ok {
		return sfItem{}, false
	}
	it := sfItem{params: map[string]int{}}
	for !p.done() && p.s[p.i] == ';' {
		p.i++
		for !p.done() && p.s[p.i] == ' ' {
			p.i++
		}
		key := p.key()
		if key == "" {
			return sfItem{}, false
		}
		if p.done() || p.s[p.i] != '=' {
			continue // boolean true
		}
		p.i++
		v, ok := p.bareItem()
		if !ok {
			return sfItem{}, false
		}
		if n, isInt := v.(int); isInt {
			it.params[key] = n
		}
	}
	return it, true
}

func (p *sfParser) key() string {
	start := p.i
	for !p.done() {
		c := p.s[p.i]
		if (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.' || c == '*' ||
			(p.i == start && c == '*') {
			p.i++
			continue
		}
		break
	}
	if start == p.i || !(p.s[start] >= 'a' && p.s[start] <= 'z' || p.s[start] == '*') {
		return ""
	}
	return p.s[start:p.i]
}

// bareItem parses an integer (returned as int), a string, a token, a byte
// sequence or a boolean (returned as nil).
func (p *sfParser) bareItem() (any, bool) {
	if p.done() {
		return nil, false
	}
	switch c := p.s[p.i]; {
	case c == '-' || (c >= '0' && c <= '9'):
		start := p.i
		if c == '-' {
			p.i++
		}
		digits := p.i
		for !p.done() && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
			p.i++
		}
		if p.i == digits || p.i-digits > 15 {
			return nil, false
		}
		if !p.done() && p.s[p.i] == '.' {
			p.i++ // a decimal: valid, but not an integer parameter
			for !p.done() && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
				p.i++
			}
			return nil, true
		}
		n, _ := parseDigits(p.s[digits:p.i])
		if p.s[start] == '-' {
			return nil, true // negative counts are meaningless here
		}
		return int(n), true
	case c == '"':
		p.i++
		for !p.done() {
			switch p.s[p.i] {
			case '\\':
				p.i += 2
			case '"':
				p.i++
				return nil, true
			default:
				if p.s[p.i] < 0x20 || p.s[p.i] > 0x7e {
					return nil, false
				}
				p.i++
			}
		}
		return nil, false
	case c == ':':
		end := strings.IndexByte(p.s[p.i+1:], ':')
		if end < 0 {
			return nil, false
		}
		p.i += end + 2
		return nil, true
	case c == '?':
		if p.i+1 < len(p.s) && (p.s[p.i+1] == '0' || p.s[p.i+1] == '1') {
			p.i += 2
			return nil, true
		}
		return nil, false
	case c == '*' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'):
		for !p.done() && strings.IndexByte(" ,;\t=", p.s[p.i]) < 0 && p.s[p.i] > 0x20 && p.s[p.i] < 0x7f {
			p.i++
		}
		return nil, true
	}
	return nil, false
}
