package payretry

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// RFC 9110 §10.2.3: Retry-After = HTTP-date / delay-seconds, where
// delay-seconds = 1*DIGIT; "A sender MUST NOT generate..." and any HTTP-date
// form that a recipient must accept (§5.6.7: IMF-fixdate, obsolete RFC 850 and
// asctime).
func TestRetryAfter(t *testing.T) {
	cases := []struct {
		v    string
		want time.Duration
		ok   bool
	}{
		{"120", 120 * time.Second, true},
		{"0", 0, true},
		{" 7 ", 7 * time.Second, true},
		{"Tue, 24 Nov 2026 12:00:30 GMT", 30 * time.Second, true},        // IMF-fixdate
		{"Tuesday, 24-Nov-26 12:01:00 GMT", time.Minute, true},           // RFC 850
		{"Tue Nov 24 12:00:05 2026", 5 * time.Second, true},              // asctime
		{"Mon, 01 Jan 2001 00:00:00 GMT", 0, true},                       // past: now
		{"99999999999999999999999", maxDelaySeconds * time.Second, true}, // saturates, no overflow
		{"", 0, false},
		{"-5", 0, false},
		{"+5", 0, false},
		{"1.5", 0, false},
		{"5s", 0, false},
		{"soon", 0, false},
		{"Tue, 32 Nov 2026 12:00:30 GMT", 0, false},
	}
	for _, c := range cases {
		h := http.Header{}
		if c.v != "" {
			h.Set("Retry-After", c.v)
		}
		got, ok := retryAfter(h, t0)
		assert.Equal(t, c.ok, ok, "%q", c.v)
		assert.Equal(t, c.want, got, "%q", c.v)
	}
}

func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"120", "0", "Tue, 24 Nov 2026 12:00:30 GMT", "Tue Nov 24 12:00:05 2026", "-1", "1e9", "99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		h := http.Header{"Retry-After": {v}}
		d, ok := retryAfter(h, t0)
		if d < 0 {
			t.Fatalf("negative wait %v for %q", d, v)
		}
		if !ok && d != 0 {
			t.Fatalf("wait %v without ok for %q", d, v)
		}
	})
}
