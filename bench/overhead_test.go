package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// Scenario 1, overhead: one call answered 200 at the first attempt, through
// each client, so that only the layer's own cost differs. Sub-benchmark
// names are key=value pairs, so that benchstat can put clients side by side:
//
//	benchstat -col /client results/overhead.txt
//
// base=loopback sends a POST over a real http.Transport to an httptest
// server; base=inmem hands a POST or a GET to a RoundTripper that returns a
// canned 200 without sockets. key=none is a call without an
// Idempotency-Key (payretry makes one for a POST; the peers send none);
// key=caller is a POST that carries the caller's own, the same for every
// client.

var okBody = []byte(`{"id":"txn_bench","status":"approved"}`)

// cannedRT is the in-memory base: it consumes the request body, as a real
// transport does, and returns a fresh 200 response.
type cannedRT struct{}

func (cannedRT) RoundTrip(r *http.Request) (*http.Response, error) {
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
		Body:          io.NopCloser(bytes.NewReader(okBody)),
		ContentLength: int64(len(okBody)),
		Request:       r,
	}, nil
}

func okHandler(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "application/json")
	w.Write(okBody)
}

// call sends one request through rt and reads the whole answer. A non-empty
// key is sent as the request's Idempotency-Key.
func call(rt http.RoundTripper, method, url string, body []byte, key string) error {
	var rd io.Reader
	if method == http.MethodPost {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, url, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+APIKey)
	if rd != nil {
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

type overheadCase struct {
	base, method, key string
}

var overheadCases = []overheadCase{
	{"loopback", http.MethodPost, "none"},
	{"inmem", http.MethodPost, "none"},
	{"inmem", http.MethodPost, "caller"},
	{"inmem", http.MethodGet, "none"},
}

// callerKey is the Idempotency-Key of the key=caller cases.
const callerKey = "5f0c1a52-8d9e-4c43-b1a7-3e6d2f9b8c10"

func BenchmarkOverhead(b *testing.B)         { benchOverhead(b, false) }
func BenchmarkOverheadParallel(b *testing.B) { benchOverhead(b, true) }

func benchOverhead(b *testing.B, parallel bool) {
	body := PaymentBody("pay-000001")
	for _, oc := range overheadCases {
		for _, client := range Peers {
			name := fmt.Sprintf("base=%s/method=%s/key=%s/client=%s", oc.base, oc.method, oc.key, client)
			key := ""
			if oc.key == "caller" {
				key = callerKey
			}
			b.Run(name, func(b *testing.B) {
				var base http.RoundTripper = cannedRT{}
				url := "http://provider.invalid" + PaymentPath
				if oc.base == "loopback" {
					srv := httptest.NewServer(http.HandlerFunc(okHandler))
					defer srv.Close()
					t := NewBaseTransport()
					defer t.CloseIdleConnections()
					base, url = t, srv.URL+PaymentPath
				}
				rt, _, err := NewClient(client, base, Options{})
				if err != nil {
					b.Fatal(err)
				}
				if err := call(rt, oc.method, url, body, key); err != nil { // warm the connection
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.ResetTimer()
				if !parallel {
					for b.Loop() {
						if err := call(rt, oc.method, url, body, key); err != nil {
							b.Fatal(err)
						}
					}
					return
				}
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := call(rt, oc.method, url, body, key); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}
