package payretry

import (
	"log/slog"
	"net/http"
	"time"
)

// probeYield is how much later, per attempt made, a call asks for the outage
// probe: a failed probe costs an attempt, so the call with most left gets it.
const probeYield = 5 * time.Millisecond

// scopeFor returns the limiter scope of a request and the client-side limits
// that apply to it: the scope of the first matching limit with Methods or Paths.
func (t *Transport) scopeFor(r *http.Request) (scope string, limits []Limit) {
	scope = t.p.Name
	for i, l := range t.p.Limits {
		if l.matches(r) {
			limits = append(limits, l)
			if scope == t.p.Name && (len(l.Methods) > 0 || len(l.Paths) > 0) {
				scope = t.scopes[i]
			}
		}
	}
	return scope, limits
}

// throttle waits from now until the limiter lets the next attempt go, and
// returns the time then, or why no attempt can be made (an *Error).
func (c *call) throttle(now time.Time) (time.Time, error) {
	t := c.t
	c.hold, c.held = 0, WaitNone
	ctx := c.req.Context()
	outage := false
	for {
		d, src, err := t.p.Limiter.Take(ctx, c.scope, c.limits, now)
		if err != nil {
			c.logLimiter(err) // a shared limiter that fails must not stop payments
			break
		}
		outage = outage || src == WaitOutage
		if d <= 0 {
			break
		}
		if src == WaitOutage && t.p.BreakerCoolDown > 0 {
			return now, c.fail(ClassServerError, ErrCircuitOpen)
		}
		if d > c.left(now) {
			if src == WaitOutage {
				return now, c.fail(ClassServerError, ErrUnavailable)
			}
			e := c.fail(ClassRateLimited, ErrThrottled)
			e.RetryAt = now.Add(d)
			return now, e
		}
		if y := time.Duration(c.st.attempts) * probeYield; src == WaitOutage && d+y <= c.left(now) {
			d += y // only within the call's bounds
		}
		if err := t.sleep(ctx, d); err != nil {
			return now, c.fail(ClassCanceled, err)
		}
		c.hold, c.held = c.hold+d, src
		now = t.now()
	}
	// A retry is paid when it goes, unless it waited for an outage probe or
	// walks past a replayed answer: then it adds no load.
	c.paid = c.sends > 0 && !outage && !c.free && t.budget != nil
	c.free = false
	if c.paid {
		t.budget.charge()
	}
	return now, nil
}

// observe tells the limiter what attempt a said about the provider.
func (c *call) observe(a *try) {
	switch {
	case a.o.class == ClassCanceled, a.o.replayed:
		return // says nothing about the provider now
	case a.o.class == ClassRateLimited && a.key != "" && a.key == c.throttled:
		// A second 429 to the same key may be the provider's stored answer
		// replayed (ORZCash stores every response): no new evidence.
		return
	case a.o.class == ClassRateLimited:
		c.throttled = a.key
	}
	now := a.start.Add(a.took)
	sig := Signal{Limit: -1, Remaining: -1}
	if a.resp != nil {
		sig = ParseSignal(a.resp.Header, now)
	}
	switch a.o.class {
	case ClassRateLimited:
		sig.Throttled = true
	case ClassServerError, ClassTimeout, ClassNetwork:
		sig.Failed = true
		sig.CoolDown = c.t.p.BreakerCoolDown
	default:
		sig.OK = true
	}
	if a.o.class != ClassRateLimited || sig.Remaining > 0 {
		// A Retry-After holds the account only on a 429 whose quota fields do
		// not say requests are left; otherwise it is the request's own wait or
		// a redirect or polling hint (README "Pacing and overload").
		sig.RetryAt = time.Time{}
	}
	sig = sig.bound(now, c.t.p.MaxRetryAfter)
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
