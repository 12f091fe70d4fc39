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

func TestParseSignal(t *testing.T) {
	unix := func(s int64) time.Time { return time.Unix(s, 0) }
	cases := []struct {
		name string
		kv   []string
		want Signal
	}{
		{"none", nil, Signal{Limit: -1, Remaining: -1}},
		// SmartRetry docs, Rate limits: "X-RateLimit-Reset: 1711979533 ... Unix timestamp when the window resets"
		{"x-ratelimit unix reset", []string{"X-RateLimit-Limit", "100", "X-RateLimit-Remaining", "87", "X-RateLimit-Reset", "1711979533"},
			Signal{Limit: 100, Remaining: 87, Reset: unix(1711979533)}},
		// GitHub-style delta-seconds reset.
		{"x-ratelimit delta reset", []string{"X-RateLimit-Limit", "60", "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "30"},
			Signal{Limit: 60, Remaining: 0, Reset: t0.Add(30 * time.Second)}},
		// draft-ietf-httpapi-ratelimit-headers-06: "RateLimit-Limit: 10",
		// "RateLimit-Remaining: 1", "RateLimit-Reset: 7" (delta-seconds).
		{"draft-06 fields", []string{"RateLimit-Limit", "10", "RateLimit-Remaining", "1", "RateLimit-Reset", "7"},
			Signal{Limit: 10, Remaining: 1, Reset: t0.Add(7 * time.Second)}},
		// draft-03 "RateLimit-Limit: 10, 10;w=1, 50;w=60": the first is the service limit.
		{"draft-03 limit list", []string{"RateLimit-Limit", "10, 10;w=1, 50;w=60"}, Signal{Limit: 10, Remaining: -1}},
		// draft -11 §4.2: "RateLimit: \"default\";r=50;t=30".
		{"structured RateLimit", []string{"RateLimit", `"default";r=50;t=30`}, Signal{Limit: -1, Remaining: 50, Reset: t0.Add(30 * time.Second)}},
		// §4.2: "an available quota of 999 requests for a partition key that has no time window".
		{"structured without t", []string{"RateLimit", `"default";r=999;pk=:dHJpYWwxMjEzMjM=:`}, Signal{Limit: -1, Remaining: 999}},
		{"structured most restrictive", []string{"RateLimit", `"burst";r=5;t=1, "daily";r=900;t=86400`}, Signal{Limit: -1, Remaining: 5, Reset: t0.Add(time.Second)}},
		// §3: "RateLimit-Policy: \"burst\";q=100;w=60,\"daily\";q=1000;w=86400".
		{"policy", []string{"RateLimit-Policy", `"burst";q=100;w=60,"daily";q=1000;w=86400`, "RateLimit", `"burst";r=0;t=12`},
			Signal{Limit: 100, Remaining: 0, Reset: t0.Add(12 * time.Second)}},
		{"retry-after with quota", []string{"Retry-After", "2", "X-RateLimit-Remaining", "0"},
			Signal{Limit: -1, Remaining: 0, RetryAt: t0.Add(2 * time.Second)}},
		// Malformed fields are ignored (§7: "Malformed RateLimit header fields MUST be ignored").
		{"malformed", []string{"X-RateLimit-Limit", "lots", "X-RateLimit-Remaining", "-3", "X-RateLimit-Reset", "soon", "RateLimit", `"x";r=`, "Retry-After", "later"},
			Signal{Limit: -1, Remaining: -1}},
		{"structured trailing comma", []string{"RateLimit", `"a";r=1,`}, Signal{Limit: -1, Remaining: -1}},
		{"structured unterminated string", []string{"RateLimit", `"a;r=1`}, Signal{Limit: -1, Remaining: -1}},
	}
	for _, c := range cases {
		h := http.Header{}
		for i := 0; i+1 < len(c.kv); i += 2 {
			h.Add(c.kv[i], c.kv[i+1])
		}
		got := ParseSignal(h, t0)
		assert.Equal(t, c.want.Limit, got.Limit, c.name)
		assert.Equal(t, c.want.Remaining, got.Remaining, c.name)
		assert.True(t, c.want.Reset.Equal(got.Reset), "%s: reset %v, want %v", c.name, got.Reset, c.want.Reset)
		assert.True(t, c.want.RetryAt.Equal(got.RetryAt), "%s: retry at %v, want %v", c.name, got.RetryAt, c.want.RetryAt)
	}
}

func FuzzParseSignal(f *testing.F) {
	for _, s := range []string{"100", "1711979533", `"default";r=50;t=30`, `"a";q=1;w=2,"b";r=?1`, `:YWJj:`, "10, 10;w=1", `"x";r=1.5`, "-1"} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		h := http.Header{
			"X-Ratelimit-Limit": {a}, "X-Ratelimit-Remaining": {b}, "X-Ratelimit-Reset": {a},
			"Ratelimit": {a, b}, "Ratelimit-Policy": {b}, "Retry-After": {b},
		}
		s := ParseSignal(h, t0)
		if s.Limit < -1 || s.Remaining < -1 {
			t.Fatalf("negative count: %+v", s)
		}
		if !s.RetryAt.IsZero() && s.RetryAt.Before(t0) {
			t.Fatalf("retry in the past: %+v", s)
		}
	})
}

func FuzzParseSFList(f *testing.F) {
	for _, s := range []string{`"default";r=50;t=30`, `a, b;c=?0, "d";e=:YQ==:`, `1;a=2.5`, ``, `,`, `"\"";x=1`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		items, ok := parseSFList([]string{s})
		if !ok && items != nil {
			t.Fatal("items from a malformed field")
		}
		for _, it := range items {
			for _, v := range it {
				if v < 0 {
					t.Fatalf("negative integer parameter in %q", s)
				}
			}
		}
	})
}
