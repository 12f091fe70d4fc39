package payretry

import "sync"

// retryBudget keeps retries a bounded fraction of a Transport's traffic, like
// gRPC's retryThrottling (see Policy.RetryBudgetRatio). A nil budget always has a retry.
type retryBudget struct {
	mu                   sync.Mutex
	tokens, ratio, burst float64
}

func newRetryBudget(ratio float64, burst int) *retryBudget {
	if ratio < 0 {
		return nil // off
	}
	return &retryBudget{tokens: float64(burst), ratio: ratio, burst: float64(burst)}
}

// add moves the balance by d, within [0, burst].
func (b *retryBudget) add(d float64) {
	if b != nil {
		b.mu.Lock()
		b.tokens = max(0, min(b.burst, b.tokens+d))
		b.mu.Unlock()
	}
}

// earn records a first attempt.
func (b *retryBudget) earn() {
	if b != nil {
		b.add(b.ratio)
	}
}

// refund gives back the token of a retry that succeeded.
func (b *retryBudget) refund() { b.add(1) }

// charge takes one token for a retry sent. Calls that decided together on
// the last token all go: the budget bounds retries over time, not each one.
func (b *retryBudget) charge() { b.add(-1) }

// has reports whether a retry could be paid for now.
func (b *retryBudget) has() bool {
	if b == nil {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.tokens >= 1
}
