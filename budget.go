package payretry

import (
	"math"
	"sync/atomic"
)

// retryBudget keeps retries a bounded fraction of a Transport's traffic, in the
// spirit of gRPC's retryThrottling and the AWS SDK's retry quota: every first
// attempt earns ratio tokens, up to burst; every retry costs one, given back
// when the retry succeeds (a retry that works adds no load worth bounding).
// When no whole token is left, failures are returned at once instead of
// retried. First attempts are never blocked by it. During an outage, where
// retries fail, they are about ratio of the first attempts.
//
// Tokens are kept in millionths in one atomic integer: the first attempt of
// every call touches it, so it takes no lock.
type retryBudget struct {
	micro atomic.Int64
	ratio int64 // per first attempt, in millionths
	burst int64 // in millionths
}

const budgetUnit = 1_000_000

func newRetryBudget(ratio float64, burst int) *retryBudget {
	if ratio < 0 {
		return nil // disabled
	}
	b := &retryBudget{ratio: int64(math.Round(ratio * budgetUnit)), burst: int64(burst) * budgetUnit}
	b.micro.Store(b.burst)
	return b
}

// add moves the balance by d, within [0, burst].
func (b *retryBudget) add(d int64) {
	for {
		old := b.micro.Load()
		next := max(0, min(b.burst, old+d))
		if next == old || b.micro.CompareAndSwap(old, next) {
			return
		}
	}
}

// earn records a first attempt.
func (b *retryBudget) earn() {
	if b != nil && b.ratio > 0 {
		b.add(b.ratio)
	}
}

// refund gives back the token of a retry that succeeded.
func (b *retryBudget) refund() {
	if b != nil {
		b.add(budgetUnit)
	}
}

// charge takes one token for a retry sent. Calls that decided together on
// the last token all go: the budget bounds retries over time, not each one.
func (b *retryBudget) charge() {
	if b != nil {
		b.add(-budgetUnit)
	}
}

// has reports whether a retry could be paid for now.
func (b *retryBudget) has() bool {
	return b == nil || b.micro.Load() >= budgetUnit
}
