// Command smartretry makes a few sales through payretry's SmartRetry preset
// against a loopback SmartRetry simulator that fails some of them, then sends
// a burst of sales that the preset paces under SmartRetry's rate limit.
//
//	go run ./examples/smartretry
//
// SmartRetry wants an Idempotency-Key on every POST, kept on every retry;
// retries 429 (after Retry-After) and 500/502/503/504 with a backoff from 1 s;
// and limits payment operations to 100 requests a second per API key. The
// preset does all of it; the caller only has to tell "failed" from "outcome
// unknown".
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/payretry/payretry"
	"github.com/payretry/payretry/examples/internal/demo"
	"github.com/payretry/payretry/payretrytest"
)

func main() {
	// The provider: a simulator that fails a third of the sale requests (5xx
	// before or after executing, a 2 s stall, a reset, a 429) and enforces
	// the documented rate limits. In production this is SmartRetry's base URL.
	sim := payretrytest.NewServer(payretrytest.SmartRetry, payretrytest.Options{Plan: payretrytest.FaultPlan{
		Seed: 12, FailBefore: 0.05, FailAfter: 0.1, Stall: 0.05, Reset: 0.1, RateLimited: 0.03,
	}})
	defer sim.Close()
	baseURL := sim.URL

	// The integration: the preset in an ordinary http.Client.
	policy := payretry.SmartRetry()
	policy.AttemptTimeout = 500 * time.Millisecond // a stalled attempt is abandoned and retried with the same key
	var verbose atomic.Bool
	verbose.Store(true)
	var attempts atomic.Int64
	logAttempt := demo.LogAttempts()
	policy.OnAttempt = func(a payretry.Attempt) { // optional: show or count every attempt
		attempts.Add(1)
		if verbose.Load() {
			logAttempt(a)
		}
	}
	transport, err := payretry.NewTransport(nil, policy)
	if err != nil {
		log.Fatal(err)
	}
	client := &http.Client{Transport: transport}

	// A few sales, one at a time; the last one by a caller that cannot wait.
	for i, ref := range []string{"ord-4001", "ord-4002", "ord-4003", "ord-4004", "ord-4005"} {
		timeout := 20 * time.Second
		if i == 4 {
			timeout = 300 * time.Millisecond
		}
		fmt.Printf("sale %s (%d cents, within %v):\n", ref, 4999+i, timeout)
		if id, err := sale(client, baseURL, ref, 4999+i, timeout); err == nil {
			fmt.Println("  -> executed:", id)
		} else {
			report(client, baseURL, ref, err)
		}
	}

	fmt.Printf("\nSmartRetry ledger: %d sales executed, %d executed twice\n", len(sim.Ledger()), sim.Duplicates())

	// A burst against a healthy SmartRetry: 200 sales from 50 goroutines at
	// once. The preset's client-side limit sends them at SmartRetry's
	// documented 100 a second, so the provider's limiter never refuses one.
	healthy := payretrytest.NewServer(payretrytest.SmartRetry, payretrytest.Options{})
	defer healthy.Close()
	verbose.Store(false)
	n0 := attempts.Load()
	start := time.Now()
	var wg sync.WaitGroup
	var succeeded, unknown, failed atomic.Int64
	refs := make(chan string)
	for range 50 {
		wg.Go(func() {
			for ref := range refs {
				_, err := sale(client, healthy.URL, ref, 1500, 20*time.Second)
				var perr *payretry.Error
				switch {
				case err == nil:
					succeeded.Add(1)
				case errors.As(err, &perr) && perr.OutcomeUnknown:
					unknown.Add(1)
				default:
					failed.Add(1)
				}
			}
		})
	}
	for i := range 200 {
		refs <- fmt.Sprintf("burst-%03d", i)
	}
	close(refs)
	wg.Wait()
	fmt.Printf("\nburst: 200 sales from 50 goroutines in %v: %d succeeded, %d failed, %d outcome unknown, %d attempts\n",
		time.Since(start).Round(10*time.Millisecond), succeeded.Load(), failed.Load(), unknown.Load(), attempts.Load()-n0)
	fmt.Printf("burst: 429s from SmartRetry's rate limiter: %d; ledger: %d sales executed, %d executed twice\n",
		healthy.Stats().RateLimited, len(healthy.Ledger()), healthy.Duplicates())
}

// apiKey is the example's SmartRetry API key, sent on every request.
const apiKey = "sk_test_example"

// sale makes one sale and returns SmartRetry's transaction id, or an error:
// a *payretry.Error whether or not a response came back.
func sale(client *http.Client, baseURL, ref string, cents int, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	body := fmt.Sprintf(`{"reference":%q,"amount":%d,"currency":"USD"}`, ref, cents)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+"/v1/payments/sale", strings.NewReader(body))
	if err != nil {
		log.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json") // payretry adds the Idempotency-Key
	req.Header.Set("X-Api-Key", apiKey)                // SmartRetry's limits are per API key

	resp, err := client.Do(req)
	if err != nil {
		return "", err // no response: wraps a *payretry.Error
	}
	defer resp.Body.Close()
	if err := payretry.CheckResponse(resp); err != nil { // nil for a 2xx
		return "", err
	}
	var s struct{ ID string }
	err = json.NewDecoder(resp.Body).Decode(&s)
	return s.ID, err
}

// report says how a sale that did not succeed ended, reconciling it when its
// outcome is unknown.
func report(client *http.Client, baseURL, ref string, err error) {
	var perr *payretry.Error
	switch {
	case errors.As(err, &perr) && perr.OutcomeUnknown:
		// The sale may have executed (a time-out, or a 409 for a key in
		// use): never send it again blindly. Ask SmartRetry's
		// status lookup, by reference.
		fmt.Printf("  -> outcome unknown (%v); reconcile key %s\n", perr.Class, perr.IdempotencyKey)
		statusURL := baseURL + payretrytest.StatusPath(payretrytest.SmartRetry, ref)
		demo.Reconcile(client, statusURL, http.Header{"X-Api-Key": {apiKey}})
	case errors.As(err, &perr):
		// A definitive answer: the sale did not execute. perr.Code is
		// SmartRetry's reason_code.
		fmt.Printf("  -> failed: %v\n", perr)
	default:
		fmt.Printf("  -> failed: %v\n", err)
	}
}
