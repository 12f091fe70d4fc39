package payretry

import (
	"sync"
	"sync/atomic"
	"time"
)

// AdaptiveRate paces a scope after repeated 429s that say nothing of when to
// come back: it lowers the rate below the measured sending rate and raises it
// with each success (AIMD). [NewLimiter]'s limiter and the redislimit module
// keep one per scope. Call Take before each request (Refund if it does not go
// after all), Sent when it goes, and Observe with each response.
//
// The zero value has no rate: every Take is free. It is safe for concurrent
// use; Sent takes no lock.
type AdaptiveRate struct {
	// Sends in the current second (from secStart, unix nanoseconds) and the
	// previous one; atomic, so that Sent takes no lock.
	secStart, secSent, prevSec atomic.Int64

	mu           sync.Mutex // guards the rest
	limit        float64    // requests per second; 0 = none
	next         time.Time  // when the next place is free
	throttles    int        // 429s without guidance, each within a second of the last
	lastThrottle time.Time
}

// Sent counts a request sent at now, to measure the sending rate. A time a
// second or more from the current second's start, even before it (a clock
// turned back), starts a new second.
func (a *AdaptiveRate) Sent(now time.Time) {
	n := now.UnixNano()
	start := a.secStart.Load()
	if d := max(n-start, start-n); d >= int64(time.Second) && a.secStart.CompareAndSwap(start, n) {
		sent := a.secSent.Swap(0)
		if d >= 2*int64(time.Second) {
			sent = 0 // idle for a second or more, or another time line
		}
		a.prevSec.Store(sent)
	}
	a.secSent.Add(1)
}

// measured is the sending rate of the last whole second, in requests/s.
func (a *AdaptiveRate) measured() float64 {
	return float64(max(a.prevSec.Load(), a.secSent.Load()))
}

// Observe moves the rate by what a response said at now. Two 429s without
// guidance within a second, and each further one, lower it to 0.7 of the
// measured rate or of the rate, at least 1/s; each success raises it by 2%
// (0.1/s at least) until it no longer binds. A 429 with a Retry-After or a reset moves nothing.
func (a *AdaptiveRate) Observe(now time.Time, sig Signal) {
	blind := sig.Throttled && sig.RetryAt.IsZero() && sig.Reset.IsZero()
	if !blind && !sig.OK {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case blind:
		if now.Sub(a.lastThrottle) > time.Second {
			a.throttles = 0
		}
		a.throttles++
		a.lastThrottle = now
		if a.throttles >= 2 {
			m := a.measured()
			if a.limit > 0 {
				m = min(m, a.limit)
			}
			a.set(now, max(1, 0.7*m))
		}
	case a.limit > 0:
		next := a.limit + max(0.02*a.limit, 0.1)
		if next > 2*a.measured()+10 {
			next = 0 // well above the measured rate: it no longer binds
		}
		a.set(now, next)
	}
}

// set changes the rate to limit at now; the wait for the next place scales
// with it, as a token bucket's would. Call with mu held.
func (a *AdaptiveRate) set(now time.Time, limit float64) {
	switch {
	case a.limit == 0:
		a.next = now
	case limit > 0:
		if wait := a.wait(now); wait > 0 {
			a.next = now.Add(time.Duration(float64(wait) * a.limit / limit))
		}
	}
	a.limit = limit
}

// wait returns how long until the next place is free at now. A next place
// more than one interval ahead belongs to another time line (the clock
// stepped back): it is moved to now. Call with mu held and a rate set.
func (a *AdaptiveRate) wait(now time.Time) time.Duration {
	if a.next.Sub(now) > time.Duration(float64(time.Second)/a.limit) {
		a.next = now
	}
	return a.next.Sub(now)
}

// Take takes a place for one request at now and returns 0, or returns how
// long until a place is free and takes nothing. Without a rate it returns 0.
func (a *AdaptiveRate) Take(now time.Time) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.limit == 0 {
		return 0
	}
	if wait := a.wait(now); wait > 0 {
		return wait
	}
	a.next = now.Add(time.Duration(float64(time.Second) / a.limit))
	return 0
}

// Refund gives back the place that a Take which returned 0 took, when the
// request does not go after all (another limit made it wait).
func (a *AdaptiveRate) Refund() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.limit > 0 {
		a.next = a.next.Add(-time.Duration(float64(time.Second) / a.limit))
	}
}

// Limit returns the rate in requests per second, 0 when there is none.
func (a *AdaptiveRate) Limit() float64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.limit
}
