package redislimit

import (
	"sync"
	"time"

	"github.com/payretry/payretry"
)

// scopeState is what one replica keeps of a scope between Redis calls: the
// key, its own adaptive rate, the success it will tell Redis with its next
// Take (see Limiter.Observe), whether Redis said the scope was quiet at the
// last call, a hold or spent window Redis reported, until it ends, and when
// its requests waiting for a token may ask again (see gate).
type scopeState struct {
	key      string // the scope's hash in Redis
	adaptive payretry.AdaptiveRate

	mu sync.Mutex
	// quiet: at the last reply, no failure was among the scope's last
	// requests in Redis and it was not down. Only then may a success wait
	// for the next Take.
	quiet bool
	// pending: the n successes not yet told to Redis, merged into one
	// signal (the latest window's limit and reset, its lowest remaining);
	// at is when the latest of them came.
	pending payretry.Signal
	n       int
	at      time.Time
	// notBefore: Redis answered a hold or a spent window that lasts until
	// then (on this replica's clock); src is the wait's source.
	notBefore time.Time
	src       payretry.WaitSource
	// gates: per set of token buckets, when this replica's requests may
	// ask Redis for a token again (see gate).
	gates []bucketGate
}

// bucketGate holds the requests of one replica that need the same token
// buckets until their next token is due.
type bucketGate struct {
	names    []string      // the buckets: names of the limits with a rate
	open     time.Time     // none asks before; zero: open
	interval time.Duration // the slowest bucket's emission interval
}

// deferrable reports whether a signal may wait for the next Take: a success
// that holds nobody (no Retry-After, the window not spent) and counts no
// failure. Only a quiet scope defers it (see Limiter.Observe).
func deferrable(sig payretry.Signal) bool {
	return sig.OK && !sig.Failed && !sig.Throttled && sig.RetryAt.IsZero() && sig.Remaining != 0
}

// keep keeps a deferrable signal observed at now for the next Take. It
// reports false, keeping nothing, when the scope was not quiet at the last
// reply: then the success must reach Redis at once, to count among the last
// requests before the next failure does, or to end an outage for every
// replica.
func (s *scopeState) keep(sig payretry.Signal, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.quiet {
		return false
	}
	s.merge(sig, now, 1)
	return true
}

// merge adds n successes, the latest observed at now, to the pending ones.
// s.mu is held.
func (s *scopeState) merge(sig payretry.Signal, now time.Time, n int) {
	if s.n == 0 {
		s.pending, s.n, s.at = sig, n, now
		return
	}
	s.n += n
	p := &s.pending
	if sig.Limit >= 0 {
		p.Limit = sig.Limit
	}
	switch {
	case sig.Reset.After(p.Reset):
		p.Reset, p.Remaining = sig.Reset, sig.Remaining
	case sig.Reset.Equal(p.Reset) && sig.Remaining >= 0 && (p.Remaining < 0 || sig.Remaining < p.Remaining):
		p.Remaining = sig.Remaining
	}
	if now.After(s.at) {
		s.at = now
	}
}

// takePending removes and returns the pending successes, merged, and how
// many they are (0: none).
func (s *scopeState) takePending() (sig payretry.Signal, at time.Time, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sig, at, n = s.pending, s.at, s.n
	s.n = 0
	return sig, at, n
}

// restore puts back the n pending successes that a failed Take could not
// deliver. Telling Redis a success twice does little harm (every window
// field is a maximum or a replacement; a success only shifts a 0 into the
// outcomes, or ends an outage that it ended already), so a Take that failed
// after Redis ran it does little harm.
func (s *scopeState) restore(sig payretry.Signal, at time.Time, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.merge(sig, at, n)
}

// known returns the wait of a hold or spent window Redis reported, if it
// lasts past now.
func (s *scopeState) known(now time.Time) (time.Duration, payretry.WaitSource, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.notBefore.IsZero() || !now.Before(s.notBefore) {
		return 0, payretry.WaitNone, false
	}
	return s.notBefore.Sub(now), s.src, true
}

// answered records what Redis replied to a call made at now: whether the
// scope is quiet, and a hold or spent window (src srcRetryAfter or
// srcWindow) that lasts wait from now. Those two only end later when more
// is learnt: a hold is never shortened, and a spent window lasts until its
// reset, which no later response brings forward. So until then the replica
// answers its own Takes, and the Redis call of each waiting request is
// spared. Token-bucket waits are not kept: they depend on the limits of the
// request, and the adaptive rate is the replica's own anyway. Outage waits
// are not kept either: a successful probe ends them at once.
func (s *scopeState) answered(now time.Time, wait time.Duration, src int64, quiet bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.quiet = quiet
	if wait <= 0 || (src != srcRetryAfter && src != srcWindow) {
		return
	}
	if until := now.Add(wait); until.After(s.notBefore) {
		s.notBefore, s.src = until, waitSource(src)
	}
}

// observed records the quiet flag of an Observe's reply.
func (s *scopeState) observed(quiet bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.quiet = quiet
}

// gate reports whether a request for the buckets of limits may ask Redis
// at now, and if not, how long it waits first. Redis said when the buckets'
// next token is due (see gated): until then the replica answers its own
// requests, and when it is due, one of them asks and the others wait one
// emission interval or until its answer, whichever is sooner. Without it,
// every waiting request of every replica asks when a token is due and all
// but one are told to wait again: a round trip each per token. With it,
// each replica asks about once per token, and a token still goes as soon as
// it is due, to whichever replica asks first; one replica alone still gets
// every token. It only ever delays a request, never sends one the buckets
// would refuse.
func (s *scopeState) gate(limits []payretry.Limit, now time.Time) (time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.gateOf(limits)
	if g == nil || g.open.IsZero() {
		return 0, true
	}
	if now.Before(g.open) {
		return g.open.Sub(now), false
	}
	g.open = now.Add(g.interval)
	return 0, true
}

// gated records Redis's answer to a request for the buckets of limits made
// at now: their next token is due next from now, 0 when one is left.
func (s *scopeState) gated(limits []payretry.Limit, now time.Time, next time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.gateOf(limits)
	if next <= 0 {
		if g != nil {
			g.open = time.Time{}
		}
		return
	}
	if g == nil {
		var interval time.Duration
		names := make([]string, 0, len(limits))
		for i := range limits {
			if r := limits[i].Rate; r > 0 {
				names = append(names, limits[i].Name)
				interval = max(interval, time.Duration(float64(time.Second)/r))
			}
		}
		if len(names) == 0 {
			return
		}
		s.gates = append(s.gates, bucketGate{names: names, interval: interval})
		g = &s.gates[len(s.gates)-1]
	}
	g.open = now.Add(next)
}

// gateOf returns the gate of the buckets of limits, or nil. s.mu is held.
func (s *scopeState) gateOf(limits []payretry.Limit) *bucketGate {
	for i := range s.gates {
		g := &s.gates[i]
		n := 0
		for j := range limits {
			if limits[j].Rate <= 0 {
				continue
			}
			if n == len(g.names) || g.names[n] != limits[j].Name {
				n = -1
				break
			}
			n++
		}
		if n == len(g.names) {
			return g
		}
	}
	return nil
}
