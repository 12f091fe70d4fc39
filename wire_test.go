package payretry

import (
	"context"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type ctxKey string

// stallingDialer blocks its first dial until the attempt gives up, then dials.
type stallingDialer struct {
	dials atomic.Int32
}

func (d *stallingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if d.dials.Add(1) == 1 {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, addr)
}

// An attempt that times out while the base is still dialing never left: a
// write without a key is retried and its outcome is known. With the caller's
// own trace in the context, both traces see the attempts.
func TestTimeoutWhileDialingNeverLeft(t *testing.T) {
	for _, callerTrace := range []bool{false, true} {
		name := "own trace"
		if callerTrace {
			name = "with the caller's trace"
		}
		t.Run(name, func(t *testing.T) {
			s := newScript(t, status(201, "paid"))
			d := &stallingDialer{}
			base := &http.Transport{DialContext: d.DialContext}
			defer base.CloseIdleConnections()
			tr, _ := newTestTransport(t, base, Policy{Name: "nokeys", AttemptTimeout: 50 * time.Millisecond})
			var classes []Class
			tr.p.OnAttempt = func(a Attempt) { classes = append(classes, a.Class) }

			ctx := context.Background()
			var gets, gots atomic.Int32
			if callerTrace {
				ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
					GetConn: func(string) { gets.Add(1) },
					GotConn: func(httptrace.GotConnInfo) { gots.Add(1) },
				})
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL, strings.NewReader(`{"amount":1}`))
			resp, err := tr.RoundTrip(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			assert.Equal(t, 201, resp.StatusCode)
			assert.Equal(t, []Class{ClassNetwork, ClassSuccess}, classes)
			assert.Len(t, s.Requests(), 1)
			if callerTrace {
				assert.Equal(t, int32(2), gets.Load())
				assert.Equal(t, int32(1), gots.Load())
			}
		})
	}
}

// The request a call returns carries the caller's context, even when the
// attempts had their own (a timer, the wire trace): it is not canceled when
// the body is closed, and it carries the caller's values and trace, so that
// it can carry another request.
func TestReturnedRequestCarriesTheCallersContext(t *testing.T) {
	s := newScript(t, status(201, "paid"))
	p := keyed()
	p.AttemptTimeout = time.Second
	base := &tracingBase{next: http.DefaultTransport}
	tr, _ := newTestTransport(t, base, p)
	var gets atomic.Int32
	ctx := httptrace.WithClientTrace(context.WithValue(context.Background(), ctxKey("k"), "v"),
		&httptrace.ClientTrace{GetConn: func(string) { gets.Add(1) }})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL, strings.NewReader(`{"amount":1}`))
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	assert.Equal(t, "paid", readAll(t, resp))
	resp.Body.Close()
	assert.Same(t, req.Context(), resp.Request.Context())
	assert.NotEmpty(t, resp.Request.Header.Get("Idempotency-Key"))
	assert.Equal(t, int32(1), gets.Load())

	again, _ := http.NewRequestWithContext(resp.Request.Context(), http.MethodGet, s.URL, nil)
	resp2, err := base.RoundTrip(again)
	require.NoError(t, err)
	resp2.Body.Close()
	assert.Equal(t, int32(2), gets.Load())
}

// tracingBase composes a ClientTrace of its own onto each request, as
// instrumentation does, and keeps the last trace it composed.
type tracingBase struct {
	next  http.RoundTripper
	gets  atomic.Int32
	trace atomic.Pointer[httptrace.ClientTrace]
}

func (b *tracingBase) RoundTrip(r *http.Request) (*http.Response, error) {
	trace := &httptrace.ClientTrace{GetConn: func(string) { b.gets.Add(1) }}
	ctx := httptrace.WithClientTrace(r.Context(), trace)
	b.trace.Store(trace)
	return b.next.RoundTrip(r.WithContext(ctx))
}
