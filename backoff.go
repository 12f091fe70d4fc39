package payretry

import (
	"context"
	"net/http"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// waitFor returns the wait before the next attempt, or the reason not to
// make it.
func (c *call) waitFor(class Class, resp *http.Response) (time.Duration, WaitSource, error) {
	p := &c.t.p
	if class == ClassUnauthorized {
		return 0, WaitNone, nil
	}
	now := c.t.now()
	var d time.Duration
	src := WaitBackoff
	if resp != nil {
		if ra, ok := retryAfter(resp.Header, now); ok {
			if ra > p.MaxRetryAfter {
				return ra, WaitRetryAfter, ErrWaitTooLong
			}
			d, src = ra, WaitRetryAfter
		}
	}
	if src == WaitBackoff {
		d = c.backoff()
		rule := c.t.rules[class]
		if rule.MaxWait > 0 {
			d = min(d, rule.MaxWait)
		}
		d = max(d, rule.MinWait)
	}
	if c.tooLate(now, d) {
		return d, src, ErrWaitTooLong
	}
	return d, src, nil
}

// backoff returns the next exponential interval with jitter drawn from the
// transport's random seam.
func (c *call) backoff() time.Duration {
	p := &c.t.p
	if c.bo == nil {
		c.bo = &backoff.ExponentialBackOff{
			InitialInterval: p.InitialInterval,
			Multiplier:      p.Multiplier,
			MaxInterval:     p.MaxInterval,
			Stop:            backoff.Stop,
			Clock:           backoff.SystemClock,
		}
		c.bo.Reset()
	}
	d := c.bo.NextBackOff()
	if f := p.RandomizationFactor; f > 0 {
		delta := f * float64(d)
		d = time.Duration(float64(d) - delta + c.t.rand()*2*delta)
	}
	return d
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}
