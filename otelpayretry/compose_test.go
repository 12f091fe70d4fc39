package otelpayretry_test

import (
	"context"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/payretry/payretry"
	"github.com/payretry/payretry/otelpayretry"
)

const (
	ourScope     = "github.com/payretry/payretry/otelpayretry"
	otelhttpName = "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
)

func byScope(spans []sdktrace.ReadOnlySpan, scope string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.InstrumentationScope().Name == scope {
			out = append(out, s)
		}
	}
	return sorted(out)
}

// TestOtelhttpInside: otelhttp as payretry's base makes one HTTP span per
// attempt, each the child of its attempt's span, and puts that span's
// context on the wire.
func TestOtelhttpInside(t *testing.T) {
	tel := newTelemetry(t)
	srv := newScripted(t, status(503), status(201))
	base := otelhttp.NewTransport(newBase(t), otelhttp.WithTracerProvider(tel.tp),
		otelhttp.WithPropagators(propagation.TraceContext{}))
	rt, err := otelpayretry.NewTransport(base, fast(), tel.options())
	require.NoError(t, err)
	_, err = post(t, context.Background(), rt, srv.URL+"/v1/payments/sale")
	require.NoError(t, err)

	spans := tel.spans.Ended()
	require.Len(t, spans, 5, "a call, two attempts, two HTTP spans")
	ours := byScope(spans, ourScope)
	http := byScope(spans, otelhttpName)
	call := byName(ours, "payretry smartretry")
	attempts := byName(ours, "POST")
	require.Len(t, call, 1)
	require.Len(t, attempts, 2)
	require.Len(t, http, 2)
	reqs := srv.requests()
	require.Len(t, reqs, 2)
	for i := range attempts {
		assert.Equal(t, call[0].SpanContext().SpanID(), attempts[i].Parent().SpanID())
		assert.Equal(t, attempts[i].SpanContext().SpanID(), http[i].Parent().SpanID(), "HTTP span %d is under attempt %d", i+1, i+1)
		assert.Contains(t, reqs[i].Header.Get("Traceparent"), http[i].SpanContext().SpanID().String(),
			"attempt %d carries its HTTP span's context", i+1)
	}
}

// TestOtelhttpOutside: otelhttp around the instrumented Transport makes one
// HTTP span per call, the parent of the call span.
func TestOtelhttpOutside(t *testing.T) {
	tel := newTelemetry(t)
	srv := newScripted(t, status(503), status(201))
	inner, err := otelpayretry.NewTransport(newBase(t), fast(), tel.options())
	require.NoError(t, err)
	rt := otelhttp.NewTransport(inner, otelhttp.WithTracerProvider(tel.tp))
	_, err = post(t, context.Background(), rt, srv.URL+"/v1/payments/sale")
	require.NoError(t, err)

	spans := tel.spans.Ended()
	require.Len(t, spans, 4, "an HTTP span, a call, two attempts")
	outer := byScope(spans, otelhttpName)
	require.Len(t, outer, 1)
	call := byName(byScope(spans, ourScope), "payretry smartretry")
	require.Len(t, call, 1)
	assert.Equal(t, outer[0].SpanContext().SpanID(), call[0].Parent().SpanID())
	for _, a := range byName(byScope(spans, ourScope), "POST") {
		assert.Equal(t, call[0].SpanContext().SpanID(), a.Parent().SpanID())
	}
}

// metricKeys are the only attributes of metrics.
var metricKeys = []attribute.Key{
	"payretry.provider", "http.request.method", "payretry.class", "payretry.retry",
	"payretry.outcome", "payretry.wait.kind", "payretry.wait.source", "payretry.scope",
}

// TestNoSecrets sends credentials, a key, a query and a body, gets them
// echoed in error bodies and headers, and finds none of them, nor a URL in
// a metric, in any attribute the package recorded.
func TestNoSecrets(t *testing.T) {
	tel := newTelemetry(t)
	echo := func(code int) step {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Request-Id", "secret-request-id")
			w.Header().Set("Retry-After", "0")
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(code)
			io.WriteString(w, `{"reason_code":"SECRET_CODE","detail":"secret detail for `+r.Header.Get("Idempotency-Key")+`"}`)
		}
	}
	srv := newScripted(t, echo(503), echo(429), status(201))
	rt, err := otelpayretry.NewTransport(newBase(t), fast(), tel.options())
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/payments/sale?api_token=secret-query",
		strings.NewReader(`{"reference":"secret-reference","card":"secret-card"}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer secret-token")
	req.Header.Set("X-Api-Key", "secret-api-key")
	req.Header.Set("Idempotency-Key", "secret-idempotency-key")
	req.URL.User = nil
	resp, err := rt.RoundTrip(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	// No answer at all.
	req, err = http.NewRequest(http.MethodGet, closedURL(t)+"?api_token=secret-query", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer secret-token")
	_, err = rt.RoundTrip(req)
	require.Error(t, err)

	var seen int
	check := func(where string, kvs []attribute.KeyValue, metric bool) {
		for _, kv := range kvs {
			seen++
			s := strings.ToLower(string(kv.Key) + "=" + kv.Value.Emit())
			assert.NotContains(t, s, "secret", where)
			assert.NotContains(t, s, "?", where)
			assert.NotContains(t, s, "api_token", where)
			if metric {
				assert.Contains(t, metricKeys, kv.Key, "%s: only low-cardinality attributes in a metric", where)
				assert.NotContains(t, s, "/v1", "%s: no URL or path in a metric", where)
			}
		}
	}
	spans := byScope(tel.spans.Ended(), ourScope)
	require.Len(t, spans, 8, "two calls of three attempts")
	for _, s := range spans {
		check(s.Name(), s.Attributes(), false)
		assert.NotContains(t, strings.ToLower(s.Status().Description), "secret")
		for _, e := range s.Events() {
			check(s.Name()+" "+e.Name, e.Attributes, false)
		}
		if u, ok := spanAttrs(s.Attributes())["url.full"]; ok {
			assert.Contains(t, []string{srv.URL + "/v1/payments/sale", strings.TrimSuffix(req.URL.String(), "?api_token=secret-query")}, u)
		}
	}
	m := tel.collect(t)
	require.NotEmpty(t, m)
	for name, md := range m {
		for _, set := range dataAttrs(md) {
			check(name, set.ToSlice(), true)
		}
	}
	assert.Greater(t, seen, 50, "the scan saw the attributes")
}

// dataAttrs returns the attribute sets of all data points of m.
func dataAttrs(m metricdata.Metrics) []attribute.Set {
	var out []attribute.Set
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		for _, p := range d.DataPoints {
			out = append(out, p.Attributes)
		}
	case metricdata.Gauge[int64]:
		for _, p := range d.DataPoints {
			out = append(out, p.Attributes)
		}
	case metricdata.Histogram[float64]:
		for _, p := range d.DataPoints {
			out = append(out, p.Attributes)
		}
	}
	return out
}

// cannedRT answers 200 without a network.
type cannedRT struct{}

func (cannedRT) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
}

// TestGaugesFollowTheTransport: the limiter gauges are reported while the
// Transport lives and stop once it is collected.
func TestGaugesFollowTheTransport(t *testing.T) {
	tel := newTelemetry(t)
	p := fast()
	p.Limiter = &degradable{Limiter: payretry.NewLimiter()}
	rt, err := otelpayretry.NewTransport(cannedRT{}, p, tel.options())
	require.NoError(t, err)
	runtime.GC()
	runtime.GC()
	assert.Contains(t, tel.collect(t), "payretry.limiter.degraded")
	runtime.KeepAlive(rt)
	rt = nil
	require.Eventually(t, func() bool {
		runtime.GC()
		_, ok := tel.collect(t)["payretry.limiter.degraded"]
		return !ok
	}, 5*time.Second, 5*time.Millisecond)
}
