package otelpayretry

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/payretry/payretry"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Attribute keys of payretry's own; the others are the semantic conventions'.
const (
	keyProvider       = attribute.Key("payretry.provider")
	keyOutcome        = attribute.Key("payretry.outcome")
	keyClass          = attribute.Key("payretry.class")
	keyRetry          = attribute.Key("payretry.retry")
	keyWaitKind       = attribute.Key("payretry.wait.kind")
	keyWaitSource     = attribute.Key("payretry.wait.source")
	keyWaitDuration   = attribute.Key("payretry.wait.duration")
	keyScope          = attribute.Key("payretry.scope")
	keyAttempts       = attribute.Key("payretry.attempts")
	keyReason         = attribute.Key("payretry.reason")
	keyOutcomeUnknown = attribute.Key("payretry.outcome_unknown")

	keyMethod         = semconv.HTTPRequestMethodKey
	keyMethodOriginal = semconv.HTTPRequestMethodOriginalKey
	keyStatus         = semconv.HTTPResponseStatusCodeKey
	keyErrorType      = semconv.ErrorTypeKey
	keyResendCount    = semconv.HTTPRequestResendCountKey
	keyServerAddress  = semconv.ServerAddressKey
	keyServerPort     = semconv.ServerPortKey
	keyURLFull        = semconv.URLFullKey
)

// Outcomes of a logical call, the values of payretry.outcome.
const (
	outcomeSuccess = iota
	outcomeFailed
	outcomeUnknown
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"success", "failed", "unknown"}

// Kinds of wait, the values of payretry.wait.kind.
const (
	kindRetry = iota // Attempt.Wait: before a retry
	kindHold         // Attempt.Hold: the limiter's, before an attempt
	numKinds
)

var kindNames = [numKinds]string{"retry", "hold"}

// methods are the methods of the HTTP semantic conventions; any other is
// reported as "_OTHER", with http.request.method_original on spans.
var methods = [...]string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete,
	http.MethodConnect, http.MethodOptions, http.MethodTrace, http.MethodPatch,
}

const (
	otherMethod = len(methods)
	numMethods  = otherMethod + 1
	numClasses  = int(payretry.ClassOther) + 1
	numSources  = 8 // WaitNone...WaitOutage, and room for more
)

func methodIndex(m string) int {
	switch m {
	case http.MethodGet:
		return 0
	case http.MethodHead:
		return 1
	case http.MethodPost:
		return 2
	case http.MethodPut:
		return 3
	case http.MethodDelete:
		return 4
	case http.MethodConnect:
		return 5
	case http.MethodOptions:
		return 6
	case http.MethodTrace:
		return 7
	case http.MethodPatch:
		return 8
	}
	return otherMethod
}

func methodName(mi int) string {
	if mi == otherMethod {
		return "_OTHER"
	}
	return methods[mi]
}

// spanName is the name of an attempt's span: its method, or "HTTP" for
// another, as the HTTP client conventions say.
func spanName(mi int) string {
	if mi == otherMethod {
		return "HTTP"
	}
	return methods[mi]
}

var classNames = func() (n [numClasses]string) {
	for c := range n {
		n[c] = strings.ReplaceAll(payretry.Class(c).String(), " ", "_")
	}
	return n
}()

// className returns the class's name in snake case: "server_error".
func className(c payretry.Class) string {
	if c >= 0 && int(c) < numClasses {
		return classNames[c]
	}
	return strings.ReplaceAll(c.String(), " ", "_")
}

// reasons name the causes and reasons of failures, most specific first.
var reasons = [...]struct {
	err  error
	name string
}{
	{payretry.ErrRetryBudget, "retry_budget"},
	{payretry.ErrBodyNotReplayable, "body_not_replayable"},
	{payretry.ErrThrottled, "throttled"},
	{payretry.ErrUnavailable, "unavailable"},
	{payretry.ErrCircuitOpen, "circuit_open"},
	{payretry.ErrNotRetryable, "not_retryable"},
	{payretry.ErrRetriesExhausted, "retries_exhausted"},
	{payretry.ErrUnsafeRetry, "unsafe_retry"},
	{payretry.ErrCompliance, "compliance"},
	{payretry.ErrWaitTooLong, "wait_too_long"},
	{payretry.ErrAttemptTimeout, "attempt_timeout"},
	{context.Canceled, "canceled"},
	{context.DeadlineExceeded, "deadline_exceeded"},
}

// reasonName returns the name of the first payretry sentinel (or context
// error) that err matches, or "" for none: never err's text, which may hold a
// URL.
func reasonName(err error) string {
	if err == nil {
		return ""
	}
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.name
		}
	}
	return ""
}

// hooks is the instrumentation of one Policy: its instruments, the
// measurement options of each attribute set, made on first use, and the
// caller's own OnAttempt. It is safe for concurrent use.
type hooks struct {
	provider string
	next     func(payretry.Attempt)
	tracer   trace.Tracer
	meter    metric.Meter
	callName string

	callDuration metric.Float64Histogram
	attempts     metric.Int64Counter
	waits        metric.Float64Histogram
	unknown      metric.Int64Counter
	holds        metric.Int64Counter
	refusals     metric.Int64Counter
	downScopes   metric.Int64ObservableGauge
	degraded     metric.Int64ObservableGauge

	refusalOpts []metric.AddOption
	attemptSet  [numMethods][numClasses][2]atomic.Pointer[[]metric.AddOption]
	callSet     [numMethods][numOutcomes]atomic.Pointer[[]metric.RecordOption]
	unknownSet  [numMethods]atomic.Pointer[[]metric.AddOption]
	waitSet     [numKinds][numSources]atomic.Pointer[[]metric.RecordOption]
	holdSet     [numSources]atomic.Pointer[[]metric.AddOption]
	callStarts  [numMethods]atomic.Pointer[[]trace.SpanStartOption]
}

// Bucket boundaries, in seconds: a call may last from milliseconds to
// MaxElapsedTime (1 min by default), a wait up to MaxRetryAfter.
var (
	callBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 30, 60}
	waitBuckets = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
)

func newHooks(p payretry.Policy, o Options) *hooks {
	mp, tp := o.MeterProvider, o.TracerProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	h := &hooks{
		provider: p.Name,
		next:     p.OnAttempt,
		tracer:   tp.Tracer(scopeName),
		meter:    mp.Meter(scopeName),
		callName: strings.TrimSpace("payretry " + p.Name),
	}
	m := h.meter
	var errs []error
	check := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	var err error
	h.callDuration, err = m.Float64Histogram("payretry.call.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of logical payment calls, all attempts and waits included, by outcome."),
		metric.WithExplicitBucketBoundaries(callBuckets...))
	check(err)
	h.attempts, err = m.Int64Counter("payretry.attempts", metric.WithUnit("{attempt}"),
		metric.WithDescription("Attempts sent, by class of their outcome and whether they were retries."))
	check(err)
	h.waits, err = m.Float64Histogram("payretry.wait.duration", metric.WithUnit("s"),
		metric.WithDescription("Waits before retries and the limiter's holds before attempts, by source."),
		metric.WithExplicitBucketBoundaries(waitBuckets...))
	check(err)
	h.unknown, err = m.Int64Counter("payretry.unknown_outcomes", metric.WithUnit("{call}"),
		metric.WithDescription("Calls that ended with an unknown outcome: a write may have executed; reconcile."))
	check(err)
	h.holds, err = m.Int64Counter("payretry.limiter.holds", metric.WithUnit("{hold}"),
		metric.WithDescription("Attempts the limiter held before sending them, by source."))
	check(err)
	h.refusals, err = m.Int64Counter("payretry.retry_budget.refusals", metric.WithUnit("{retry}"),
		metric.WithDescription("Retries refused because the retry budget was spent."))
	check(err)
	h.downScopes, err = m.Int64ObservableGauge("payretry.limiter.down_scopes", metric.WithUnit("{scope}"),
		metric.WithDescription("1 for each limiter scope held as down (the provider failing), 0 once it is back."))
	check(err)
	h.degraded, err = m.Int64ObservableGauge("payretry.limiter.degraded", metric.WithUnit("{limiter}"),
		metric.WithDescription("1 while a shared limiter cannot reach its store and paces in-process."))
	check(err)
	if err := errors.Join(errs...); err != nil {
		otel.Handle(err) // the instruments that failed are no-ops
	}
	h.refusalOpts = addOpts(keyProvider.String(h.provider))
	return h
}

func addOpts(kv ...attribute.KeyValue) []metric.AddOption {
	return []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(kv...))}
}

func recordOpts(kv ...attribute.KeyValue) []metric.RecordOption {
	return []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(kv...))}
}

// cached returns the value in p, storing build's first.
func cached[T any](p *atomic.Pointer[T], build func() T) T {
	if v := p.Load(); v != nil {
		return *v
	}
	v := build()
	p.Store(&v)
	return v
}

func (h *hooks) attemptOpts(mi int, c payretry.Class, retry bool) []metric.AddOption {
	build := func() []metric.AddOption {
		return addOpts(keyProvider.String(h.provider), keyMethod.String(methodName(mi)),
			keyClass.String(className(c)), keyRetry.Bool(retry))
	}
	if c < 0 || int(c) >= numClasses {
		return build()
	}
	r := 0
	if retry {
		r = 1
	}
	return cached(&h.attemptSet[mi][c][r], build)
}

func (h *hooks) callOpts(mi, out int) []metric.RecordOption {
	return cached(&h.callSet[mi][out], func() []metric.RecordOption {
		return recordOpts(keyProvider.String(h.provider), keyMethod.String(methodName(mi)),
			keyOutcome.String(outcomeNames[out]))
	})
}

func (h *hooks) unknownOpts(mi int) []metric.AddOption {
	return cached(&h.unknownSet[mi], func() []metric.AddOption {
		return addOpts(keyProvider.String(h.provider), keyMethod.String(methodName(mi)))
	})
}

func (h *hooks) waitOpts(kind int, s payretry.WaitSource) []metric.RecordOption {
	build := func() []metric.RecordOption {
		return recordOpts(keyProvider.String(h.provider), keyWaitKind.String(kindNames[kind]),
			keyWaitSource.String(s.String()))
	}
	if s < 0 || int(s) >= numSources {
		return build()
	}
	return cached(&h.waitSet[kind][s], build)
}

func (h *hooks) holdOpts(s payretry.WaitSource) []metric.AddOption {
	build := func() []metric.AddOption {
		return addOpts(keyProvider.String(h.provider), keyWaitSource.String(s.String()))
	}
	if s < 0 || int(s) >= numSources {
		return build()
	}
	return cached(&h.holdSet[s], build)
}

// callStart returns the start options of a call's span.
func (h *hooks) callStart(mi int) []trace.SpanStartOption {
	return cached(&h.callStarts[mi], func() []trace.SpanStartOption {
		return slices.Clip([]trace.SpanStartOption{
			trace.WithSpanKind(trace.SpanKindInternal),
			trace.WithAttributes(keyProvider.String(h.provider), keyMethod.String(methodName(mi))),
		})
	})
}

var clientKind = trace.WithSpanKind(trace.SpanKindClient)

// attemptStarts are the start options of the spans of attempts that are not
// recorded (their call's span is not), by method: no attribute is worth
// building for them.
var attemptStarts = func() (s [numMethods][]trace.SpanStartOption) {
	for mi := range s {
		s[mi] = slices.Clip([]trace.SpanStartOption{
			clientKind, trace.WithAttributes(keyMethod.String(methodName(mi))),
		})
	}
	return s
}()

// attemptStart returns the start options of the span of attempt n of r,
// with the attributes that the HTTP client conventions want at the start
// (they matter to samplers): the method, the server, url.full without
// credentials, query or fragment, and http.request.resend_count on a retry.
// r may be nil. Its capacity is its length: an append copies it.
func attemptStart(r *http.Request, mi, n int) []trace.SpanStartOption {
	attrs := make([]attribute.KeyValue, 0, 6)
	attrs = append(attrs, keyMethod.String(methodName(mi)))
	if n > 1 {
		attrs = append(attrs, keyResendCount.Int(n-1))
	}
	if r != nil {
		if mi == otherMethod {
			attrs = append(attrs, keyMethodOriginal.String(r.Method))
		}
		if u := r.URL; u != nil {
			attrs = appendServer(attrs, u)
			clean := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
			attrs = append(attrs, keyURLFull.String(clean.String()))
		}
	}
	return []trace.SpanStartOption{clientKind, trace.WithAttributes(attrs...)}
}

// appendServer appends server.address and server.port of u to attrs.
func appendServer(attrs []attribute.KeyValue, u *url.URL) []attribute.KeyValue {
	if u.Host == "" {
		return attrs
	}
	attrs = append(attrs, keyServerAddress.String(u.Hostname()))
	port := 0
	if p := u.Port(); p != "" {
		port, _ = strconv.Atoi(p)
	} else if u.Scheme == "https" {
		port = 443
	} else if u.Scheme == "http" {
		port = 80
	}
	if port > 0 {
		attrs = append(attrs, keyServerPort.Int(port))
	}
	return attrs
}
