package redislimit

import (
	"sync"
	"time"

	"github.com/payretry/payretry"
	"golang.org/x/time/rate"
)

// adaptiveSet keeps the adaptive rate (AIMD) of payretry's in-process
// limiter per replica: it answers repeated 429s that say nothing of when to
// come back by lowering the replica's sending rate below its measured rate,
// and raises it again with each success, by the root's own arithmetic
// (payretry.Pacing's Decrease and Increase). Each replica measures and
// lowers its own rate, so together they lower the combined rate by the same
// factor; what the provider says outright (a Retry-After, a window's reset
// and remaining) is shared through Redis instead.
type adaptiveSet struct {
	pacing payretry.Pacing

	mu     sync.Mutex
	scopes map[string]*adaptiveState
}

type adaptiveState struct {
	lim          *rate.Limiter // nil until repeated 429s without guidance
	throttles    int
	lastThrottle time.Time
	// sends of this replica in the current and previous second
	secStart         time.Time
	secSent, prevSec int
}

func (a *adaptiveSet) state(scope string) *adaptiveState {
	if a.scopes == nil {
		a.scopes = map[string]*adaptiveState{}
	}
	s := a.scopes[scope]
	if s == nil {
		s = &adaptiveState{}
		a.scopes[scope] = s
	}
	return s
}

// reserve takes a place in the scope's adaptive rate at now, if it has one.
// It returns the wait before that place and the reservation, which the
// caller cancels unless the request goes.
func (a *adaptiveSet) reserve(scope string, now time.Time) (time.Duration, *rate.Reservation) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.scopes[scope]
	if s == nil || s.lim == nil {
		return 0, nil
	}
	r := s.lim.ReserveN(now, 1)
	if !r.OK() {
		return time.Second, r
	}
	return r.DelayFrom(now), r
}

// sent counts a request of this replica, to measure its rate.
func (a *adaptiveSet) sent(scope string, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.state(scope)
	if now.Sub(s.secStart) >= time.Second {
		s.prevSec, s.secSent = s.secSent, 0
		if now.Sub(s.secStart) >= 2*time.Second {
			s.prevSec = 0
		}
		s.secStart = now
	}
	s.secSent++
}

// observe follows payretry's localLimiter.Observe for the adaptive rate.
func (a *adaptiveSet) observe(scope string, now time.Time, sig payretry.Signal) {
	blind := sig.Throttled && sig.RetryAt.IsZero() && sig.Reset.IsZero()
	if !blind && !sig.OK {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.scopes[scope]
	if s == nil {
		if !blind {
			return
		}
		s = a.state(scope)
	}
	if blind {
		if now.Sub(s.lastThrottle) > time.Second {
			s.throttles = 0
		}
		s.throttles++
		s.lastThrottle = now
	}
	switch {
	case blind && s.throttles >= 2:
		cur := 0.0 // none yet
		if s.lim != nil {
			cur = float64(s.lim.Limit())
		}
		next := a.pacing.Decrease(cur, s.measured())
		if s.lim == nil {
			s.lim = rate.NewLimiter(rate.Limit(next), 1)
		} else {
			s.lim.SetLimitAt(now, rate.Limit(next))
		}
	case sig.OK && s.lim != nil:
		if next, binds := a.pacing.Increase(float64(s.lim.Limit()), s.measured()); binds {
			s.lim.SetLimitAt(now, rate.Limit(next))
		} else {
			s.lim = nil
		}
	}
}

// measured is the replica's sending rate over the last whole second, in
// requests per second.
func (s *adaptiveState) measured() float64 { return float64(max(s.prevSec, s.secSent)) }
