package payretry

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every class of failure, over HTTP/1.1 and HTTP/2 over TLS: the classes
// seen, the requests the server received, the keys they carried and what the
// call returned.
func TestFailureClassesOnBothProtocols(t *testing.T) {
	refresh := func(r *http.Request) error { r.Header.Set("Authorization", "Bearer new"); return nil }
	cases := []struct {
		name     string
		handlers []http.HandlerFunc
		policy   func(Policy) Policy
		refused  bool // the first dial is refused
		cancel   bool // the caller cancels during the first attempt
		classes  []Class
		requests int
		status   int  // 0: an *Error
		unknown  bool // the call's OutcomeUnknown
	}{
		{name: "5xx", handlers: []http.HandlerFunc{status(503, ""), status(201, "")},
			classes: []Class{ClassServerError, ClassSuccess}, requests: 2, status: 201},
		{name: "429", handlers: []http.HandlerFunc{status(429, "", "Retry-After", "0"), status(201, "")},
			classes: []Class{ClassRateLimited, ClassSuccess}, requests: 2, status: 201},
		{name: "attempt time-out", handlers: []http.HandlerFunc{stall, status(201, "")},
			classes: []Class{ClassTimeout, ClassSuccess}, requests: 2, status: 201},
		{name: "reset", handlers: []http.HandlerFunc{reset, status(201, "")},
			classes: []Class{ClassTimeout, ClassSuccess}, requests: 2, status: 201},
		{name: "reset without a key", handlers: []http.HandlerFunc{reset, status(201, "")},
			policy:  func(p Policy) Policy { p.IdempotencyHeader = ""; return p },
			classes: []Class{ClassTimeout}, requests: 1, unknown: true},
		{name: "refused", handlers: []http.HandlerFunc{status(201, "")}, refused: true,
			classes: []Class{ClassNetwork, ClassSuccess}, requests: 1, status: 201},
		{name: "401 after refresh", handlers: []http.HandlerFunc{status(401, ""), status(201, "")},
			policy:  func(p Policy) Policy { p.RefreshAuth = refresh; return p },
			classes: []Class{ClassUnauthorized, ClassSuccess}, requests: 2, status: 201},
		{name: "400", handlers: []http.HandlerFunc{status(400, `{"code":"BAD"}`)},
			classes: []Class{ClassBadRequest}, requests: 1, status: 400},
		{name: "409 key in use", handlers: []http.HandlerFunc{status(409, `{"code":"IDEMPOTENCY_CONFLICT"}`)},
			classes: []Class{ClassConflict}, requests: 1, status: 409, unknown: true},
		{name: "canceled by the caller", handlers: []http.HandlerFunc{stall}, cancel: true,
			classes: []Class{ClassCanceled}, requests: 1, unknown: true},
	}
	for _, proto := range protocols {
		for _, tc := range cases {
			t.Run(proto+"/"+tc.name, func(t *testing.T) {
				s := newScriptOn(t, proto, tc.handlers...)
				base := s.base.(*http.Transport).Clone()
				defer base.CloseIdleConnections()
				if tc.refused {
					closed := closedPort(t)
					dials := 0
					base.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
						if dials++; dials == 1 {
							addr = closed
						}
						return (&net.Dialer{}).DialContext(ctx, network, addr)
					}
				}
				p := keyed()
				p.AttemptTimeout = 100 * time.Millisecond
				if tc.policy != nil {
					p = tc.policy(p)
				}
				var classes []Class
				p.OnAttempt = func(a Attempt) { classes = append(classes, a.Class) }
				tr, _ := newTestTransport(t, base, p)

				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				if tc.cancel {
					time.AfterFunc(30*time.Millisecond, cancel)
				}
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/pay", strings.NewReader(`{"amount":1}`))
				require.NoError(t, err)
				resp, err := tr.RoundTrip(req)

				assert.Equal(t, tc.classes, classes)
				reqs := s.Requests()
				assert.Len(t, reqs, tc.requests)
				major := map[string]int{"HTTP/1.1": 1, "HTTP/2": 2}[proto]
				for _, r := range reqs {
					assert.Equal(t, major, r.Proto, "sent over %s", proto)
				}
				keys := s.headers("Idempotency-Key")
				for _, k := range keys {
					assert.Equal(t, keys[0], k, "one key for the call")
				}
				if tc.status == 0 {
					assert.Nil(t, resp)
					var e *Error
					require.ErrorAs(t, err, &e)
					assert.Equal(t, tc.unknown, e.OutcomeUnknown)
					return
				}
				require.NoError(t, err)
				defer resp.Body.Close()
				assert.Equal(t, tc.status, resp.StatusCode)
				if cerr := CheckResponse(resp); cerr != nil {
					var e *Error
					require.ErrorAs(t, cerr, &e)
					assert.Equal(t, tc.unknown, e.OutcomeUnknown)
				}
			})
		}
	}
}

// closedPort returns a loopback address on which nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
