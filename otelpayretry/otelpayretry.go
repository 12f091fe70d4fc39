package otelpayretry

import (
	"context"
	"errors"
	"net/http"
	"runtime"
	"time"

	"github.com/payretry/payretry"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// scopeName is the instrumentation scope of the meter and the tracer.
const scopeName = "github.com/payretry/payretry/otelpayretry"

// Options says where the telemetry goes. The zero value sends it to the
// global providers.
type Options struct {
	// MeterProvider gives the meter of the metrics; nil means
	// otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
	// TracerProvider gives the tracer of the spans; nil means
	// otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
}

// Transport is a [payretry.Transport] that reports its calls and attempts to
// OpenTelemetry (see the package documentation). It keeps the RoundTripper
// contract of payretry.Transport: RoundTrip returns what the payretry
// Transport returned.
//
// A Transport is safe for concurrent use by many goroutines; create it with
// [NewTransport]. The zero value is not usable.
type Transport struct {
	rt   *payretry.Transport
	h    *hooks
	base http.RoundTripper
}

// NewTransport returns a [payretry.Transport] for base and p, built by
// [payretry.NewTransport] (nil base means [http.DefaultTransport]),
// instrumented: a span per logical call, a span per attempt sent through base
// (so that a base of [otelhttp.NewTransport] nests its HTTP span in it), and
// the package's metrics. The OnAttempt and Logger that p already has are kept:
// OnAttempt is called after the instrumentation's own hook, with the same
// Attempt. An invalid policy is payretry.NewTransport's error.
//
// [otelhttp.NewTransport]: https://pkg.go.dev/go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp#NewTransport
func NewTransport(base http.RoundTripper, p payretry.Policy, o Options) (*Transport, error) {
	if base == nil {
		base = http.DefaultTransport
	}
	h := newHooks(p, o)
	p.OnAttempt = h.onAttempt
	rt, err := payretry.NewTransport(&attemptTransport{base: base, h: h}, p)
	if err != nil {
		return nil, err
	}
	h.observeLimiter(rt.Policy())
	return &Transport{rt: rt, h: h, base: base}, nil
}

// CloseIdleConnections closes the idle connections of the base transport,
// when it has such a method, so that [http.Client.CloseIdleConnections]
// reaches it.
func (t *Transport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// Policy returns p instrumented for a [payretry.Transport] that the caller
// builds: its OnAttempt records the attempt, wait and limiter metrics and
// makes each attempt's span after the fact, as a child of the span in the
// request's context, then calls the OnAttempt that p had. It records no
// payretry.call.duration and makes no call span: use [NewTransport] for those.
// The payretry.limiter gauges need p.Limiter to be set (a nil Limiter is made
// by payretry.NewTransport, out of reach).
func Policy(p payretry.Policy, o Options) payretry.Policy {
	h := newHooks(p, o)
	p.OnAttempt = h.onAttempt
	if p.Limiter != nil {
		h.observeLimiter(p)
	}
	return p
}

// RoundTrip sends req through the payretry Transport in a call span and
// records the call's duration and outcome.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	h := t.h
	start := time.Now()
	mi := methodIndex(req.Method)
	ctx, span := h.tracer.Start(req.Context(), h.callName, h.callStart(mi)...)
	if !span.IsRecording() && span.SpanContext().Equal(trace.SpanContextFromContext(req.Context())) {
		ctx = req.Context() // no span was started (a no-op tracer)
	}
	cc := &callCtx{Context: ctx, h: h, span: span}
	resp, err := t.rt.RoundTrip(req.WithContext(cc))
	if cc.attempt != nil { // an attempt payretry did not report; not expected
		cc.attempt.End()
		cc.attempt = nil
	}

	out, class, status := outcomeSuccess, payretry.ClassSuccess, 0
	var perr *payretry.Error
	switch {
	case err != nil:
		if !errors.As(err, &perr) {
			perr = &payretry.Error{Class: payretry.ClassOther, Err: err}
		}
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		perr, _ = payretry.CheckResponse(resp).(*payretry.Error)
	}
	if resp != nil {
		status = resp.StatusCode
	}
	if perr != nil {
		class, out = perr.Class, outcomeFailed
		if perr.OutcomeUnknown {
			out = outcomeUnknown
		}
	}
	h.callDuration.Record(ctx, time.Since(start).Seconds(), h.callOpts(mi, out)...)
	if out == outcomeUnknown {
		h.unknown.Add(ctx, 1, h.unknownOpts(mi)...)
	}
	if !cc.refused && err != nil && errors.Is(err, payretry.ErrRetryBudget) {
		// The budget refused the retry after the attempt was reported
		// (another call spent the last token meanwhile).
		h.refusals.Add(ctx, 1, h.refusalOpts...)
	}
	if span.IsRecording() {
		attrs := make([]attribute.KeyValue, 0, 7)
		if req.URL != nil {
			attrs = appendServer(attrs, req.URL)
		}
		attrs = append(attrs, keyOutcome.String(outcomeNames[out]), keyAttempts.Int(cc.n))
		if status != 0 {
			attrs = append(attrs, keyStatus.Int(status))
		}
		if out != outcomeSuccess {
			attrs = append(attrs, keyErrorType.String(className(class)))
			if r := reasonName(err); r != "" {
				attrs = append(attrs, keyReason.String(r))
			}
			span.SetStatus(codes.Error, className(class))
		}
		span.SetAttributes(attrs...)
	}
	span.End()
	return resp, err
}

// callCtx is the context of a call sent through a Transport, and the call's
// state: the payretry Transport hands it to the attempts and to OnAttempt,
// which find it with Value(callKey{}). A call's attempts, and the hooks
// reporting them, run one after the other on the caller's goroutine.
type callCtx struct {
	context.Context
	h       *hooks
	span    trace.Span // the call's
	attempt trace.Span // the attempt in flight, until OnAttempt ends it
	n       int        // attempts sent
	refused bool       // the retry budget refusal was counted
}

type callKey struct{}

// Value returns the call's state for callKey{} and otherwise the value of
// the context it wraps.
func (c *callCtx) Value(key any) any {
	if key == (callKey{}) {
		return c
	}
	return c.Context.Value(key)
}

// callOf returns the state of the call that ctx belongs to, if h started it.
func (h *hooks) callOf(ctx context.Context) *callCtx {
	c, _ := ctx.Value(callKey{}).(*callCtx)
	if c == nil || c.h != h {
		return nil
	}
	return c
}

// attemptTransport is the base of the payretry Transport: it starts the span
// of each attempt, which OnAttempt ends.
type attemptTransport struct {
	base http.RoundTripper
	h    *hooks
}

func (a *attemptTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	cc := a.h.callOf(r.Context())
	if cc == nil {
		return a.base.RoundTrip(r)
	}
	cc.n++
	if !cc.span.SpanContext().IsValid() {
		return a.base.RoundTrip(r) // a no-op tracer: no span to start
	}
	if cc.attempt != nil { // the previous attempt was not reported; not expected
		cc.attempt.End()
	}
	mi := methodIndex(r.Method)
	opts := attemptStarts[mi]
	if cc.span.IsRecording() {
		opts = attemptStart(r, mi, cc.n)
	}
	ctx, span := a.h.tracer.Start(r.Context(), spanName(mi), opts...)
	cc.attempt = span
	return a.base.RoundTrip(r.WithContext(ctx))
}

// onAttempt is the policy's OnAttempt: metrics, the attempt's span, the wait
// and hold events, then the caller's own hook.
func (h *hooks) onAttempt(a payretry.Attempt) {
	ctx := context.Background()
	if a.Request != nil {
		ctx = a.Request.Context()
	}
	cc := h.callOf(ctx)
	h.record(ctx, a, cc)
	h.trace(ctx, a, cc)
	if h.next != nil {
		h.next(a)
	}
}

// record records the metrics of one attempt.
func (h *hooks) record(ctx context.Context, a payretry.Attempt, cc *callCtx) {
	mi := methodIndex(a.Method)
	h.attempts.Add(ctx, 1, h.attemptOpts(mi, a.Class, a.Number > 1)...)
	if a.Hold > 0 {
		h.holds.Add(ctx, 1, h.holdOpts(a.HoldSource)...)
		h.waits.Record(ctx, a.Hold.Seconds(), h.waitOpts(kindHold, a.HoldSource)...)
	}
	if a.Retry {
		h.waits.Record(ctx, a.Wait.Seconds(), h.waitOpts(kindRetry, a.WaitSource)...)
		return
	}
	if errors.Is(a.Reason, payretry.ErrRetryBudget) {
		h.refusals.Add(ctx, 1, h.refusalOpts...)
		if cc != nil {
			cc.refused = true
		}
	}
	if cc == nil && a.OutcomeUnknown {
		// Without the Transport, the last attempt of a call tells its
		// outcome. (With it, RoundTrip does, also for a call that ends
		// between attempts.)
		h.unknown.Add(ctx, 1, h.unknownOpts(mi)...)
	}
}

// trace ends the attempt's span, or makes it after the fact, and adds the
// hold and wait events to the call's span (or the caller's).
func (h *hooks) trace(ctx context.Context, a payretry.Attempt, cc *callCtx) {
	var span, parent trace.Span
	if cc != nil {
		span, cc.attempt, parent = cc.attempt, nil, cc.span
		if span == nil {
			return // attemptTransport started none: a no-op tracer
		}
	} else {
		parent = trace.SpanFromContext(ctx)
	}
	afterwards := span == nil
	start := a.Start
	if start.IsZero() { // not from a payretry Transport
		start = time.Now().Add(-a.Duration)
	}
	if afterwards {
		mi := methodIndex(a.Method)
		opts := attemptStarts[mi]
		if parent.IsRecording() || !parent.SpanContext().IsValid() {
			// A root span may be sampled: give the sampler its attributes.
			opts = attemptStart(a.Request, mi, a.Number)
		}
		_, span = h.tracer.Start(ctx, spanName(mi), append(opts, trace.WithTimestamp(start))...)
	}
	if span.IsRecording() {
		attrs := make([]attribute.KeyValue, 0, 4)
		if a.StatusCode != 0 {
			attrs = append(attrs, keyStatus.Int(a.StatusCode))
		}
		if a.Class != payretry.ClassSuccess {
			attrs = append(attrs, keyErrorType.String(className(a.Class)))
			span.SetStatus(codes.Error, className(a.Class))
			if !a.Retry {
				if r := reasonName(a.Reason); r != "" {
					attrs = append(attrs, keyReason.String(r))
				}
				if a.OutcomeUnknown {
					attrs = append(attrs, keyOutcomeUnknown.Bool(true))
				}
			}
		}
		span.SetAttributes(attrs...)
	}
	if afterwards {
		span.End(trace.WithTimestamp(start.Add(a.Duration)))
	} else {
		span.End()
	}
	if !parent.IsRecording() {
		return
	}
	if a.Hold > 0 {
		parent.AddEvent("payretry.hold", trace.WithTimestamp(start.Add(-a.Hold)), trace.WithAttributes(
			keyWaitSource.String(a.HoldSource.String()), keyWaitDuration.Float64(a.Hold.Seconds())))
	}
	if a.Retry {
		parent.AddEvent("payretry.wait", trace.WithAttributes(
			keyWaitSource.String(a.WaitSource.String()), keyWaitDuration.Float64(a.Wait.Seconds())))
	}
}

// observeLimiter registers the callback of the limiter gauges, for the
// lifetime of h: it is unregistered once h is unreachable, that is once the
// Transport or Policy that holds its hook is.
func (h *hooks) observeLimiter(p payretry.Policy) {
	reg := h.registerLimiter(p)
	if reg == nil {
		return
	}
	runtime.AddCleanup(h, func(r metric.Registration) {
		if err := r.Unregister(); err != nil {
			otel.Handle(err)
		}
	}, reg)
}
