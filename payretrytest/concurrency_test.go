package payretrytest_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/payretry/payretry/payretrytest"
)

func TestConcurrentSameKeyExecutesOnce(t *testing.T) {
	conflicts := map[payretrytest.Provider]string{
		payretrytest.ORZCash:    `{"code":"IDEMPOTENCY_CONFLICT","message":"Request with this idempotency key is in progress"}`,
		payretrytest.Verto:      `{"errorCode":"IDEMPOTENCY_CONFLICT","message":"Request with this idempotency key is in progress"}`,
		payretrytest.KeyStone:   `{"detail":"Request with this idempotency key is in progress"}`,
		payretrytest.SmartRetry: `{"type":"https://api.smartretry.com/errors/idempotency-conflict","title":"Conflict","status":409,"detail":"Request with this idempotency key is in progress","reason_code":"IDEMPOTENCY_CONFLICT","transaction_id":"txn_000001"}`,
	}
	for _, p := range providers {
		t.Run(string(p), func(t *testing.T) {
			t.Parallel()
			s := payretrytest.NewServer(p, payretrytest.Options{
				Plan: payretrytest.FaultPlan{Seed: 1, Stall: 1, StallFor: 1500 * time.Millisecond},
			})
			defer s.Close()
			body, h := keyed(p, "ref-1", newUUID(t))

			first := make(chan reply, 1)
			go func() {
				r, err := do(context.Background(), s.Client(), http.MethodPost, s.PaymentURL(), body, h)
				assert.NoError(t, err)
				first <- r
			}()
			require.Eventually(t, func() bool { return s.Executions("ref-1") == 1 }, 5*time.Second, time.Millisecond)

			second := must(t, s, http.MethodPost, s.PaymentURL(), body, h)
			assert.Equal(t, http.StatusConflict, second.status)
			assert.JSONEq(t, conflicts[p], second.raw)

			assert.Equal(t, http.StatusCreated, (<-first).status, "the stalled request ends normally")
			third := must(t, s, http.MethodPost, s.PaymentURL(), body, h)
			assert.Less(t, third.status, 300, "then the key replays")
			assert.Equal(t, 1, s.Executions("ref-1"))
			assert.Equal(t, 1, s.Stats().Conflicts)
		})
	}
}

// payOnce is a client that follows provider p's documented retry rules: the
// same key after an unknown outcome, 5xx and 429, except on ORZCash, where a
// stored 5xx or 429 needs a new key. It stops at a 2xx.
func payOnce(ctx context.Context, c *http.Client, s *payretrytest.Server, p payretrytest.Provider, ref string, keyFor func() string) error {
	key := keyFor()
	for range 20 {
		body, h := keyed(p, ref, key)
		r, err := do(ctx, c, http.MethodPost, s.PaymentURL(), body, h)
		switch {
		case err != nil:
			continue // outcome unknown: same key
		case r.status < 300:
			return nil
		case r.status == http.StatusConflict:
			time.Sleep(5 * time.Millisecond) // in flight elsewhere: same key, later
		case p == payretrytest.ORZCash:
			key = keyFor()
		}
	}
	return fmt.Errorf("%s: no success", ref)
}

func TestHammer(t *testing.T) {
	const goroutines, payments = 16, 25
	for _, p := range providers {
		t.Run(string(p), func(t *testing.T) {
			t.Parallel()
			s := payretrytest.NewServer(p, payretrytest.Options{
				Plan:   payretrytest.FaultPlan{Seed: 9, FailBefore: 0.1, FailAfter: 0.1, RateLimited: 0.1, Reset: 0.05},
				Limits: payretrytest.Limits{Payment: -1, All: -1}, // SmartRetry's 100/s would throttle the hammer
			})
			defer s.Close()
			c := s.Client()
			sharedKeys := make([]string, payments)
			for i := range sharedKeys {
				sharedKeys[i] = newUUID(t)
			}
			var wg sync.WaitGroup
			for g := range goroutines {
				wg.Go(func() {
					for i := range payments {
						ref := fmt.Sprintf("g%d-%d", g, i)
						assert.NoError(t, payOnce(t.Context(), c, s, p, ref, func() string { return newUUID(t) }))
						// All goroutines also send the same request with the same key, once.
						body, h := keyed(p, fmt.Sprintf("shared-%d", i), sharedKeys[i])
						_, _ = do(t.Context(), c, http.MethodPost, s.PaymentURL(), body, h)
					}
				})
			}
			wg.Wait()

			assert.Zero(t, s.Duplicates())
			executed := 0
			for i := range payments {
				n := s.Executions(fmt.Sprintf("shared-%d", i))
				assert.LessOrEqual(t, n, 1)
				executed += n
			}
			assert.Equal(t, goroutines*payments+executed, len(s.Ledger()), "every payment executed once")
			st := s.Stats()
			assert.Greater(t, st.MaxConcurrent, 1)
			assert.Positive(t, st.Replays+st.Conflicts)
		})
	}
}
