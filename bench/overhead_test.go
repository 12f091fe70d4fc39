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
// The clients are OverheadClients: bare, payretry's generic policy, the four
// presets as users run them (their rules, key placement and 20 s attempt
// time-out; SmartRetry's client-side limits off, see Options.NoClientLimits)
// and the two peers. Every client of a case gets the same request.
//
// base=inmem hands the request to a RoundTripper that returns a canned 200
// without sockets, so that only the layer shows; base=loopback sends it over
// a real http.Transport to an httptest server.
//
// key=caller: the request carries every id a preset reads from the caller,
// so that no client makes one: a POST has the caller's key both in its
// Idempotency-Key header (payretry, ORZCash, Verto, SmartRetry) and in its
// JSON body's "idempotency_key" field (KeyStone), and every call has a
// Vfx-Correlation-Id (Verto's documents make it the caller's: "A unique GUID
// provided by you"). The fields a client does not read travel as inert bytes,
// for bare and the peers too.
//
// key=none: the request carries no id: payretry's clients make the key of a
// POST (ORZCash, SmartRetry and the generic policy in a copy of the header,
// KeyStone in a copy of the body) and Verto a correlation id for every call;
// bare and the peers send the request as it is. Not like for like: it shows
// what making the ids costs.

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

// request is what the benchmark's caller sends.
type request struct {
	method, url string
	body        []byte // nil for a GET
	key         string // the Idempotency-Key header, "" for none
	correlation string // the Vfx-Correlation-Id header, "" for none
}

// callerKey is the key of the key=caller cases, in the header and in the
// body; callerCorrelation is their Vfx-Correlation-Id.
const (
	callerKey         = "5f0c1a52-8d9e-4c43-b1a7-3e6d2f9b8c10"
	callerCorrelation = "0c6e8a41-2b7d-4f15-9a3e-d85f1c2b7e90"
)

// newRequest returns the request of a case: a POST of PaymentBody, or a
// GET; with key "caller", the caller's ids (see the comment at the top).
func newRequest(method, key, url string) request {
	r := request{method: method, url: url}
	if method == http.MethodPost {
		r.body = PaymentBody("pay-000001")
	}
	if key == "caller" {
		r.correlation = callerCorrelation
		if method == http.MethodPost {
			r.key = callerKey
			r.body = append([]byte(`{"idempotency_key":"`+callerKey+`",`), r.body[1:]...)
		}
	}
	return r
}

// call sends one request through rt and reads the whole answer.
func call(rt http.RoundTripper, r request) error {
	var rd io.Reader
	if r.body != nil {
		rd = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(context.Background(), r.method, r.url, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+APIKey)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.key != "" {
		req.Header.Set("Idempotency-Key", r.key)
	}
	if r.correlation != "" {
		req.Header.Set("Vfx-Correlation-Id", r.correlation)
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
	{"loopback", http.MethodPost, "caller"},
	{"inmem", http.MethodPost, "caller"},
	{"inmem", http.MethodPost, "none"},
	{"inmem", http.MethodGet, "caller"},
	{"inmem", http.MethodGet, "none"},
}

func BenchmarkOverhead(b *testing.B)         { benchOverhead(b, false) }
func BenchmarkOverheadParallel(b *testing.B) { benchOverhead(b, true) }

func benchOverhead(b *testing.B, parallel bool) {
	for _, oc := range overheadCases {
		for _, client := range OverheadClients {
			name := fmt.Sprintf("base=%s/method=%s/key=%s/client=%s", oc.base, oc.method, oc.key, client)
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
				rt, _, err := NewClient(client, base, Options{NoClientLimits: true})
				if err != nil {
					b.Fatal(err)
				}
				r := newRequest(oc.method, oc.key, url)
				if err := call(rt, r); err != nil { // warm the connection
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.ResetTimer()
				if !parallel {
					for b.Loop() {
						if err := call(rt, r); err != nil {
							b.Fatal(err)
						}
					}
					return
				}
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := call(rt, r); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}
