package payretry_test

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/payretry/payretry"
)

// A provider preset in an ordinary http.Client: the first attempt meets a 503,
// the retry carries the same idempotency key and succeeds.
func Example() {
	var mu sync.Mutex
	var keys []string
	provider := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		if len(keys) == 1 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"id":"pay_1","status":"executed"}`)
	}))
	defer provider.Close()

	transport, err := payretry.NewTransport(nil, payretry.SmartRetry())
	if err != nil {
		log.Fatal(err)
	}
	client := &http.Client{Transport: transport}

	resp, err := client.Post(provider.URL+"/v1/payments/sale", "application/json",
		strings.NewReader(`{"amount":49.99,"currency":"USD"}`))
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)

	fmt.Println(resp.StatusCode, string(body))
	fmt.Println("attempts:", len(keys), "same key:", keys[0] == keys[1] && keys[0] != "")
	// Output:
	// 201 {"id":"pay_1","status":"executed"}
	// attempts: 2 same key: true
}

// A policy of your own for a provider without a preset: retry 503 and
// time-outs, keep the key in a header of your choice, and watch every attempt.
func ExamplePolicy() {
	calls := 0
	provider := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		if calls < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer provider.Close()

	policy := payretry.Policy{
		Name:              "acme",
		MaxAttempts:       3,
		InitialInterval:   10 * time.Millisecond,
		MaxInterval:       50 * time.Millisecond,
		AttemptTimeout:    2 * time.Second,
		IdempotencyHeader: "X-Acme-Idempotency",
		Rules: map[payretry.Class]payretry.Rule{
			payretry.ClassServerError: {Retry: true, Statuses: []int{503}},
			payretry.ClassTimeout:     {Retry: true},
			payretry.ClassNetwork:     {Retry: true},
		},
		OnAttempt: func(a payretry.Attempt) {
			fmt.Printf("attempt %d: %s %d, retry=%v (%s)\n", a.Number, a.Class, a.StatusCode, a.Retry, a.WaitSource)
		},
	}
	transport, err := payretry.NewTransport(nil, policy)
	if err != nil {
		log.Fatal(err)
	}
	resp, err := (&http.Client{Transport: transport}).Post(provider.URL, "application/json", strings.NewReader(`{}`))
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println("final:", resp.StatusCode)
	// Output:
	// attempt 1: server error 503, retry=true (backoff)
	// attempt 2: server error 503, retry=true (backoff)
	// attempt 3: success 200, retry=false (none)
	// final: 200
}

// CheckResponse turns a non-2xx answer into an *Error with the provider's own
// code and message, and leaves the body readable.
func ExampleCheckResponse() {
	provider := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Vfx-Api-Call-Id", "call-77")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"errorCode":"ROUTE_NOT_AVAILABLE","message":"Region blocked."}`)
	}))
	defer provider.Close()

	transport, _ := payretry.NewTransport(nil, payretry.Verto())
	resp, err := (&http.Client{Transport: transport}).Post(provider.URL+"/v1/payouts", "application/json",
		strings.NewReader(`{"amount":100}`))
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()

	var perr *payretry.Error
	if errors.As(payretry.CheckResponse(resp), &perr) {
		fmt.Println(perr.Class, perr.Code, perr.Message, perr.RequestID, perr.Attempts)
	}
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(len(body) > 0)
	// Output:
	// forbidden ROUTE_NOT_AVAILABLE Region blocked. call-77 1
	// true
}

// Policy.RefreshAuth renews a bearer token after a 401 and the retry carries
// it (Verto and KeyStone ask for this).
func ExamplePolicy_refreshAuth() {
	provider := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer fresh" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	defer provider.Close()

	policy := payretry.KeyStone()
	policy.RefreshAuth = func(req *http.Request) error {
		req.Header.Set("Authorization", "Bearer fresh") // from your token source
		return nil
	}
	transport, _ := payretry.NewTransport(nil, policy)
	req, _ := http.NewRequest(http.MethodPost, provider.URL+"/v1/settlements", strings.NewReader(`{"amount":5}`))
	req.Header.Set("Authorization", "Bearer expired")
	resp, err := (&http.Client{Transport: transport}).Do(req)
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode)
	// Output: 201
}
