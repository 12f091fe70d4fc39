package payretry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The tests in this file each pin down a path to a double charge or a wrong
// verdict that a review found; each failed before its fix. They run over
// HTTP/1.1 and HTTP/2 where the wire matters.

// A 5xx that does not carry ORZCash's own error body is a gateway's answer:
// ORZCash stored nothing under the key and may still be executing the
// payment, so the key is kept and the outcome is unknown.
func TestORZCashGateway5xxKeepsTheKeyAndIsUnknown(t *testing.T) {
	gateways := []struct {
		name string
		h    http.HandlerFunc
	}{
		{"cloudflare 524", status(524, "<html><body>A timeout occurred</body></html>", "Content-Type", "text/html")},
		{"envoy 503", status(503, "upstream connect error or disconnect/reset before headers. reset reason: connection termination",
			"Content-Type", "text/plain")},
		{"nginx 502", status(502, "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
			"Content-Type", "text/html")},
		{"json without ORZCash's code", status(500, `{"message":"Internal server error"}`)},
	}
	for _, proto := range protocols {
		for _, g := range gateways {
			t.Run(proto+"/"+g.name, func(t *testing.T) {
				s := newScriptOn(t, proto, g.h)
				tr, _ := newTestTransport(t, s.base, ORZCash())
				resp, err := post(t, tr, s.URL+"/v1/transfers", `{"amount":1}`)
				require.NoError(t, err)
				keys := s.headers("Idempotency-Key")
				require.Len(t, keys, 4, "retried as a time-out")
				for _, k := range keys {
					assert.Equal(t, keys[0], k, "never a new key while ORZCash may be executing the first")
				}
				var e *Error
				require.ErrorAs(t, CheckResponse(resp), &e)
				assert.True(t, e.OutcomeUnknown)
				assert.Equal(t, keys[0], e.IdempotencyKey)
			})
		}
	}
}

// Once an attempt's outcome is unknown, no rule of any policy changes the
// key: here a custom ORZCash policy retries 5xx without NewKey, and a later
// 429 (whose rule has NewKey) must not bring a second key.
func TestUnknownOutcomePinsTheKeyWhateverTheRules(t *testing.T) {
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			s := newScriptOn(t, proto, status(503, `{"code":"E503","message":"unavailable"}`),
				status(429, `{"code":"RATE","message":"slow down"}`), status(201, `{"id":"t1"}`))
			p := ORZCash()
			p.Rules[ClassServerError] = Rule{Retry: true}
			tr, _ := newTestTransport(t, s.base, p)
			resp, err := post(t, tr, s.URL+"/v1/transfers", `{"amount":1}`)
			require.NoError(t, err)
			assert.Equal(t, 201, resp.StatusCode)
			keys := s.headers("Idempotency-Key")
			assert.Equal(t, []string{keys[0], keys[0], keys[0]}, keys)
		})
	}
}

// A 409 because another request with the same key is in flight leaves the
// payment's outcome unknown, for every preset; a 409 about the resource's
// state stays definitive.
func TestKeyInUse409IsUnknown(t *testing.T) {
	cases := []struct {
		preset  Policy
		body    string
		unknown bool
	}{
		{ORZCash(), `{"code":"IDEMPOTENCY_CONFLICT","message":"A request with this key is in progress"}`, true},
		{Verto(), `{"errorCode":"IDEMPOTENCY_CONFLICT","message":"Request with this idempotency key is in progress"}`, true},
		{KeyStone(), `{"detail":"Duplicate idempotency key"}`, true},
		{KeyStone(), `{"detail":"Request with this idempotency key is in progress"}`, true},
		{SmartRetry(), `{"title":"Conflict","reason_code":"IDEMPOTENCY_CONFLICT"}`, true},
		{KeyStone(), `{"detail":"Settlement is not awaiting a compliance decision"}`, false},
		{Verto(), `{"errorCode":"RFI_REQUIRED","message":"Compliance review open"}`, false},
	}
	for _, proto := range protocols {
		for _, tc := range cases {
			t.Run(proto+"/"+tc.preset.Name+"/"+tc.body, func(t *testing.T) {
				s := newScriptOn(t, proto, status(409, tc.body), status(201, ""))
				tr, _ := newTestTransport(t, s.base, tc.preset)
				resp, err := post(t, tr, s.URL, `{"amount":1}`)
				require.NoError(t, err)
				assert.Equal(t, 409, resp.StatusCode)
				assert.Len(t, s.Requests(), 1, "a 409 is not retried")
				var e *Error
				require.ErrorAs(t, CheckResponse(resp), &e)
				assert.Equal(t, tc.unknown, e.OutcomeUnknown)
			})
		}
	}
}

// The base transport's own time-outs (ResponseHeaderTimeout, a dial
// time-out) match context.DeadlineExceeded like the caller's deadline, but
// they are not the caller giving up: a write with a key is retried with the
// same key, and a dial that timed out never sent anything.
func TestBaseTimeoutsAreNotTheCallersCancellation(t *testing.T) {
	for _, proto := range protocols {
		t.Run(proto+"/response header timeout", func(t *testing.T) {
			s := newScriptOn(t, proto, stall, status(201, "paid"))
			base := s.base.(*http.Transport).Clone()
			base.ResponseHeaderTimeout = 50 * time.Millisecond
			defer base.CloseIdleConnections()
			var classes []Class
			p := keyed()
			p.OnAttempt = func(a Attempt) { classes = append(classes, a.Class) }
			tr, _ := newTestTransport(t, base, p)
			resp, err := post(t, tr, s.URL, `{"amount":1}`)
			require.NoError(t, err)
			assert.Equal(t, 201, resp.StatusCode)
			assert.Equal(t, []Class{ClassTimeout, ClassSuccess}, classes)
			keys := s.headers("Idempotency-Key")
			assert.Equal(t, []string{keys[0], keys[0]}, keys)
		})
		t.Run(proto+"/dial timeout", func(t *testing.T) {
			s := newScriptOn(t, proto, status(201, "paid"))
			base := s.base.(*http.Transport).Clone()
			dials := 0
			base.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
				dials++
				d := net.Dialer{}
				if dials == 1 {
					d.Deadline = time.Now().Add(-time.Second) // a dial that timed out
				}
				return d.DialContext(ctx, network, addr)
			}
			defer base.CloseIdleConnections()
			var got []Attempt
			tr, _ := newTestTransport(t, base, Policy{Name: "nokeys", OnAttempt: func(a Attempt) { got = append(got, a) }})
			resp, err := post(t, tr, s.URL, `{"amount":1}`)
			require.NoError(t, err, "a write without a key that never left is sent again")
			assert.Equal(t, 201, resp.StatusCode)
			require.Len(t, got, 2)
			assert.Equal(t, ClassNetwork, got[0].Class)
			assert.ErrorIs(t, got[0].Err, context.DeadlineExceeded)
			assert.Len(t, s.Requests(), 1)
		})
	}
}

// A policy's Classify may read a non-2xx body; the caller still reads it
// whole, and CheckResponse still decodes it.
func TestClassifierReadingTheBodyLeavesItWhole(t *testing.T) {
	const body = `{"code":"CARD_DECLINED","message":"declined"}`
	s := newScript(t, status(402, body))
	p := keyed()
	p.Classify = func(resp *http.Response, err error) Class {
		if resp != nil && resp.StatusCode == 402 {
			b, _ := io.ReadAll(resp.Body)
			if strings.Contains(string(b), "DECLINED") {
				return ClassBadRequest
			}
		}
		return Classify(resp, err)
	}
	tr, _ := newTestTransport(t, nil, p)
	resp, err := post(t, tr, s.URL, `{}`)
	require.NoError(t, err)
	var e *Error
	require.ErrorAs(t, CheckResponse(resp), &e)
	assert.Equal(t, ClassBadRequest, e.Class)
	assert.Equal(t, "CARD_DECLINED", e.Code)
	assert.Equal(t, body, readAll(t, resp))
}

// A server certificate that fails verification does not change between
// attempts: the call returns at once, never sent, instead of retrying to
// MaxAttempts.
func TestCertificateFailureIsNotRetried(t *testing.T) {
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	handshakes := 0
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			handshakes++
		}
	}
	s.Config.ErrorLog = discardLog()
	s.StartTLS()
	defer s.Close()
	base := &http.Transport{} // does not trust the test certificate
	defer base.CloseIdleConnections()
	tr, clk := newTestTransport(t, base, SmartRetry())
	resp, err := post(t, tr, s.URL+"/v1/payments/sale", `{"amount":1}`)
	assert.Nil(t, resp)
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, 1, e.Attempts)
	assert.Equal(t, ClassNetwork, e.Class)
	assert.False(t, e.OutcomeUnknown, "nothing was sent")
	var cv *tls.CertificateVerificationError
	assert.ErrorAs(t, err, &cv)
	var ua x509.UnknownAuthorityError
	assert.ErrorAs(t, err, &ua)
	assert.Empty(t, clk.Waits())
	assert.Equal(t, 1, handshakes)
}

// No header from a provider or a gateway holds a scope longer than the
// policy's MaxRetryAfter: a later payment is sent once it has passed.
func TestHeadersCannotHoldPaymentsPastMaxRetryAfter(t *testing.T) {
	const maxRA = 30 * time.Second
	cases := []struct {
		name string
		kv   []string
		code int
	}{
		{"Retry-After 2^32 seconds", []string{"Retry-After", "4294967296"}, 429},
		{"Retry-After in 2100", []string{"Retry-After", "Fri, 01 Jan 2100 00:00:00 GMT"}, 429},
		{"Reset read as 31 years", []string{"X-RateLimit-Limit", "100", "X-RateLimit-Remaining", "0",
			"X-RateLimit-Reset", "999999999"}, 200},
		{"RateLimit t huge", []string{"RateLimit", `"default";r=0;t=999999999`}, 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newScript(t, status(tc.code, "", tc.kv...), status(201, ""))
			p := keyed()
			p.MaxRetryAfter = maxRA
			p.MaxElapsedTime = 2 * maxRA
			tr, clk := newTestTransport(t, nil, p)
			_, err := post(t, tr, s.URL, `{}`)
			require.NoError(t, err)
			resp, err := post(t, tr, s.URL, `{}`)
			require.NoError(t, err, "a later payment is sent")
			assert.Equal(t, 201, resp.StatusCode)
			var held time.Duration
			for _, w := range clk.Waits() {
				held += w
			}
			assert.LessOrEqual(t, held, maxRA+pacing.HoldMargin)
			assert.Len(t, s.Requests(), 2)
		})
	}
}

// A limit of zero says the window is spent until its reset, not for ever;
// a Reset in unix milliseconds is read as such and held.
func TestZeroLimitAndMillisecondReset(t *testing.T) {
	t.Run("limit 0", func(t *testing.T) {
		s := newScript(t, status(200, "", "X-RateLimit-Limit", "0"), status(201, ""))
		tr, clk := newTestTransport(t, nil, keyed())
		for i := range 3 {
			resp, err := post(t, tr, s.URL, `{}`)
			require.NoError(t, err, "call %d", i+1)
			assert.Less(t, resp.StatusCode, 300)
		}
		assert.Len(t, s.Requests(), 3)
		assert.Equal(t, []time.Duration{time.Second + pacing.HoldMargin}, clk.Waits(), "held until the default reset, once")
	})
	t.Run("reset in milliseconds", func(t *testing.T) {
		reset := strconv.FormatInt(t0.Add(2*time.Second).UnixMilli(), 10)
		s := newScript(t, status(200, "", "X-RateLimit-Limit", "100", "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", reset),
			status(201, ""))
		tr, clk := newTestTransport(t, nil, keyed())
		for range 2 {
			_, err := post(t, tr, s.URL, `{}`)
			require.NoError(t, err)
		}
		assert.Equal(t, []time.Duration{2*time.Second + pacing.HoldMargin}, clk.Waits())
	})
}

// Remaining 0 with a Reset says the quota is spent even when the window's
// size is not given.
func TestRemainingZeroWithoutLimitHolds(t *testing.T) {
	for _, tc := range []struct {
		name string
		kv   []string
	}{
		{"X- fields", []string{"X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "2"}},
		{"draft-06 fields", []string{"RateLimit-Remaining", "0", "RateLimit-Reset", "2"}},
		{"structured field", []string{"RateLimit", `"default";r=0;t=2`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newScript(t, status(200, "", tc.kv...), status(201, ""))
			tr, clk := newTestTransport(t, nil, keyed())
			for range 2 {
				_, err := post(t, tr, s.URL, `{}`)
				require.NoError(t, err)
			}
			assert.Equal(t, []time.Duration{2 * time.Second}, clk.Waits())
		})
	}
}

// KeyStone: a caller's key that is not a JSON string is the caller's key,
// kept as sent, never silently replaced.
func TestKeyStoneCallerKeyOfAnotherTypeIsKept(t *testing.T) {
	const body = `{"idempotency_key":12345,"amount":"1.00"}`
	s := newScript(t, status(503, `{"detail":"busy"}`), status(201, `{"id":"s1"}`))
	tr, _ := newTestTransport(t, nil, KeyStone())
	resp, err := post(t, tr, s.URL+"/v1/settlements", body)
	require.NoError(t, err)
	assert.Equal(t, 201, resp.StatusCode)
	for i, r := range s.Requests() {
		assert.Equal(t, body, string(r.Body), "attempt %d", i+1)
	}
}

// A caller's key set under any spelling of the header name is the key: the
// provider receives it once, and no second, random one.
func TestCallerKeyUnderAnySpelling(t *testing.T) {
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			s := newScriptOn(t, proto, status(503, ""), status(201, ""))
			tr, _ := newTestTransport(t, s.base, Verto())
			req, err := http.NewRequest(http.MethodPost, s.URL, strings.NewReader(`{}`))
			require.NoError(t, err)
			req.Header["idempotency-key"] = []string{"order-1"}
			req.Header["vfx-correlation-id"] = []string{"corr-1"}
			resp, err := tr.RoundTrip(req)
			require.NoError(t, err)
			resp.Body.Close()
			reqs := s.Requests()
			require.Len(t, reqs, 2)
			for _, r := range reqs {
				assert.Equal(t, []string{"order-1"}, r.Header.Values("Idempotency-Key"))
				assert.Equal(t, []string{"corr-1"}, r.Header.Values("Vfx-Correlation-Id"))
			}
		})
	}
}

// RefreshAuth works on a copy: a hook that changes the URL or the header
// does not change the caller's request.
func TestRefreshAuthCannotModifyTheCallersRequest(t *testing.T) {
	s := newScript(t, status(401, ""), status(201, ""))
	p := keyed()
	p.RefreshAuth = func(r *http.Request) error {
		r.URL.Path = "/elsewhere"
		r.URL.RawQuery = "x=1"
		r.Header.Set("Authorization", "Bearer new")
		return nil
	}
	tr, _ := newTestTransport(t, nil, p)
	req, err := http.NewRequest(http.MethodPost, s.URL+"/pay", strings.NewReader(`{}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer old")
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, s.URL+"/pay", req.URL.String())
	assert.Equal(t, "Bearer old", req.Header.Get("Authorization"))
	assert.Equal(t, []string{"Bearer old", "Bearer new"}, s.headers("Authorization"))
	for _, r := range s.Requests() {
		assert.Equal(t, "/pay", r.Path, "only the header of the refresh is taken")
	}
}

// errors.Is reaches the sentinel of every reason a failed call gives.
func TestReasonsAreSentinels(t *testing.T) {
	s := newScript(t, status(400, ""))
	var got []Attempt
	p := keyed()
	p.OnAttempt = func(a Attempt) { got = append(got, a) }
	tr, _ := newTestTransport(t, nil, p)
	_, err := post(t, tr, s.URL, `{}`)
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.True(t, errors.Is(got[0].Reason, ErrNotRetryable))
}
