// Command verto pays a few payouts through payretry's Verto preset against a
// loopback Verto simulator that fails some of them.
//
//	go run ./examples/verto
//
// Verto wants an Idempotency-Key on every write, kept on every retry, and a
// Vfx-Correlation-Id per logical call; it asks for 5-10 s before retrying a
// 5xx and forbids retrying an open compliance review (RFI). The preset does
// all of it; the caller only has to tell "failed" from "outcome unknown".
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
	// The provider: a simulator that fails half of the payout requests (5xx
	// before or after executing, a 2 s stall, a reset, a 429). In production
	// this is Verto's base URL.
	sim := payretrytest.NewServer(payretrytest.Verto, payretrytest.Options{Plan: payretrytest.FaultPlan{
		Seed: 8, FailBefore: 0.1, FailAfter: 0.15, Stall: 0.1, Reset: 0.1, RateLimited: 0.05,
	}})
	defer sim.Close()
	baseURL := sim.URL

	// The integration: the preset in an ordinary http.Client.
	policy := payretry.Verto()
	policy.AttemptTimeout = 500 * time.Millisecond // a stalled attempt is abandoned and retried with the same key
	// Verto asks for 5-10 s before retrying a 5xx; this example waits 0.5-1 s
	// so that it finishes quickly. Keep the preset's wait in production.
	rule := policy.Rules[payretry.ClassServerError]
	rule.MinWait, rule.MaxWait = 500*time.Millisecond, time.Second
	policy.Rules[payretry.ClassServerError] = rule
	policy.OnAttempt = demo.LogAttempts() // optional: show every attempt
	transport, err := payretry.NewTransport(nil, policy)
	if err != nil {
		log.Fatal(err)
	}
	client := &http.Client{Transport: transport}

	for i, ref := range []string{"po-2001", "po-2002", "po-2003", "rfi-2004", "po-2005", "po-2006"} {
		timeout := 15 * time.Second
		if i == 5 {
			timeout = 300 * time.Millisecond // a caller that cannot wait for a slow provider
		}
		payout(client, baseURL, ref, 12000+500*i, timeout)
		if attempts := sim.Attempts(ref); len(attempts) > 1 {
			fmt.Printf("  (Verto saw %d requests with %d Vfx-Correlation-Id)\n", len(attempts), correlationIDs(attempts))
		}
	}

	fmt.Printf("\nVerto ledger: %d payouts executed, %d executed twice\n", len(sim.Ledger()), sim.Duplicates())
}

// payout makes one payout and says how it ended.
func payout(client *http.Client, baseURL, ref string, amount int, timeout time.Duration) {
	fmt.Printf("payout %s (%d cents, within %v):\n", ref, amount, timeout)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	body := fmt.Sprintf(`{"reference":%q,"amount":%d,"currency":"EUR"}`, ref, amount)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+"/v1/payouts", strings.NewReader(body))
	if err != nil {
		log.Fatal(err)
	}
	// payretry adds the Idempotency-Key and the Vfx-Correlation-Id.
	req.Header.Set("Content-Type", "application/json")

	resp, err := client.Do(req)
	if err == nil {
		defer resp.Body.Close()
		err = payretry.CheckResponse(resp) // nil for a 2xx
		if err == nil {
			var p struct{ ID string }
			_ = json.NewDecoder(resp.Body).Decode(&p)
			fmt.Printf("  -> executed: %s (%d %s)\n", p.ID, resp.StatusCode, http.StatusText(resp.StatusCode))
			return
		}
	}
	var perr *payretry.Error
	switch {
	case errors.As(err, &perr) && perr.OutcomeUnknown:
		// The payout may have executed: never send it again blindly. Ask
		// Verto's status lookup, by reference.
		fmt.Printf("  -> outcome unknown (%v); reconcile key %s\n", perr.Class, perr.IdempotencyKey)
		demo.Reconcile(client, baseURL+payretrytest.StatusPath(payretrytest.Verto, ref), nil)
	case errors.As(err, &perr):
		// A definitive answer: the payout did not execute. perr.Code is
		// Verto's errorCode (RFI_REQUIRED, INSUFFICIENT_FUNDS, ...).
		fmt.Printf("  -> failed: %v\n", perr)
	default:
		fmt.Printf("  -> failed: %v\n", err)
	}
}

// correlationIDs counts the distinct Vfx-Correlation-Id values the simulator
// received for one payout: payretry makes one per logical call.
func correlationIDs(attempts []payretrytest.Attempt) int {
	seen := map[string]bool{}
	for _, a := range attempts {
		seen[a.CorrelationID] = true
	}
	return len(seen)
}
