package demo_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/payretry/payretry"
	"github.com/payretry/payretry/examples/internal/demo"
	"github.com/payretry/payretry/payretrytest"
)

// A call that succeeds at once prints nothing; the attempts of one that does
// not say whether each retry kept the key.
func ExampleLogAttempts() {
	logAttempt := demo.LogAttempts()
	logAttempt(payretry.Attempt{Number: 1, Class: payretry.ClassSuccess, StatusCode: 201, IdempotencyKey: "0a0a0a0a-first"})

	logAttempt(payretry.Attempt{
		Number: 1, Class: payretry.ClassServerError, StatusCode: 503, Code: "SERVICE_UNAVAILABLE",
		IdempotencyKey: "1b1b1b1b-second", Retry: true, Wait: time.Second, WaitSource: payretry.WaitRetryAfter,
	})
	logAttempt(payretry.Attempt{
		Number: 2, Class: payretry.ClassTimeout, IdempotencyKey: "1b1b1b1b-second",
		Retry: true, Wait: 250400 * time.Microsecond, WaitSource: payretry.WaitBackoff,
	})
	logAttempt(payretry.Attempt{
		Number: 3, Class: payretry.ClassRateLimited, StatusCode: 429,
		IdempotencyKey: "2c2c2c2c-third", Reason: payretry.ErrRetryBudget,
	})
	// Output:
	//     attempt 1: server error 503 SERVICE_UNAVAILABLE, key 1b1b1b1b…; retry in 1s (retry-after)
	//     attempt 2: timeout (no response), key 1b1b1b1b… (same key); retry in 250ms (backoff)
	//     attempt 3: rate limited 429, key 2c2c2c2c… (new key); no retry: payretry: retry budget spent
}

// Reconcile prints the verdict of the provider's status lookup.
func ExampleReconcile() {
	sim := payretrytest.NewServer(payretrytest.KeyStone, payretrytest.Options{})
	defer sim.Close()
	body := `{"reference":"stl-1","amount":1000,"currency":"EUR","idempotency_key":"k-1"}`
	resp, err := sim.Client().Post(sim.PaymentURL(), "application/json", strings.NewReader(body))
	if err != nil {
		panic(err)
	}
	resp.Body.Close()

	demo.Reconcile(sim.Client(), sim.StatusURL("stl-1"), nil)
	demo.Reconcile(sim.Client(), sim.StatusURL("stl-2"), nil)
	// Output:
	//   -> reconciled: it executed; do not pay again
	//   -> reconciled: not executed; safe to pay again
}

func TestLookup(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		want     bool
		wantErr  bool
		wantCode string // of the *payretry.Error, "" for another error
	}{
		{"executed", http.StatusOK, true, false, ""},
		{"not executed", http.StatusNotFound, false, false, ""},
		{"server error", http.StatusServiceUnavailable, false, true, "SERVICE_UNAVAILABLE"},
		{"other 2xx", http.StatusNoContent, false, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodGet || r.Header.Get("X-Api-Key") != "sk_test" {
					w.WriteHeader(http.StatusBadRequest)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				if tt.wantCode != "" {
					_, _ = w.Write([]byte(`{"errorCode":"SERVICE_UNAVAILABLE","message":"try later"}`))
				}
			}))
			defer srv.Close()

			got, err := demo.Lookup(context.Background(), srv.Client(), srv.URL+"/status/x", http.Header{"X-Api-Key": {"sk_test"}})
			if got != tt.want || (err != nil) != tt.wantErr {
				t.Fatalf("Lookup = %v, %v; want %v, error %v", got, err, tt.want, tt.wantErr)
			}
			if tt.wantCode == "" {
				return
			}
			var perr *payretry.Error
			if !errors.As(err, &perr) || perr.Code != tt.wantCode {
				t.Fatalf("Lookup error %v (%T), want a *payretry.Error with code %s from the body", err, err, tt.wantCode)
			}
		})
	}
}

func TestLookupNoAnswer(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()

	if got, err := demo.Lookup(context.Background(), http.DefaultClient, url, nil); got || err == nil {
		t.Fatalf("Lookup on a closed server = %v, %v; want false and an error", got, err)
	}
}
