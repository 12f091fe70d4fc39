package payretry

import (
	"net/http"
	"strings"
	"time"
)

// maxDelaySeconds bounds delay-seconds values so that converting them to a
// time.Duration cannot overflow; anything longer is far past any MaxRetryAfter.
const maxDelaySeconds = 1 << 30

// retryAfter reads a Retry-After field (RFC 9110 §10.2.3): either
// delay-seconds (1*DIGIT) or an HTTP-date in any form http.ParseTime accepts
// (IMF-fixdate, RFC 850, asctime). A date in the past means "now" (0). ok is
// false when the field is absent or malformed; malformed values are ignored.
func retryAfter(h http.Header, now time.Time) (d time.Duration, ok bool) {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if secs, ok := parseDigits(v); ok {
		return time.Duration(secs) * time.Second, true
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

// parseDigits parses 1*DIGIT, saturating at maxDelaySeconds. Signs, spaces and
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
		if n < maxDelaySeconds {
			n = n*10 + int64(c-'0')
		}
	}
	return min(n, maxDelaySeconds), true
}
