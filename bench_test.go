package payretry

import (
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
	generic := &Policy{Name: "b", IdempotencyHeader: "Idempotency-Key"}
	for _, c := range []struct {
		name   string
		method string
		key    string // the caller's Idempotency-Key; "" for none
		policy *Policy
	}{
		{"method=GET/key=none/client=bare", http.MethodGet, "", nil},
		{"method=GET/key=none/client=payretry", http.MethodGet, "", generic},
		{"method=POST/key=none/client=bare", http.MethodPost, "", nil},
		{"method=POST/key=none/client=payretry", http.MethodPost, "", generic},
		{"method=POST/key=caller/client=bare", http.MethodPost, "5f0c1a52-8d9e-4c43-b1a7-3e6d2f9b8c10", nil},
		{"method=POST/key=caller/client=payretry", http.MethodPost, "5f0c1a52-8d9e-4c43-b1a7-3e6d2f9b8c10", generic},
		{"method=POST/key=none/client=smartretry", http.MethodPost, "", ptr(SmartRetry())},
	} {
		var rt http.RoundTripper = memTransport{}
		if c.policy != nil {
			tr, err := NewTransport(rt, *c.policy)
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
				if c.key != "" {
					req.Header.Set("Idempotency-Key", c.key)
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

func BenchmarkNewKey(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		newKey()
	}
}
