package payretry

import "sync"

// retryBudget keeps retries a bounded fraction of a Transport's traffic, in the
// spirit of gRPC's retryThrottling and the AWS SDK's retry quota: every first
// attempt earns ratio tokens, up to burst; every retry costs one, given back
// when the retry succeeds (a retry that works adds no load worth bounding).
// When no whole token is left, failures are returned at once instead of
// retried. First attempts are never blocked by it. During an outage, where
// retries fail, they are about ratio of the first attempts.
type retryBudget struct {
	mu     sync.Mutex
	tokens float64
	ratio  float64
	burst  float64
}

func newRetryBudget(ratio float64, burst int) *retryBudget {
	if ratio < 0 {
		return nil // disabled
	}
	return &retryBudget{tokens: float64(burst), ratio: ratio, burst: float64(burst)}
}

// earn records a first attempt.
func (b *retryBudget) earn() {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.tokens = min(b.burst, b.tokens+b.ratio)
	b.mu.Unlock()
}

// spend takes one token for a retry, or reports that none is left.
func (b *retryBudget) spend() bool {
	if b == nil {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// refund gives back the token of a retry that succeeded.
func (b *retryBudget) refund() {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.tokens = min(b.burst, b.tokens+1)
	b.mu.Unlock()
}

// has reports whether a retry could be paid for now.
func (b *retryBudget) has() bool {
	if b == nil {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.tokens >= 1
}
