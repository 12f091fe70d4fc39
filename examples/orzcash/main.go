// Command orzcash pays a few transfers through payretry's ORZCash preset
// against a loopback ORZCash simulator that fails some of them.
//
//	go run ./examples/orzcash
//
// ORZCash stores every response under its Idempotency-Key, 500s included, so a
// retry after a 5xx or a 429 needs a new key; after a time-out or a reset the
// first request may have executed, so the retry keeps the key. The preset does
// both; the caller only has to tell "failed" from "outcome unknown".
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"strings"
	"time"

	"github.com/payretry/payretry"
	"github.com/payretry/payretry/examples/internal/demo"
	"github.com/payretry/payretry/payretrytest"
)

func main() {
	// The provider: a simulator that fails half of the transfer requests
	// (500/503 before executing, a reset after executing, a 2 s stall, a 429).
	// In production this is ORZCash's base URL.
	sim := payretrytest.NewServer(payretrytest.ORZCash, payretrytest.Options{Plan: payretrytest.FaultPlan{
		Seed: 11, FailBefore: 0.15, FailAfter: 0.15, Stall: 0.1, RateLimited: 0.1,
	}})
	defer sim.Close()
	baseURL := sim.URL

	// The integration: the preset in an ordinary http.Client.
	policy := payretry.ORZCash()
	policy.AttemptTimeout = 500 * time.Millisecond // a stalled attempt is abandoned and retried with the same key
	policy.OnAttempt = demo.LogAttempts()          // optional: show every attempt
	transport, err := payretry.NewTransport(nil, policy)
	if err != nil {
		log.Fatal(err)
	}
	client := &http.Client{Transport: transport}

	for i, ref := range []string{"inv-1001", "inv-1002", "inv-1003", "inv-1004", "inv-1005", "inv-1006"} {
		timeout := 10 * time.Second
		if i == 5 {
			timeout = 300 * time.Millisecond // a caller that cannot wait for a slow provider
		}
		transfer(client, baseURL, ref, 2500+100*i, timeout)
	}

	fmt.Printf("\nORZCash ledger: %d transfers executed, %d executed twice\n", len(sim.Ledger()), sim.Duplicates())
}

// transfer makes one transfer and says how it ended.
func transfer(client *http.Client, baseURL, ref string, amount int, timeout time.Duration) {
	fmt.Printf("transfer %s (%d cents, within %v):\n", ref, amount, timeout)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	body := fmt.Sprintf(`{"reference":%q,"amount":%d,"currency":"EUR"}`, ref, amount)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+"/v1/transfers", strings.NewReader(body))
	if err != nil {
		log.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json") // payretry adds the Idempotency-Key

	resp, err := client.Do(req)
	if err == nil {
		defer resp.Body.Close()
		err = payretry.CheckResponse(resp) // nil for a 2xx
		if err == nil {
			var t struct{ ID string }
			_ = json.NewDecoder(resp.Body).Decode(&t)
			fmt.Printf("  -> executed: %s (%d %s)\n", t.ID, resp.StatusCode, http.StatusText(resp.StatusCode))
			return
		}
	}
	var perr *payretry.Error
	switch {
	case errors.As(err, &perr) && perr.OutcomeUnknown:
		// The transfer may have executed: never send it again blindly. Ask
		// ORZCash's status lookup, by reference.
		fmt.Printf("  -> outcome unknown (%v); reconcile key %s\n", perr.Class, perr.IdempotencyKey)
		demo.Reconcile(client, baseURL+payretrytest.StatusPath(payretrytest.ORZCash, ref), nil)
	case errors.As(err, &perr):
		// A definitive answer: the transfer did not execute.
		fmt.Printf("  -> failed: %v\n", perr)
	default:
		fmt.Printf("  -> failed: %v\n", err)
	}
}
