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

// Without a timer or a caller's trace, a write returns the context it was
// sent with: the caller's, wrapped with a trace whose hooks do nothing once
// the call returned. It carries another request, through a base that
// composes a trace of its own, without reaching a tracer.
func TestReturnedTraceContextIsInert(t *testing.T) {
	s := newScript(t, status(201, "paid"))
	tr, _ := newTestTransport(t, nil, keyed())
	base := &tracingBase{next: http.DefaultTransport}
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), ctxKey("k"), "v"))
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL, strings.NewReader(`{"amount":1}`))
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	resp.Body.Close()
	rctx := resp.Request.Context()
	assert.Equal(t, "v", rctx.Value(ctxKey("k")))
	assert.NoError(t, rctx.Err())
	trace := httptrace.ContextClientTrace(rctx)
	require.NotNil(t, trace)

	next := tracers.Get().(*tracer) // most likely the tracer of the call
	defer tracers.Put(next)
	next.flags.Store(0)
	trace.GetConn("late")
	trace.GotConn(httptrace.GotConnInfo{})
	again, _ := http.NewRequestWithContext(rctx, http.MethodGet, s.URL, nil)
	resp2, err := base.RoundTrip(again)
	require.NoError(t, err)
	resp2.Body.Close()
	assert.Zero(t, next.flags.Load(), "a hook reached a pooled tracer after the call")
	assert.Equal(t, int32(1), base.gets.Load())

	cancel()
	assert.ErrorIs(t, rctx.Err(), context.Canceled, "the caller's cancellation reaches it")
}

// release turns the call's trace off, whichever way it was attached: a hook
// fired through it afterwards, directly or through a trace composed on it,
// reaches no tracer.
func TestReleaseUnhooksTheTrace(t *testing.T) {
	callerTrace := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{})
	for _, parent := range []context.Context{context.Background(), callerTrace} {
		tr := newTracer()
		c := &call{tracer: tr}
		ctx, trace := tr.attach(parent)
		c.trace = trace
		var composedGets atomic.Int32
		composed := httptrace.ContextClientTrace(httptrace.WithClientTrace(ctx,
			&httptrace.ClientTrace{GetConn: func(string) { composedGets.Add(1) }}))

		trace.GetConn("during")
		require.Equal(t, traceGetConn, tr.flags.Load(), "the hooks report while the call runs")
		c.release()
		tr.flags.Store(0)
		trace.GetConn("late")
		trace.GotConn(httptrace.GotConnInfo{})
		composed.GetConn("late")
		assert.Zero(t, tr.flags.Load())
		assert.Equal(t, int32(1), composedGets.Load(), "the composed trace still calls its own hook")
	}
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

// Once a call returned, the trace it attached reaches no tracer, even through
// a base's trace composed on it.
func TestTraceIsUnhookedOnReturn(t *testing.T) {
	s := newScript(t, status(201, "paid"))
	base := &tracingBase{next: http.DefaultTransport}
	tr, _ := newTestTransport(t, base, keyed())
	resp, err := post(t, tr, s.URL, `{"amount":1}`)
	require.NoError(t, err)
	resp.Body.Close()
	composed := base.trace.Load()
	require.NotNil(t, composed)
	assert.Equal(t, int32(1), base.gets.Load())

	next := tracers.Get().(*tracer) // most likely the tracer of the call
	defer tracers.Put(next)
	next.flags.Store(0)
	assert.NotPanics(t, func() { composed.GetConn("late") })
	assert.Zero(t, next.flags.Load(), "a late hook reached a pooled tracer")
	assert.Equal(t, int32(2), base.gets.Load())
}
