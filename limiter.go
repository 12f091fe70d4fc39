package payretry

import (
	"context"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Limit is a client-side limit for one endpoint class of a provider (SmartRetry,
// seed 004_ca1457097c2eedaa.txt: "Payment operations (sale, capture, refund,
// void) 100 requests per second"). A request matches when its method and path
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
	// first is the first scope looked up: most Transports use one scope,
	// and this spares the map on every call.
	first atomic.Pointer[namedScope]

	buckets sync.Map // provider -> *sync.Map of limit name -> *rate.Limiter

	// latest is the latest time a Take went by, in unix nanoseconds. A
	// token bucket takes the time it is given as its own, so an earlier one
	// (a call that read the clock, then waited to be scheduled) would credit
	// an interval twice.
	latest atomic.Int64
}

// cacheLine is the size of a CPU cache line on the common platforms.
const cacheLine = 64

// scopeState is the pacing state of one scope.
type scopeState struct {
	// quiet: nothing to enforce (no hold, no known window, no adaptive rate,
	// no failures). Take and a plain success's Observe then take no lock.
	quiet atomic.Bool
	_     [cacheLine]byte // every call reads quiet: keep the counters' writes off its line

	// Sends in the current second and the rate of the previous one, to
	// measure the sending rate; atomic because quiet Takes count too.
	secStart atomic.Int64 // unix nanoseconds, see sendTime
	secSent  atomic.Int64
	prevSec  atomic.Int64
	_        [cacheLine]byte

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

type namedScope struct {
	name string
	s    *scopeState
}

func (l *localLimiter) scope(name string) *scopeState {
	first := l.first.Load()
	if first != nil && first.name == name {
		return first.s
	}
	var s *scopeState
	if v, ok := l.scopes.Load(name); ok {
		s = v.(*scopeState)
	} else {
		s = &scopeState{limit: -1}
		s.quiet.Store(true)
		v, _ := l.scopes.LoadOrStore(name, s)
		s = v.(*scopeState)
	}
	if first == nil {
		l.first.CompareAndSwap(nil, &namedScope{name, s})
	}
	return s
}

// sendTime returns the time of a send as countSend takes it: unix
// nanoseconds, from the time since origin. A time.Now value gives its time
// by the monotonic clock, as Transport.elapsed does, so that the two agree
// even after the machine slept; a time without a monotonic reading (a test's
// clock) gives its wall time.
func sendTime(sinceOrigin time.Duration) int64 {
	return origin.UnixNano() + int64(sinceOrigin)
}

// countSend counts a request sent at n (see sendTime), for the measured
// sending rate. A time a second or more before the current second's start
// starts a new second too: a caller of Take whose times are on another line
// (wall times, after the machine slept) makes the rate read low for a
// second, never stops it from being measured.
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
	sent := sendTime(now.Sub(origin)) // before notBefore, which drops the monotonic reading
	if len(limits) == 0 && s.quiet.Load() {
		s.countSend(sent)
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
		// tells when the new one ends.
		s.reset, s.sent, s.srvUsed = time.Time{}, 0, 0
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
	s.countSend(sent)
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

// scopeFor returns the limiter scope of a request and the client-side limits
// that apply to it.
func (t *Transport) scopeFor(r *http.Request) (string, []Limit) {
	if len(t.p.Limits) == 0 {
		return t.p.Name, nil
	}
	scope := t.p.Name
	var mask uint64
	for i := range t.p.Limits {
		l := &t.p.Limits[i]
		if !l.matches(r) {
			continue
		}
		mask |= 1 << i
		if scope == t.p.Name && l.specific() {
			scope = t.scopes[i]
		}
	}
	return scope, t.limitSet(mask)
}

// maxCachedLimits bounds the policies whose sets of limits are made once:
// a set per subset of at most this many limits.
const maxCachedLimits = 8

// limitSet returns the limits whose bits are set in mask. Sets are made once
// and shared by the calls that match them, when the policy has few enough
// limits to keep a set per subset.
func (t *Transport) limitSet(mask uint64) []Limit {
	if mask == 0 {
		return nil
	}
	if len(t.limitSets) > 0 {
		if set := t.limitSets[mask].Load(); set != nil {
			return *set
		}
	}
	var set []Limit
	for i := range t.p.Limits {
		if mask&(1<<i) != 0 {
			set = append(set, t.p.Limits[i])
		}
	}
	set = slices.Clip(set) // shared: an append must not write into it
	if len(t.limitSets) > 0 {
		t.limitSets[mask].Store(&set)
	}
	return set
}

// throttle waits until the limiter lets the next attempt go. outage reports
// that it waited for an outage probe (or is the probe), so that a retry costs
// no budget. The error, an *Error, says why no attempt can be made.
func (c *call) throttle() (outage bool, err error) {
	c.hold, c.holdSource = 0, WaitNone
	t := c.t
	if t.local == nil {
		c.waited = true // a shared limiter may take a while to answer
	} else {
		if c.state == nil {
			c.state = t.local.scope(c.scope)
		}
		if c.attempts == 0 && len(c.limits) == 0 && c.state.quiet.Load() {
			// What Take would do for a first attempt that no limit
			// applies to, when the scope has nothing to enforce, without
			// the wall clock it does not need then.
			at := c.start
			if c.waited {
				at = t.elapsed()
			}
			c.state.countSend(sendTime(at))
			return false, nil
		}
	}
	ctx := c.req.Context()
	now := t.now()
	for {
		d, src, lerr := t.p.Limiter.Take(ctx, c.scope, c.limits, now)
		if lerr != nil {
			// A shared limiter that fails must not stop payments: send
			// unpaced, and say so.
			c.logLimiter(lerr)
			return outage, nil
		}
		if src == WaitOutage {
			outage = true
		}
		if d <= 0 {
			return outage, nil
		}
		if src == WaitOutage && t.p.BreakerCoolDown > 0 {
			return outage, c.fail(ClassServerError, ErrCircuitOpen)
		}
		if c.tooLate(now, d) {
			if src == WaitOutage {
				return outage, c.fail(ClassServerError, ErrUnavailable)
			}
			e := c.fail(ClassRateLimited, ErrThrottled)
			e.RetryAt = now.Add(d)
			return outage, e
		}
		if y := time.Duration(c.attempts) * probeYield; src == WaitOutage && !c.tooLate(now, d+y) {
			// The next probe goes to the first call that asks once this
			// wait is over, and a failed probe costs its call an attempt.
			// A call asks later by probeYield for each attempt it made,
			// so that the probe goes to the call with the most attempts
			// left: a payment does not spend its last attempt on a
			// provider that may still be down while others could. It
			// yields only within its bounds: alone, it still probes.
			d += y
		}
		if serr := t.sleep(ctx, d); serr != nil {
			return outage, c.fail(ClassCanceled, serr)
		}
		c.hold += d
		c.holdSource = src
		c.waited = true
		now = t.now()
	}
}

// tooLate reports whether a wait of d from now would pass MaxElapsedTime or
// the context's deadline.
func (c *call) tooLate(now time.Time, d time.Duration) bool {
	if c.sinceStart(now)+d > c.t.p.MaxElapsedTime {
		return true
	}
	dl, ok := c.req.Context().Deadline()
	return ok && time.Until(dl) < d
}

// observe tells the limiter what an attempt said about the provider.
func (c *call) observe(resp *http.Response, class Class) {
	if class == ClassCanceled {
		return // says nothing about the provider
	}
	sig := Signal{Limit: -1, Remaining: -1}
	plain := class == ClassSuccess && c.attempts == 1 && !hasRateFields(resp.Header)
	if plain && c.state != nil && c.state.quiet.Load() {
		return // what Observe would do with it, without a clock read
	}
	now := c.t.now()
	if resp != nil && !plain {
		sig = ParseSignal(resp.Header, now)
		if resp.StatusCode < 400 {
			// RFC 9110 §10.2.3: with a 3xx, Retry-After is the delay before
			// following the redirect; with a 2xx it is a polling hint.
			// Neither says the quota is spent.
			sig.RetryAt = time.Time{}
		}
	}
	switch class {
	case ClassRateLimited:
		sig.Throttled = true
	case ClassServerError, ClassTimeout, ClassNetwork:
		sig.Failed = true
		sig.CoolDown = c.t.p.BreakerCoolDown
	default:
		sig.OK = true
	}
	if err := c.t.p.Limiter.Observe(c.req.Context(), c.scope, now, sig); err != nil {
		c.logLimiter(err)
	}
}

func (c *call) logLimiter(err error) {
	if l := c.t.p.Logger; l != nil {
		l.LogAttrs(c.req.Context(), slog.LevelWarn, "payretry: limiter failed; sending unpaced",
			slog.String("provider", c.t.p.Name), slog.String("error", err.Error()))
	}
}
