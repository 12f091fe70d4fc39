package otelpayretry_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/payretry/payretry"
	"github.com/payretry/payretry/otelpayretry"
)

// telemetry is an in-memory OpenTelemetry SDK: a manual metric reader and a
// span recorder.
type telemetry struct {
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
}

func newTelemetry(t *testing.T) *telemetry {
	t.Helper()
	tel := &telemetry{reader: sdkmetric.NewManualReader(), spans: tracetest.NewSpanRecorder()}
	tel.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(tel.reader))
	tel.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tel.spans))
	t.Cleanup(func() {
		require.NoError(t, tel.mp.Shutdown(context.Background()))
		require.NoError(t, tel.tp.Shutdown(context.Background()))
	})
	return tel
}

func (tel *telemetry) options() otelpayretry.Options {
	return otelpayretry.Options{MeterProvider: tel.mp, TracerProvider: tel.tp}
}

// collect returns the metrics collected now, by name.
func (tel *telemetry) collect(t *testing.T) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, tel.reader.Collect(context.Background(), &rm))
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			require.NotContains(t, out, m.Name, "metric reported twice")
			out[m.Name] = m
		}
	}
	return out
}

// attrs renders an attribute set as "k=v,k=v", sorted by key, for readable
// comparisons.
func attrs(s attribute.Set) string {
	var b strings.Builder
	for i, kv := range s.ToSlice() {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(string(kv.Key))
		b.WriteByte('=')
		b.WriteString(kv.Value.Emit())
	}
	return b.String()
}

// sums returns the data points of a counter or an int gauge, by attributes.
func sums(t *testing.T, m metricdata.Metrics) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		for _, p := range d.DataPoints {
			out[attrs(p.Attributes)] = p.Value
		}
	case metricdata.Gauge[int64]:
		for _, p := range d.DataPoints {
			out[attrs(p.Attributes)] = p.Value
		}
	default:
		t.Fatalf("%s: unexpected data %T", m.Name, m.Data)
	}
	return out
}

// histogram is what a test checks of one histogram data point.
type histogram struct {
	Count uint64
	Sum   float64
}

func histograms(t *testing.T, m metricdata.Metrics) map[string]histogram {
	t.Helper()
	d, ok := m.Data.(metricdata.Histogram[float64])
	require.True(t, ok, "%s: unexpected data %T", m.Name, m.Data)
	out := map[string]histogram{}
	for _, p := range d.DataPoints {
		out[attrs(p.Attributes)] = histogram{Count: p.Count, Sum: p.Sum}
	}
	return out
}

// step is one scripted answer of a test server.
type step func(w http.ResponseWriter, r *http.Request)

func status(code int, header ...string) step {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		io.WriteString(w, `{"status":"ok"}`)
	}
}

// hangUp closes the connection without an answer, after reading the request.
func hangUp(w http.ResponseWriter, r *http.Request) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err == nil {
		conn.Close()
	}
}

// scripted is a loopback server that answers the steps in order and records
// the requests it got; a request past the script fails the test.
type scripted struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []*http.Request
}

func newScripted(t *testing.T, steps ...step) *scripted {
	t.Helper()
	s := &scripted{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		s.mu.Lock()
		n := len(s.reqs)
		s.reqs = append(s.reqs, r)
		s.mu.Unlock()
		if n >= len(steps) {
			t.Errorf("request %d past the script of %d", n+1, len(steps))
			w.WriteHeader(http.StatusTeapot)
			return
		}
		steps[n](w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *scripted) requests() []*http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*http.Request(nil), s.reqs...)
}

// fast returns SmartRetry with waits of milliseconds: backoff 1 ms, 2 ms, ...
// without jitter, three attempts.
func fast() payretry.Policy {
	p := payretry.SmartRetry()
	p.MaxAttempts = 3
	p.InitialInterval = time.Millisecond
	p.MaxInterval = 10 * time.Millisecond
	p.RandomizationFactor = -1
	p.AttemptTimeout = 5 * time.Second
	p.MaxElapsedTime = 10 * time.Second
	return p
}

// newBase returns a loopback transport whose idle connections the test
// closes.
func newBase(t *testing.T) *http.Transport {
	b := &http.Transport{}
	t.Cleanup(b.CloseIdleConnections)
	return b
}

// post sends a payment POST through rt and reads the whole answer.
func post(t *testing.T, ctx context.Context, rt http.RoundTripper, url string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(`{"reference":"order-1","amount":4999,"currency":"USD"}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := rt.RoundTrip(req)
	if resp != nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return resp, err
}

// spanAttrs renders a span's attributes as a map of strings.
func spanAttrs(kvs []attribute.KeyValue) map[string]string {
	out := map[string]string{}
	for _, kv := range kvs {
		out[string(kv.Key)] = kv.Value.Emit()
	}
	return out
}

// byName returns the ended spans with name, in the order they started.
func byName(spans []sdktrace.ReadOnlySpan, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return sorted(out)
}

// sorted sorts spans by their start.
func sorted(spans []sdktrace.ReadOnlySpan) []sdktrace.ReadOnlySpan {
	slices.SortStableFunc(spans, func(a, b sdktrace.ReadOnlySpan) int { return a.StartTime().Compare(b.StartTime()) })
	return spans
}

// recordingHandler is a slog.Handler that keeps the messages it gets and
// whether their context carried a span.
type recordingHandler struct {
	mu    sync.Mutex
	msgs  []string
	spans []bool
}

func slogLogger(h *recordingHandler) *slog.Logger { return slog.New(h) }

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *recordingHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.msgs = append(h.msgs, r.Message)
	h.spans = append(h.spans, trace.SpanContextFromContext(ctx).IsValid())
	return nil
}

func (h *recordingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordingHandler) WithGroup(string) slog.Handler      { return h }

func (h *recordingHandler) messages() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.msgs...)
}

// traced reports whether every line had a span in its context.
func (h *recordingHandler) traced() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ok := range h.spans {
		if !ok {
			return false
		}
	}
	return len(h.spans) > 0
}
