package otelpayretry_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/payretry/payretry"
	"github.com/payretry/payretry/otelpayretry"
)

// The cost of the instrumentation per call: one call answered 200 at the
// first attempt by an in-memory base (as in bench/overhead_test.go), through
// payretry alone (otel=off), instrumented with no-op providers (otel=noop:
// what a program that installs no SDK pays) and instrumented with the SDK
// (otel=sdk: a meter provider with a reader, a tracer provider that samples
// every span and exports it in batches to an exporter that drops it), or
// with one of the two SDK providers and a no-op one (otel=metrics,
// otel=traces).
//
//	go test -run '^$' -bench Overhead -benchmem -count 6 . | benchstat -col /otel -
//
// Sub-benchmark names are key=value pairs for benchstat.

var benchBody = []byte(`{"reference":"pay-000001","amount":4999,"currency":"USD"}`)

var benchOK = []byte(`{"id":"txn_bench","status":"approved"}`)

// benchRT is the in-memory base: it consumes the request body, as a real
// transport does, and returns a fresh 200.
type benchRT struct{}

func (benchRT) RoundTrip(r *http.Request) (*http.Response, error) {
	if err := r.Context().Err(); err != nil {
		return nil, err
	}
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	return &http.Response{
		Status: "200 OK", StatusCode: http.StatusOK,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"application/json"}},
		Body:          io.NopCloser(bytes.NewReader(benchOK)),
		ContentLength: int64(len(benchOK)),
		Request:       r,
	}, nil
}

// discard is a span exporter that drops what it gets.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

func benchCall(rt http.RoundTripper, method, key string) error {
	var body io.Reader
	if method == http.MethodPost {
		body = bytes.NewReader(benchBody)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, "http://provider.invalid/v1/payments/sale", body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer sk_test_bench")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

func BenchmarkOverhead(b *testing.B)         { benchOverhead(b, false) }
func BenchmarkOverheadParallel(b *testing.B) { benchOverhead(b, true) }

func benchOverhead(b *testing.B, parallel bool) {
	cases := []struct{ method, key string }{
		{http.MethodPost, "caller"},
		{http.MethodPost, "none"},
		{http.MethodGet, "none"},
	}
	for _, c := range cases {
		for _, mode := range []string{"off", "noop", "metrics", "traces", "sdk"} {
			b.Run(fmt.Sprintf("method=%s/key=%s/otel=%s", c.method, c.key, mode), func(b *testing.B) {
				key := ""
				if c.key == "caller" {
					key = "5f0c1a52-8d9e-4c43-b1a7-3e6d2f9b8c10"
				}
				// bench's policy: keys on POST, no client-side limits.
				p := payretry.Policy{Name: "bench", IdempotencyHeader: "Idempotency-Key"}
				var rt http.RoundTripper
				var err error
				switch mode {
				case "off":
					rt, err = payretry.NewTransport(benchRT{}, p)
				case "noop":
					rt, err = otelpayretry.NewTransport(benchRT{}, p, otelpayretry.Options{
						MeterProvider: metricnoop.NewMeterProvider(), TracerProvider: tracenoop.NewTracerProvider()})
				default:
					o := otelpayretry.Options{MeterProvider: metricnoop.NewMeterProvider(), TracerProvider: tracenoop.NewTracerProvider()}
					if mode != "traces" {
						mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
						b.Cleanup(func() { mp.Shutdown(context.Background()) })
						o.MeterProvider = mp
					}
					if mode != "metrics" {
						tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discard{}))
						b.Cleanup(func() { tp.Shutdown(context.Background()) })
						o.TracerProvider = tp
					}
					rt, err = otelpayretry.NewTransport(benchRT{}, p, o)
				}
				if err != nil {
					b.Fatal(err)
				}
				if err := benchCall(rt, c.method, key); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				if !parallel {
					for b.Loop() {
						if err := benchCall(rt, c.method, key); err != nil {
							b.Fatal(err)
						}
					}
					return
				}
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := benchCall(rt, c.method, key); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}
