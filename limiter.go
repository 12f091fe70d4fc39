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

// Limiter holds the pacing state of one or more Transports: holds while a
// provider account's quota is spent or a 429's Retry-After runs, client-side
// token buckets, the adaptive rate that follows 429s, and outage detection.
// It holds a scope only on evidence about the account (see [Pacing]). The
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
	// Transport sets RetryAt for a 429 only (a Retry-After on any other
	// status is that request's own wait), and bounds every instant in the
	// signal by Policy.MaxRetryAfter.
	Observe(ctx context.Context, scope string, now time.Time, s Signal) error
}

// Pacing holds the numbers of payretry's pacing, for a [Limiter] that keeps
// its state elsewhere (the redislimit module) and must pace as the
// in-process one does: [DefaultPacing] returns them.
//
// A scope is held only on evidence about the provider account: its quota
// headers saying the window is spent (until its reset, plus HoldMargin, or
// DefaultHold when no reset is given), a 429 (until its Retry-After; without
// one, repeated 429s lower an [AdaptiveRate]), or requests failing across the
// scope (down; see Down). A Retry-After on a 5xx or any other status is that
// request's own wait and holds nothing else.
type Pacing struct {
	HoldMargin  time.Duration // added to a window's reset, so that the next window's first request arrives after it rolled
	DefaultHold time.Duration // the hold after a spent quota that says no reset time
	// A scope is down when OutageFailures of its last OutageWindow
	// requests failed (5xx, time-out, network): a failure rate over the
	// last requests, as Finagle's failure accrual judges it, rather than a
	// run of failures, which interleaved successes at any concurrency break
	// up, or a rate over time, which the successes before an outage dilute.
	// While it is down one probe goes out every ProbeInterval; the first
	// that succeeds brings it up. See Record.
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

// pacing is the in-process limiter's.
var pacing = DefaultPacing()

// probeYield delays, per attempt already made, a call's next ask for the
// outage probe (see call.throttle).
const probeYield = 5 * time.Millisecond

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

	// latest is the latest time a Take went by, in unix nanoseconds. A
	// token bucket takes the time it is given as its own, so an earlier one
	// (a call that read the clock, then waited to be scheduled) would credit
	// an interval twice.
	latest atomic.Int64
}

// scopeState is the pacing state of one scope.
type scopeState struct {
	// quiet: nothing to enforce (no hold, no known window, no adaptive rate,
	// no recent failure). Take and a plain success's Observe then take no
	// lock; such a success is then not counted for outage detection, where
	// only a share of failures matters.
	quiet atomic.Bool

	adaptive AdaptiveRate // its Sent takes no lock, so quiet Takes count too

	mu        sync.Mutex // guards the rest
	holdUntil time.Time  // a 429's Retry-After, a spent quota without a window

	// The provider's window, from its rate-limit fields.
	limit   int       // -1 unknown
	reset   time.Time // end of the current window; zero unknown
	sent    int       // requests sent in the current window
	srvUsed int       // limit - remaining, as the provider last said

	// Outage detection: the last requests' ends (see Pacing.Record).
	outcomes  uint64
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

// calm reports whether nothing is left to enforce at now. Call with mu held.
func (s *scopeState) calm(now time.Time) bool {
	return !now.Before(s.holdUntil) && s.limit < 0 && s.adaptive.Limit() == 0 && !s.down && s.outcomes == 0
}

// plain reports whether a signal is a success that says nothing else.
func (sig *Signal) plain() bool {
	return sig.OK && !sig.Throttled && !sig.Failed && sig.Limit < 0 && sig.Remaining < 0 &&
		sig.Reset.IsZero() && sig.RetryAt.IsZero()
}

func (l *localLimiter) bucket(scope string, lim *Limit) *rate.Limiter {
	key := scopeProvider(scope) + "/" + lim.Name
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
		s.adaptive.Sent(now)
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
			s.reset = now.Add(pacing.DefaultHold)
		}
		return s.reset.Sub(now) + pacing.HoldMargin, WaitRateLimit, nil
	}
	// The adaptive rate, then the declared limits' token buckets.
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
	if probe {
		s.nextProbe = now.Add(pacing.ProbeInterval)
		return 0, WaitOutage, nil
	}
	return 0, WaitNone, nil
}

// takeAll takes a token from every bucket at now, or none of them and
// returns the wait until each would have one, at least wait (another
// limit's). Two calls racing for the last token may both lose it: the
// buckets err toward sending less.
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
		b.AllowN(now, 1)
	}
	return 0
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
			s.sent = max(s.sent, int(s.adaptive.secSent.Load()))
		}
		s.limit = sig.Limit
	}
	// A reset in the past belongs to a window that already rolled.
	switch {
	case sig.Reset.After(now):
		if s.reset.IsZero() || sig.Reset.After(s.reset) {
			s.reset, s.srvUsed = sig.Reset, 0
		}
		if sig.Reset.Equal(s.reset) && sig.Remaining >= 0 && s.limit >= 0 {
			s.srvUsed = max(s.srvUsed, s.limit-sig.Remaining)
		}
		if sig.Remaining == 0 && s.limit < 0 && sig.Reset.After(s.holdUntil) {
			s.holdUntil = sig.Reset // spent, by a window whose size is not said
		}
	case sig.Reset.IsZero() && sig.Remaining == 0 && sig.RetryAt.IsZero():
		if h := now.Add(pacing.DefaultHold); h.After(s.holdUntil) {
			s.holdUntil = h
		}
	}
	s.adaptive.Observe(now, sig)
	s.judge(now, sig)
	return nil
}

// judge counts an outcome for outage detection and moves the scope down or
// up. Call with mu held.
func (s *scopeState) judge(now time.Time, sig Signal) {
	switch {
	case sig.Failed:
		var down bool
		s.outcomes, down = pacing.Record(s.outcomes, true)
		wait := cmp.Or(sig.CoolDown, pacing.ProbeInterval)
		switch {
		case s.down && sig.CoolDown > 0:
			s.nextProbe = now.Add(wait) // a failed probe: the next after a cool-down
		case !s.down && down:
			s.down, s.nextProbe = true, now.Add(wait)
		}
	case sig.OK || sig.Throttled:
		// An answer, even a 429: the provider is up.
		if s.down {
			s.down, s.outcomes = false, 0
			return
		}
		s.outcomes, _ = pacing.Record(s.outcomes, false)
	}
}
