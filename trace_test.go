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

func TestTraceKeyIsLearned(t *testing.T) {
	require.NotNil(t, traceKey, "attach falls back to httptrace.WithClientTrace: one allocation more per write")
	x := &traceCtx{Context: context.WithValue(context.Background(), ctxKey("k"), "v")}
	assert.Same(t, &x.trace, httptrace.ContextClientTrace(x))
	assert.Equal(t, "v", x.Value(ctxKey("k")), "other values come from the caller's context")
}

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

// The request a call returns carries the call's trace with its hooks
// cleared: the tracer behind them serves other calls after this one.
func TestReturnedRequestTraceIsUnhooked(t *testing.T) {
	s := newScript(t, status(201, "paid"))
	tr, _ := newTestTransport(t, nil, keyed())
	ctx := context.WithValue(context.Background(), ctxKey("k"), "v")
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL, strings.NewReader(`{"amount":1}`))
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	rctx := resp.Request.Context()
	assert.Equal(t, "v", rctx.Value(ctxKey("k")))
	trace := httptrace.ContextClientTrace(rctx)
	require.NotNil(t, trace)
	assert.Nil(t, trace.GetConn)
	assert.Nil(t, trace.GotConn)

	// The context can carry another request, through another transport.
	again, _ := http.NewRequestWithContext(rctx, http.MethodGet, s.URL, nil)
	resp2, err := http.DefaultTransport.RoundTrip(again)
	require.NoError(t, err)
	resp2.Body.Close()
}
