package otelpayretry_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/payretry/payretry"
	"github.com/payretry/payretry/otelpayretry"
)

func ExampleNewTransport() {
	// A provider that fails once, then accepts the payment.
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls++; calls == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()

	// In a service, the providers come from the SDK's setup (or leave
	// Options empty for the global ones); here, in memory.
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))

	policy := payretry.SmartRetry()
	policy.InitialInterval = 10 * time.Millisecond // for the example; keep the preset's in a service
	t, err := otelpayretry.NewTransport(nil, policy, otelpayretry.Options{MeterProvider: mp, TracerProvider: tp})
	if err != nil {
		panic(err)
	}
	client := &http.Client{Transport: t}
	defer client.CloseIdleConnections()
	resp, err := client.Post(srv.URL+"/v1/payments/sale", "application/json",
		strings.NewReader(`{"reference":"order-1","amount":4999,"currency":"USD"}`))
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode)

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		panic(err)
	}
	var names []string
	for _, m := range rm.ScopeMetrics[0].Metrics {
		names = append(names, m.Name)
	}
	slices.Sort(names)
	fmt.Println(strings.Join(names, "\n"))
	for _, s := range spans.Ended() {
		fmt.Println("span:", s.Name())
	}
	// Output:
	// 201
	// payretry.attempts
	// payretry.call.duration
	// payretry.limiter.down_scopes
	// payretry.wait.duration
	// span: POST
	// span: POST
	// span: payretry smartretry
}

func ExamplePolicy() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))

	// For a Transport built elsewhere: instrument its Policy first.
	policy := payretry.SmartRetry()
	policy.Limiter = payretry.NewLimiter() // so that the limiter gauge can read it
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	t, err := payretry.NewTransport(base, otelpayretry.Policy(policy, otelpayretry.Options{MeterProvider: mp}))
	if err != nil {
		panic(err)
	}
	resp, err := (&http.Client{Transport: t}).Post(srv.URL+"/v1/payments/sale", "application/json",
		strings.NewReader(`{"reference":"order-2","amount":100,"currency":"EUR"}`))
	if err != nil {
		panic(err)
	}
	resp.Body.Close()

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		panic(err)
	}
	for _, m := range rm.ScopeMetrics[0].Metrics {
		if sum, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == "payretry.attempts" {
			for _, p := range sum.DataPoints {
				class, _ := p.Attributes.Value("payretry.class")
				fmt.Println(m.Name, class.Emit(), p.Value)
			}
		}
	}
	// Output:
	// payretry.attempts success 1
}
