package payretry

import (
	"context"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Limit is a client-side limit for one endpoint class of a provider (SmartRetry
// docs, Rate limits: "Payment operations (sale, capture, refund, void) 100
// requests per second"). A request matches when its method and path
// match; every matching limit applies, so a limit without Methods and Paths
// is a combined limit over all endpoints. The first matching limit that has
// Methods or Paths also names the scope of the provider's own rate-limit
// signals for the request.
type Limit struct {
	Name    string   // endpoint class, such as "payment"
	Methods []string // methods it covers; nil = any
	Paths   []string // path parts it covers: "/payments/sale" matches "/v1/payments/sale/ABC"; nil = any
	Rate    float64  // requests per second; 0 = no client-side bucket (the class only scopes signals)
	Burst   int      // token-bucket depth; 0 = Rate/10, at least 1
}

func (l *Limit) matches(r *http.Request) bool {
	if len(l.Methods) > 0 && !slices.Contains(l.Methods, r.Method) {
		return false
	}
	if len(l.Paths) == 0 {
		return true
	}
	for _, p := range l.Paths {
		if strings.Contains(r.URL.Path, p) {
			return true
		}
	}
	return false
}

func (l *Limit) specific() bool { return len(l.Methods) > 0 || len(l.Paths) > 0 }

// Limiter holds the pacing state of one or more Transports: holds until a
// provider's window resets or its Retry-After ends, client-side token
// buckets, the adaptive rate that follows 429s, and outage detection. The
// in-process one, from [NewLimiter], is the default; an implementation may
// share the state across processes (see the redislimit module).
//
// Implementations must be safe for concurrent use. Scopes are strings such as
// "smartretry/payment"; limits are the client-side limits that apply to the
// request, keyed by their Name within the provider. Calls share the slice of
// limits: an implementation must not modify it.
type Limiter interface {
	// Take asks to send one request in scope at now. A zero duration means
	// the request may go and its place has been taken. Otherwise nothing is
	// taken: the caller waits the duration, or gives up, and asks again. The
	// source says why: WaitRateLimit (a spent window, a token bucket, the
	// adaptive rate), WaitRetryAfter (a hold from the provider) or
	// WaitOutage (the provider is failing and a probe is under way). A zero
	// duration with WaitOutage makes the caller the probe.
	Take(ctx context.Context, scope string, limits []Limit, now time.Time) (time.Duration, WaitSource, error)
	// Observe records what one response (or failure) said for scope. The
	// Transport leaves RetryAt zero for a 2xx or 3xx response: there a
	// Retry-After is a polling or redirect delay (RFC 9110 §10.2.3), not a
	// sign that the quota is spent.
	Observe(ctx context.Context, scope string, now time.Time, s Signal) error
}

const (
	// holdMargin is added to a window's reset so that the first request of
	// the new window reaches the provider after it has rolled.
	holdMargin = 5 * time.Millisecond
	// defaultHold is the hold after "Remaining: 0" without a reset time.
	defaultHold = time.Second
	// outageThreshold consecutive failures mark a scope as down.
	outageThreshold = 5
	// probeInterval separates the probes sent to a scope that is down.
	probeInterval = 100 * time.Millisecond
	// probeYield delays, per attempt already made, a call's next ask for
	// the probe (see call.throttle).
	probeYield = 5 * time.Millisecond
	// aimdDecrease multiplies the adaptive rate after a 429; each success
	// adds aimdIncrease of it back.
	aimdDecrease = 0.7
	aimdIncrease = 0.02
	minAdaptive  = 1.0 // requests per second
)

// NewLimiter returns the in-process [Limiter]. Share one between Transports
// that call the same provider account so that they pace together.
//
// It also has a method DownScopes() []string, which returns the scopes it
// holds as down (the provider failing), for metrics.
func NewLimiter() Limiter {
	return &localLimiter{}
}

// DownScopes returns the scopes held as down, sorted.
func (l *localLimiter) DownScopes() []string {
	var down []string
	l.scopes.Range(func(k, v any) bool {
		s := v.(*scopeState)
		s.mu.Lock()
		if s.down {
			down = append(down, k.(string))
		}
		s.mu.Unlock()
		return true
	})
	slices.Sort(down)
	return down
}

type localLimiter struct {
	scopes sync.Map // scope name -> *scopeState

	buckets sync.Map // provider -> *sync.Map of limit name -> *rate.Limiter

	// latest is the latest time a Take went by, in unix nanoseconds. A
	// token bucket takes the time it is given as its own, so an earlier one
	// (a call that read the clock, then waited to be scheduled) would credit
	// an interval twice.
	latest atomic.Int64
}

// scopeState is the pacing state of one scope.
type scopeState struct {
	// quiet: nothing to enforce (no hold, no known window, no adaptive rate,
	// no failures). Take and a plain success's Observe then take no lock.
	quiet atomic.Bool

	// Sends in the current second and the rate of the previous one, to
	// measure the sending rate; atomic because quiet Takes count too.
	secStart atomic.Int64 // unix nanoseconds
	secSent  atomic.Int64
	prevSec  atomic.Int64

	mu        sync.Mutex // guards the rest
	holdUntil time.Time  // Retry-After

	// The provider's window, from its rate-limit fields.
	limit   int       // -1 unknown
	reset   time.Time // end of the current window; zero unknown
	sent    int       // requests sent in the current window
	srvUsed int       // limit - remaining, as the provider last said

	// Adaptive rate (AIMD): nil until repeated 429s without a Retry-After.
	adaptive     *rate.Limiter
	throttles    int // 429s without guidance, each within a second of the last
	lastThrottle time.Time

	// Outage detection.
	failures  int
	down      bool
	nextProbe time.Time
}

func (l *localLimiter) scope(name string) *scopeState {
	if v, ok := l.scopes.Load(name); ok {
		return v.(*scopeState)
	}
	s := &scopeState{limit: -1}
	s.quiet.Store(true)
	v, _ := l.scopes.LoadOrStore(name, s)
	return v.(*scopeState)
}

// countSend counts a request sent at n (unix nanoseconds), for the measured
// sending rate. A time a second or more before the current second's start
// starts a new second too: a caller whose clock was turned back makes the
// rate read low for a second, never stops it from being measured.
func (s *scopeState) countSend(n int64) {
	start := s.secStart.Load()
	d := n - start
	if d < 0 {
		d = -d
	}
	if d >= int64(time.Second) && s.secStart.CompareAndSwap(start, n) {
		sent := s.secSent.Swap(0)
		if d >= 2*int64(time.Second) {
			sent = 0 // idle for a second or more, or another time line
		}
		s.prevSec.Store(sent)
	}
	s.secSent.Add(1)
}

// measured is the sending rate of the last whole second, in requests/s.
func (s *scopeState) measured() float64 {
	return float64(max(s.prevSec.Load(), s.secSent.Load()))
}

// calm reports whether nothing is left to enforce at now. Call with mu held.
func (s *scopeState) calm(now time.Time) bool {
	return !now.Before(s.holdUntil) && s.limit < 0 && s.adaptive == nil && s.failures == 0 && !s.down
}

// plain reports whether a signal is a success that says nothing else.
func (sig *Signal) plain() bool {
	return sig.OK && !sig.Throttled && !sig.Failed && sig.Limit < 0 && sig.Remaining < 0 &&
		sig.Reset.IsZero() && sig.RetryAt.IsZero()
}

func (l *localLimiter) bucket(scope string, lim *Limit) *rate.Limiter {
	provider := scopeProvider(scope)
	v, ok := l.buckets.Load(provider)
	if !ok {
		v, _ = l.buckets.LoadOrStore(provider, new(sync.Map))
	}
	named := v.(*sync.Map)
	if b, ok := named.Load(lim.Name); ok {
		return b.(*rate.Limiter)
	}
	burst := lim.Burst
	if burst <= 0 {
		burst = max(1, int(lim.Rate/10))
	}
	b, _ := named.LoadOrStore(lim.Name, rate.NewLimiter(rate.Limit(lim.Rate), burst))
	return b.(*rate.Limiter)
}

// notBefore returns now, or the latest time a Take went by if that is later.
func (l *localLimiter) notBefore(now time.Time) time.Time {
	n := now.UnixNano()
	for {
		latest := l.latest.Load()
		if n <= latest {
			if n == latest {
				return now
			}
			return time.Unix(0, latest)
		}
		if l.latest.CompareAndSwap(latest, n) {
			return now
		}
	}
}

func scopeProvider(scope string) string {
	if i := strings.IndexByte(scope, '/'); i >= 0 {
		return scope[:i]
	}
	return scope
}

// Take implements [Limiter].
func (l *localLimiter) Take(_ context.Context, scope string, limits []Limit, now time.Time) (time.Duration, WaitSource, error) {
	s := l.scope(scope)
	if len(limits) == 0 && s.quiet.Load() {
		s.countSend(now.UnixNano())
		return 0, WaitNone, nil
	}
	now = l.notBefore(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	defer func() { s.quiet.Store(s.calm(now)) }()

	if now.Before(s.holdUntil) {
		return s.holdUntil.Sub(now), WaitRetryAfter, nil
	}
	probe := false
	if s.down {
		if now.Before(s.nextProbe) {
			return s.nextProbe.Sub(now), WaitOutage, nil
		}
		probe = true
	}
	if !s.reset.IsZero() && !now.Before(s.reset) {
		// The window rolled: its count starts again; the next response
		// tells when the new one ends. A limit of 0 held the scope until
		// the reset, not for ever: a request may go to learn the next.
		s.reset, s.sent, s.srvUsed = time.Time{}, 0, 0
		if s.limit == 0 {
			s.limit = -1
		}
	}
	if s.limit >= 0 && max(s.sent, s.srvUsed) >= s.limit {
		if s.reset.IsZero() {
			s.reset = now.Add(defaultHold)
		}
		return s.reset.Sub(now) + holdMargin, WaitRateLimit, nil
	}
	// Token buckets: the adaptive rate, then the declared limits; all or
	// nothing.
	var bs [8]*rate.Limiter
	buckets := bs[:0]
	if s.adaptive != nil {
		buckets = append(buckets, s.adaptive)
	}
	for i := range limits {
		if limits[i].Rate > 0 {
			buckets = append(buckets, l.bucket(scope, &limits[i]))
		}
	}
	if wait := takeAll(buckets, now); wait > 0 {
		return wait, WaitRateLimit, nil
	}
	s.sent++
	s.countSend(now.UnixNano())
	if probe {
		s.nextProbe = now.Add(probeInterval)
		return 0, WaitOutage, nil
	}
	return 0, WaitNone, nil
}

// takeAll takes a token from every bucket at now, or none of them and
// returns the wait until each would have one.
func takeAll(buckets []*rate.Limiter, now time.Time) time.Duration {
	ready := true
	for _, b := range buckets {
		if b.TokensAt(now) < 1 {
			ready = false
			break
		}
	}
	if ready {
		// The common case, without reservations, which allocate.
		taken := 0
		for _, b := range buckets {
			if !b.AllowN(now, 1) {
				break // another call took the last token meanwhile
			}
			taken++
		}
		if taken == len(buckets) {
			return 0
		}
		// The tokens taken are spent: the buckets err toward sending
		// less. Reserve the lot as below.
	}
	var rs [8]*rate.Reservation
	res := rs[:0]
	var wait time.Duration
	for _, b := range buckets {
		r := b.ReserveN(now, 1)
		res = append(res, r)
		if !r.OK() {
			wait = max(wait, time.Second)
		} else {
			wait = max(wait, r.DelayFrom(now))
		}
	}
	if wait > 0 {
		for _, r := range res {
			r.CancelAt(now)
		}
	}
	return wait
}

// Observe implements [Limiter].
func (l *localLimiter) Observe(_ context.Context, scope string, now time.Time, sig Signal) error {
	s := l.scope(scope)
	if s.quiet.Load() && sig.plain() {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	defer func() { s.quiet.Store(s.calm(now)) }()

	if sig.RetryAt.After(s.holdUntil) {
		s.holdUntil = sig.RetryAt
	}
	if sig.Limit >= 0 {
		if s.limit < 0 {
			// The first word of a window: the sends of this second, made
			// while nothing was known, count in it.
			s.sent = max(s.sent, int(s.secSent.Load()))
		}
		s.limit = sig.Limit
	}
	// A reset in the past belongs to a window that already rolled.
	if sig.Reset.After(now) {
		if s.reset.IsZero() || sig.Reset.After(s.reset) {
			s.reset, s.srvUsed = sig.Reset, 0
		}
		if sig.Reset.Equal(s.reset) && sig.Remaining >= 0 && s.limit >= 0 {
			s.srvUsed = max(s.srvUsed, s.limit-sig.Remaining)
		}
		if sig.Remaining == 0 && s.limit < 0 && sig.Reset.After(s.holdUntil) {
			s.holdUntil = sig.Reset // spent, by a window whose size is not said
		}
	} else if sig.Reset.IsZero() && sig.Remaining == 0 && sig.RetryAt.IsZero() {
		if h := now.Add(defaultHold); h.After(s.holdUntil) {
			s.holdUntil = h
		}
	}

	// The adaptive rate answers repeated 429s that say nothing of when to
	// come back; a Retry-After or a reset time is followed exactly instead.
	blind := sig.Throttled && sig.RetryAt.IsZero() && sig.Reset.IsZero()
	if blind {
		if now.Sub(s.lastThrottle) > time.Second {
			s.throttles = 0
		}
		s.throttles++
		s.lastThrottle = now
	}
	switch {
	case blind && s.throttles >= 2:
		cur := s.measured()
		if s.adaptive != nil {
			cur = min(cur, float64(s.adaptive.Limit()))
		}
		next := max(minAdaptive, cur*aimdDecrease)
		if s.adaptive == nil {
			s.adaptive = rate.NewLimiter(rate.Limit(next), 1)
		} else {
			s.adaptive.SetLimitAt(now, rate.Limit(next))
		}
	case sig.OK && s.adaptive != nil:
		cur := float64(s.adaptive.Limit())
		next := cur + max(aimdIncrease*cur, 0.1)
		if next > 2*s.measured()+10 || math.IsInf(next, 1) {
			s.adaptive = nil // no longer binding
		} else {
			s.adaptive.SetLimitAt(now, rate.Limit(next))
		}
	}

	switch {
	case sig.Failed:
		s.failures++
		if s.failures >= outageThreshold {
			wait := sig.CoolDown
			if wait <= 0 {
				wait = probeInterval
			}
			if !s.down || sig.CoolDown > 0 {
				s.nextProbe = now.Add(wait)
			}
			s.down = true
		}
	case sig.OK || sig.Throttled:
		s.failures = 0
		s.down = false
	}
	return nil
}
