package payretry

import (
	"cmp"
	"context"
	"math"
	"math/bits"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Limit is a client-side limit for one endpoint class of a provider, such as
// SmartRetry's "payments 100 requests/s". Every matching limit applies (one
// without Methods and Paths to all requests); the first with either names the scope.
type Limit struct {
	Name    string   // endpoint class, such as "payment"
	Methods []string // methods it covers; nil = any
	Paths   []string // path parts it covers: "/payments/sale" matches "/v1/payments/sale/ABC"; nil = any
	Rate    float64  // requests per second; 0 = no client-side bucket (the class only scopes signals)
	Burst   int      // token-bucket depth; 0 = Rate/10, at least 1
}

func (l *Limit) matches(r *http.Request) bool {
	return (len(l.Methods) == 0 || slices.Contains(l.Methods, r.Method)) &&
		(len(l.Paths) == 0 || slices.ContainsFunc(l.Paths, func(p string) bool { return strings.Contains(r.URL.Path, p) }))
}

// Limiter holds the pacing state of one or more Transports (README "Pacing
// and overload"). [NewLimiter] is the in-process one; the redislimit module
// shares the state across processes.
//
// Implementations must be safe for concurrent use. Scopes are strings such as
// "smartretry/payment"; limits are the request's client-side limits.
type Limiter interface {
	// Take asks to send one request in scope at now. 0 means it may go and its
	// place is taken; otherwise nothing is taken and the caller waits the
	// duration (or gives up) and asks again. 0 with WaitOutage makes it the probe.
	Take(ctx context.Context, scope string, limits []Limit, now time.Time) (time.Duration, WaitSource, error)
	// Observe records what one response (or failure) said for scope. The
	// Transport sets RetryAt for a 429 only and bounds every instant by
	// Policy.MaxRetryAfter.
	Observe(ctx context.Context, scope string, now time.Time, s Signal) error
}

// Pacing holds the numbers of payretry's pacing, so that a [Limiter] that
// keeps its state elsewhere (the redislimit module) paces as [NewLimiter]'s.
type Pacing struct {
	HoldMargin  time.Duration // added to a window's reset, so that the next window's first request arrives after it rolled
	DefaultHold time.Duration // the hold after a spent quota that says no reset time
	// A scope is down when OutageFailures of its last OutageWindow requests
	// failed (see Record); while it is down one probe goes out every
	// ProbeInterval, and the first that succeeds brings it up.
	OutageWindow   int // at most 32 (redislimit keeps the bits in Redis's 32-bit Lua integers)
	OutageFailures int
	ProbeInterval  time.Duration
}

// DefaultPacing returns the numbers of payretry's own pacing.
func DefaultPacing() Pacing {
	return Pacing{
		HoldMargin:     5 * time.Millisecond,
		DefaultHold:    time.Second,
		OutageWindow:   20,
		OutageFailures: 12,
		ProbeInterval:  100 * time.Millisecond,
	}
}

// Record adds one request's end to outcomes, the scope's last requests as
// bits (1 for a failure, the latest lowest), and reports whether the scope
// is now down.
func (p Pacing) Record(outcomes uint64, failed bool) (uint64, bool) {
	outcomes <<= 1
	if failed {
		outcomes |= 1
	}
	outcomes &= 1<<p.OutageWindow - 1
	return outcomes, bits.OnesCount64(outcomes) >= p.OutageFailures
}

var pacing = DefaultPacing() // the in-process limiter's

// NewLimiter returns the in-process [Limiter]. Share one between Transports
// that call the same provider account so that they pace together.
//
// It also has a method DownScopes() []string, which returns the scopes it
// holds as down (the provider failing), for metrics.
func NewLimiter() Limiter {
	return &localLimiter{}
}

type localLimiter struct {
	scopes  sync.Map // scope name -> *scopeState
	buckets sync.Map // provider + "/" + limit name -> *rate.Limiter
	// latest is the latest time a Take went by, in unix nanoseconds: a token
	// bucket given an earlier time would credit an interval twice.
	latest atomic.Int64
}

// scopeState is the pacing state of one scope.
type scopeState struct {
	// busy: something to enforce (see settle). On a quiet scope Take and a
	// plain success's Observe take no lock, and that success is not counted
	// for outage detection, where only a share of failures matters.
	busy     atomic.Bool
	adaptive AdaptiveRate // its Sent takes no lock, so lock-free Takes count too

	mu        sync.Mutex // guards the rest
	holdUntil time.Time  // a 429's Retry-After, a spent quota without a window

	// The provider's window, from its rate-limit fields.
	limit   int       // -1 unknown
	reset   time.Time // end of the current window; zero unknown
	sent    int       // requests sent in the current window
	srvUsed int       // limit - remaining, as the provider last said

	outcomes  uint64 // the last requests' ends (see Pacing.Record)
	down      bool
	nextProbe time.Time
}

func (l *localLimiter) scope(name string) *scopeState {
	v, ok := l.scopes.Load(name)
	if !ok {
		v, _ = l.scopes.LoadOrStore(name, &scopeState{limit: -1})
	}
	return v.(*scopeState)
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

// settle records whether anything is left to enforce at now. Call with mu held.
func (s *scopeState) settle(now time.Time) {
	s.busy.Store(now.Before(s.holdUntil) || s.limit >= 0 || s.adaptive.Limit() > 0 || s.down || s.outcomes != 0)
}

// plain reports whether a signal is a success that says nothing else.
func (sig *Signal) plain() bool {
	return sig.OK && !sig.Throttled && !sig.Failed && sig.Limit < 0 && sig.Remaining < 0 &&
		sig.Reset.IsZero() && sig.RetryAt.IsZero()
}

func (l *localLimiter) bucket(scope string, lim *Limit) *rate.Limiter {
	provider, _, _ := strings.Cut(scope, "/")
	key := provider + "/" + lim.Name
	if b, ok := l.buckets.Load(key); ok {
		return b.(*rate.Limiter)
	}
	burst := lim.Burst
	if burst <= 0 {
		burst = max(1, int(lim.Rate/10))
	}
	b, _ := l.buckets.LoadOrStore(key, rate.NewLimiter(rate.Limit(lim.Rate), burst))
	return b.(*rate.Limiter)
}

// notBefore returns now, or the latest time a Take went by if that is later.
func (l *localLimiter) notBefore(now time.Time) time.Time {
	n := now.UnixNano()
	for {
		latest := l.latest.Load()
		if n < latest {
			return time.Unix(0, latest)
		}
		if n == latest || l.latest.CompareAndSwap(latest, n) {
			return now
		}
	}
}

// Take implements [Limiter].
func (l *localLimiter) Take(_ context.Context, scope string, limits []Limit, now time.Time) (time.Duration, WaitSource, error) {
	s := l.scope(scope)
	if len(limits) == 0 && !s.busy.Load() {
		s.adaptive.Sent(now)
		return 0, WaitNone, nil
	}
	now = l.notBefore(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.settle(now)

	if now.Before(s.holdUntil) {
		return s.holdUntil.Sub(now), WaitRetryAfter, nil
	}
	if s.down && now.Before(s.nextProbe) {
		return s.nextProbe.Sub(now), WaitOutage, nil
	}
	if !s.reset.IsZero() && !now.Before(s.reset) {
		// The window rolled: the next response tells when the new one ends.
		// A limit of 0 held the scope until the reset, not for ever.
		s.reset, s.sent, s.srvUsed = time.Time{}, 0, 0
		if s.limit == 0 {
			s.limit = -1
		}
	}
	if s.limit >= 0 && max(s.sent, s.srvUsed) >= s.limit {
		if s.reset.IsZero() {
			s.reset = now.Add(pacing.DefaultHold)
		}
		return s.reset.Sub(now) + pacing.HoldMargin, WaitRateLimit, nil
	}
	aw := s.adaptive.Take(now)
	var bs [8]*rate.Limiter
	buckets := bs[:0]
	for i := range limits {
		if limits[i].Rate > 0 {
			buckets = append(buckets, l.bucket(scope, &limits[i]))
		}
	}
	if wait := takeAll(buckets, now, aw); wait > 0 {
		if aw == 0 {
			s.adaptive.Refund()
		}
		return wait, WaitRateLimit, nil
	}
	s.sent++
	s.adaptive.Sent(now)
	if s.down {
		s.nextProbe = now.Add(pacing.ProbeInterval)
		return 0, WaitOutage, nil
	}
	return 0, WaitNone, nil
}

// takeAll takes a token from every bucket at now, or none and returns the
// wait until each has one, at least wait. A call that loses the last token
// of a bucket shared with other scopes to a racing one waits for the next;
// the tokens it took are spent: the buckets err toward sending less.
func takeAll(buckets []*rate.Limiter, now time.Time, wait time.Duration) time.Duration {
	for _, b := range buckets {
		if tokens := b.TokensAt(now); tokens < 1 {
			wait = max(wait, time.Duration(math.Ceil((1-tokens)/float64(b.Limit())*float64(time.Second))))
		}
	}
	if wait > 0 {
		return wait
	}
	for _, b := range buckets {
		if !b.AllowN(now, 1) {
			return time.Duration(math.Ceil(float64(time.Second) / float64(b.Limit())))
		}
	}
	return 0
}

// Observe implements [Limiter].
func (l *localLimiter) Observe(_ context.Context, scope string, now time.Time, sig Signal) error {
	s := l.scope(scope)
	if !s.busy.Load() && sig.plain() {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.settle(now)

	s.holdTill(sig.RetryAt)
	if sig.Limit >= 0 {
		if s.limit < 0 {
			// The first word of a window: the sends of this second, made
			// while nothing was known, count in it.
			s.sent = max(s.sent, int(s.adaptive.secSent.Load()))
		}
		s.limit = sig.Limit
	}
	switch { // a reset in the past belongs to a window that already rolled
	case sig.Reset.After(now):
		if s.reset.IsZero() || sig.Reset.After(s.reset) {
			s.reset, s.srvUsed = sig.Reset, 0
		}
		if sig.Reset.Equal(s.reset) && sig.Remaining >= 0 && s.limit >= 0 {
			s.srvUsed = max(s.srvUsed, s.limit-sig.Remaining)
		}
		if sig.Remaining == 0 && s.limit < 0 {
			s.holdTill(sig.Reset) // spent, by a window whose size is not said
		}
	case sig.Reset.IsZero() && sig.Remaining == 0 && sig.RetryAt.IsZero():
		s.holdTill(now.Add(pacing.DefaultHold))
	}
	s.adaptive.Observe(now, sig)

	// Outage detection: any answer, even a 429, says the provider is up.
	switch {
	case sig.Failed:
		var down bool
		s.outcomes, down = pacing.Record(s.outcomes, true)
		if down && !s.down || s.down && sig.CoolDown > 0 { // down now, or a failed probe: a cool-down first
			s.down, s.nextProbe = true, now.Add(cmp.Or(sig.CoolDown, pacing.ProbeInterval))
		}
	case (sig.OK || sig.Throttled) && s.down:
		s.down, s.outcomes = false, 0
	case sig.OK || sig.Throttled:
		s.outcomes, _ = pacing.Record(s.outcomes, false)
	}
	return nil
}

// holdTill holds the scope until t, unless it is held longer. Call with mu held.
func (s *scopeState) holdTill(t time.Time) {
	if t.After(s.holdUntil) {
		s.holdUntil = t
	}
}
