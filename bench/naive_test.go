package bench

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// The naive client retries any failure after NaiveWait with a fresh key, up
// to MaxAttempts, and replays the body each time.
func TestNaive(t *testing.T) {
	for _, tc := range []struct {
		name     string
		failures int // answers 500 this many times, then 201
		want     int // attempts
		status   int
	}{
		{"recovers", 2, 3, http.StatusCreated},
		{"gives up", 10, MaxAttempts, http.StatusInternalServerError},
		{"no retry after success", 0, 1, http.StatusCreated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var keys, bodies []string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				mu.Lock()
				keys = append(keys, r.Header.Get("Idempotency-Key"))
				bodies = append(bodies, string(b))
				n := len(keys)
				mu.Unlock()
				if n <= tc.failures {
					w.WriteHeader(http.StatusInternalServerError)
					return
				}
				w.WriteHeader(http.StatusCreated)
			}))
			defer srv.Close()
			base := NewBaseTransport()
			defer base.CloseIdleConnections()
			_, c, err := NewClient(Naive, base, Options{})
			if err != nil {
				t.Fatal(err)
			}
			req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, srv.URL, bytesReader("pay-1"))
			req.Header.Set("Idempotency-Key", "caller-key")
			start := time.Now()
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			took := time.Since(start)
			if resp.StatusCode != tc.status || len(keys) != tc.want {
				t.Fatalf("status %d after %d attempts, want %d after %d", resp.StatusCode, len(keys), tc.status, tc.want)
			}
			if min := time.Duration(tc.want-1) * NaiveWait; took < min {
				t.Errorf("took %v, want at least %v", took, min)
			}
			seen := map[string]bool{}
			for i, k := range keys {
				if i == 0 && k != "caller-key" || i > 0 && len(k) != 36 || seen[k] {
					t.Errorf("attempt %d key %q (keys %q): want the caller's, then fresh UUIDs", i+1, k, keys)
				}
				seen[k] = true
				if bodies[i] != string(PaymentBody("pay-1")) {
					t.Errorf("attempt %d body %q", i+1, bodies[i])
				}
			}
		})
	}
}

func bytesReader(ref string) io.Reader { return bytes.NewReader(PaymentBody(ref)) }
