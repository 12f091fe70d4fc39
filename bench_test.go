package payretry

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

// memTransport answers every request with a canned 200 without sockets, so
// that benchmarks show the cost of the layer itself.
type memTransport struct{}

func (memTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
	return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody, Request: req}, nil
}

var payload = `{"reference":"bench-0001","amount":4999,"currency":"USD","customer":"cus_123456789","description":"benchmark payment of two hundred bytes","metadata":{"order":"A-1"}}`

func BenchmarkRoundTrip(b *testing.B) {
	for _, c := range []struct {
		name   string
		method string
		base   http.RoundTripper
		policy *Policy
	}{
		{"method=GET/client=bare", http.MethodGet, memTransport{}, nil},
		{"method=GET/client=payretry", http.MethodGet, memTransport{}, &Policy{Name: "b", IdempotencyHeader: "Idempotency-Key"}},
		{"method=POST/client=bare", http.MethodPost, memTransport{}, nil},
		{"method=POST/client=payretry", http.MethodPost, memTransport{}, &Policy{Name: "b", IdempotencyHeader: "Idempotency-Key"}},
		{"method=POST/client=smartretry", http.MethodPost, memTransport{}, ptr(SmartRetry())},
	} {
		rt := c.base
		if c.policy != nil {
			tr, err := NewTransport(c.base, *c.policy)
			if err != nil {
				b.Fatal(err)
			}
			rt = tr
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var body io.Reader
				if c.method == http.MethodPost {
					body = strings.NewReader(payload)
				}
				req, _ := http.NewRequest(c.method, "http://127.0.0.1/v1/payments/sale", body)
				req.Header.Set("Authorization", "Bearer sk_test_bench")
				if body != nil {
					req.Header.Set("Content-Type", "application/json")
				}
				resp, err := rt.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

var _ = bytes.NewReader

func BenchmarkNewKey(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		newKey()
	}
}
