package payretry

import (
	"cmp"
	"context"
	"math"
	"slices"
	"time"
)

// This file is the whole retry decision: one function from what a call knows
// and what one attempt showed to what happens next. It does no I/O, so every
// rule and invariant below is tested as tables (decide_test.go) and over
// random outcome sequences (invariants_test.go).

// state is what a call knows when one of its attempts ends.
type state struct {
	write      bool // the method is not safe: a second execution matters
	keyed      bool // the call carries an idempotency key
	unknown    bool // an earlier attempt may have executed the write: the key is pinned
	attempts   int  // attempts made, the one being decided included; replays not counted
	replays    int  // replayed answers walked through (see outcome.replayed)
	refreshed  bool // Policy.RefreshAuth ran in this call
	backoffs   int  // backoff waits made
	replayable bool // the body can be sent again
}

// outcome is what one attempt showed.
type outcome struct {
	class      Class
	status     int  // 0 when no response was received
	sent       bool // the request may have reached the provider; false: provably never left
	permanent  bool // a failure that no retry mends (a certificate that fails verification)
	compliance bool // the provider reports a compliance review or a request for information
	keyInUse   bool // a 409 saying that another request with the key is in flight
	// replayed: the provider says the answer is the one it stored for the
	// key (Idempotent-Replayed: true): history from an earlier call, such
	// as a process that died, not a fresh failure.
	replayed bool
	// stored: an answer from the provider itself, which it keeps under
	// the key (Policy.Stored), not a gateway's in front of it.
	stored bool
	cause  error // the error, when no response was received
	// retryAfter is the provider's Retry-After, when hasRetryAfter.
	retryAfter    time.Duration
	hasRetryAfter bool
}

// bounds are what the wait before a retry must fit in.
type bounds struct {
	left    time.Duration // until MaxElapsedTime or the context's deadline, whichever is sooner
	backoff time.Duration // the next backoff interval, jitter applied
	budget  bool          // the retry budget has a retry left (see retryBudget)
}

// decision is what happens after an attempt.
type decision struct {
	retry   bool
	wait    time.Duration
	source  WaitSource
	newKey  bool  // the retry carries a new idempotency key
	history bool  // o was a replay that moved the key on: the retry goes at once, and o does not count
	refresh bool  // call Policy.RefreshAuth before the retry
	unknown bool  // the call's outcome is unknown: a write may have executed
	reason  error // why no retry follows a failure; nil on success or retry
}

// decide returns what follows an attempt that ended with o. Every guarantee
// of the README's "What payretry guarantees" that concerns retries is kept
// here and nowhere else:
//
//   - the outcome, once unknown, stays unknown, and then the key never changes;
//   - a write without a key is retried only when it provably did not execute;
//   - a compliance review or RFI is never retried, nor a body that cannot be
//     replayed, nor more than MaxAttempts attempts made;
//   - no wait passes MaxRetryAfter, MaxElapsedTime or the context's deadline,
//     and no wait is shorter than the provider's Retry-After or the rule's
//     MinWait;
//   - a new key only after the provider's own stored answer (NewKey);
//   - a replay of a stored failure (history) moves on at once and costs no
//     attempt, wait or budget, at most MaxAttempts times;
//   - a retry needs the retry budget to have one left (it is paid when sent,
//     unless it waited for an outage probe: see call.throttle).
func (t *Transport) decide(s state, o outcome, b bounds) decision {
	if o.class == ClassSuccess {
		return decision{}
	}
	d := decision{unknown: s.unknown || t.leavesUnknown(s, o)}
	rule := t.rules[o.class]
	// The provider's stored answer to a key of an earlier call (history),
	// which asks for the next key: at most MaxAttempts are walked past.
	history := o.replayed && o.stored && rule.NewKey && s.keyed && !d.unknown && s.replays < t.p.MaxAttempts
	switch {
	case o.class == ClassCanceled:
		d.reason = cmp.Or(o.cause, context.Canceled)
	case !rule.Retry, o.permanent,
		len(rule.Statuses) > 0 && o.status != 0 && !slices.Contains(rule.Statuses, o.status),
		o.class == ClassUnauthorized && (t.p.RefreshAuth == nil || s.refreshed):
		d.reason = ErrNotRetryable
	case o.compliance:
		d.reason = ErrCompliance
	case s.write && !s.keyed && (d.unknown || o.sent && o.class != ClassUnauthorized):
		// Only a request that never left, or a 401, proves that a write
		// without a key did not execute.
		d.reason = ErrUnsafeRetry
	case s.attempts >= t.p.MaxAttempts && !history:
		d.reason = ErrRetriesExhausted
	case !s.replayable:
		d.reason = ErrBodyNotReplayable
	}
	if d.reason != nil {
		return d
	}
	if history {
		// History, not a fresh failure: the next key goes at once, and the
		// replay costs no attempt, no wait and no budget.
		return decision{retry: true, newKey: true, history: true}
	}

	wait, source := time.Duration(0), WaitNone
	d.refresh = o.class == ClassUnauthorized
	switch {
	case d.refresh && !o.hasRetryAfter:
		// at once, with the new credentials
	case o.hasRetryAfter:
		wait, source = o.retryAfter, WaitRetryAfter
		if rule.MinWait > wait {
			wait, source = rule.MinWait, WaitBackoff // never shorter than the rule asks
		}
	default:
		wait, source = b.backoff, WaitBackoff
		if rule.MaxWait > 0 {
			wait = min(wait, rule.MaxWait)
		}
		wait = max(wait, rule.MinWait)
	}
	switch {
	case o.hasRetryAfter && o.retryAfter > t.p.MaxRetryAfter, wait > b.left:
		// A longer Retry-After is neither waited out nor shortened.
		return decision{unknown: d.unknown, reason: ErrWaitTooLong}
	case !b.budget:
		return decision{unknown: d.unknown, reason: ErrRetryBudget}
	}
	d.retry, d.wait, d.source = true, wait, source
	d.newKey = rule.NewKey && s.keyed && !d.unknown && o.stored
	return d
}

// leavesUnknown reports whether o leaves the outcome of a write unknown: no
// answer after the request may have left, or an answer that does not settle
// it. A 5xx may come after the write executed (Verto API, Errors and
// Retries: "If you experience a 503 ... you might double-pay"), unless the
// provider stores it as the key's definitive answer and asks for a new key
// (NewKey); a 409 to a keyed request may mean that another request with the
// key is executing it.
func (t *Transport) leavesUnknown(s state, o outcome) bool {
	switch {
	case !s.write || !o.sent:
		return false
	case o.status == 0, o.class == ClassTimeout:
		return true
	case o.class == ClassServerError:
		return !(t.rules[ClassServerError].NewKey && o.stored)
	case s.keyed && (t.rules[o.class].OutcomeUnknown || o.class == ClassConflict && o.keyInUse):
		return true
	}
	return false
}

// backoff returns the nth backoff wait of a call (1 for the first):
// InitialInterval × Multiplier^(n-1), at most MaxInterval, with jitter from
// r in [0, 1): within ±RandomizationFactor of it, or only above it with
// JitterUpOnly.
func (p *Policy) backoff(n int, r float64) time.Duration {
	d := float64(p.InitialInterval) * math.Pow(p.Multiplier, float64(n-1))
	d = min(d, float64(p.MaxInterval))
	if f := p.RandomizationFactor; f > 0 {
		if p.JitterUpOnly {
			d += r * f * d
		} else {
			d += (2*r - 1) * f * d
		}
	}
	return time.Duration(d)
}
