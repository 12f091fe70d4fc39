// Command keystone creates a few settlements through payretry's KeyStone
// preset against a loopback KeyStone simulator that fails some of them.
//
//	go run ./examples/keystone
//
// KeyStone takes its idempotency key as a field of the JSON body,
// "idempotency_key", and answers a repeat of a created settlement with 200 and
// the same body. The preset puts a key in the body and keeps it on every
// retry; the caller only has to tell "failed" from "outcome unknown".
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
	// The provider: a simulator that fails half of the settlement requests
	// (5xx before or after executing, a 2 s stall, a reset, a 429). In
	// production this is KeyStone's base URL.
	sim := payretrytest.NewServer(payretrytest.KeyStone, payretrytest.Options{Plan: payretrytest.FaultPlan{
		Seed: 9, FailBefore: 0.1, FailAfter: 0.15, Stall: 0.1, Reset: 0.1, RateLimited: 0.05,
	}})
	defer sim.Close()
	baseURL := sim.URL

	// The integration: the preset in an ordinary http.Client.
	policy := payretry.KeyStone()
	policy.AttemptTimeout = 500 * time.Millisecond // a stalled attempt is abandoned and retried with the same key
	policy.OnAttempt = demo.LogAttempts()          // optional: show every attempt
	transport, err := payretry.NewTransport(nil, policy)
	if err != nil {
		log.Fatal(err)
	}
	client := &http.Client{Transport: transport}

	payments := []struct {
		ref, currency string
		timeout       time.Duration
	}{
		{"stl-3001", "EUR", 10 * time.Second},
		{"stl-3002", "EUR", 10 * time.Second},
		{"stl-3003", "GBP", 10 * time.Second},
		{"stl-3004", "XXX", 10 * time.Second}, // a currency KeyStone does not settle: 422, not retried
		{"stl-3005", "EUR", 10 * time.Second},
		{"stl-3006", "EUR", 300 * time.Millisecond}, // a caller that cannot wait for a slow provider
	}
	for i, p := range payments {
		settle(client, baseURL, p.ref, 50000+1000*i, p.currency, p.timeout)
	}

	fmt.Printf("\nKeyStone ledger: %d settlements executed, %d executed twice\n", len(sim.Ledger()), sim.Duplicates())
}

// settle creates one settlement and says how it ended.
func settle(client *http.Client, baseURL, ref string, amount int, currency string, timeout time.Duration) {
	fmt.Printf("settlement %s (%d %s cents, within %v):\n", ref, amount, currency, timeout)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// payretry adds "idempotency_key" to this body.
	body := fmt.Sprintf(`{"reference":%q,"amount":%d,"currency":%q}`, ref, amount, currency)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+"/v1/settlements", strings.NewReader(body))
	if err != nil {
		log.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")

	resp, err := client.Do(req)
	if err == nil {
		defer resp.Body.Close()
		err = payretry.CheckResponse(resp) // nil for a 2xx
		if err == nil {
			var s struct{ ID string }
			_ = json.NewDecoder(resp.Body).Decode(&s)
			fmt.Printf("  -> executed: %s (%d %s)\n", s.ID, resp.StatusCode, http.StatusText(resp.StatusCode))
			if resp.StatusCode == http.StatusOK {
				fmt.Println("     an earlier attempt had created it; the retry with the same key got it back")
			}
			return
		}
	}
	var perr *payretry.Error
	switch {
	case errors.As(err, &perr) && perr.OutcomeUnknown:
		// The settlement may have executed: never send it again blindly. Ask
		// KeyStone's status lookup, by reference.
		fmt.Printf("  -> outcome unknown (%v); reconcile key %s\n", perr.Class, perr.IdempotencyKey)
		demo.Reconcile(client, baseURL+payretrytest.StatusPath(payretrytest.KeyStone, ref), nil)
	case errors.As(err, &perr):
		// A definitive answer: the settlement did not execute. perr.Message
		// is KeyStone's detail.
		fmt.Printf("  -> failed: %v\n", perr)
	default:
		fmt.Printf("  -> failed: %v\n", err)
	}
}
