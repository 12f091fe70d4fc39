package payretry

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	blind429 = Signal{Limit: -1, Remaining: -1, Throttled: true}
	okSignal = Signal{Limit: -1, Remaining: -1, OK: true}
)

// adaptiveAt returns an AdaptiveRate that measured sends requests in the
// second before t0+1s.
func adaptiveAt(sends int) *AdaptiveRate {
	var a AdaptiveRate
	for i := range sends {
		a.Sent(t0.Add(time.Duration(i) * time.Second / time.Duration(sends)))
	}
	return &a
}

func TestAdaptiveRateObserve(t *testing.T) {
	with := func(sig Signal, f func(*Signal)) Signal { f(&sig); return sig }
	retryAfter := with(blind429, func(s *Signal) { s.RetryAt = t0.Add(2 * time.Second) })
	reset := with(blind429, func(s *Signal) { s.Reset, s.Remaining = t0.Add(2*time.Second), 0 })
	failed := Signal{Limit: -1, Remaining: -1, Failed: true}
	type obs struct {
		at  time.Duration // after t0+1s
		sig Signal
	}
	cases := []struct {
		name  string
		sends int
		obs   []obs
		want  float64 // requests/s; 0 = no rate
	}{
		{"one 429 without guidance is not a trend", 20, []obs{{0, blind429}}, 0},
		{"two within a second: 0.7 of the measured rate", 20, []obs{{0, blind429}, {time.Second, blind429}}, 14},
		{"two more than a second apart", 20, []obs{{0, blind429}, {1001 * time.Millisecond, blind429}}, 0},
		{"a third lowers it from the rate, below the measured one", 20, []obs{{0, blind429}, {0, blind429}, {0, blind429}}, 9.8},
		{"at least 1/s", 1, []obs{{0, blind429}, {0, blind429}}, 1},
		{"a 429 with a Retry-After does not count", 20, []obs{{0, blind429}, {0, retryAfter}, {0, retryAfter}}, 0},
		{"a 429 with a reset does not count", 20, []obs{{0, blind429}, {0, reset}}, 0},
		{"a success raises it by 2%", 20, []obs{{0, blind429}, {0, blind429}, {0, okSignal}}, 14.28},
		{"a success without a rate sets none", 20, []obs{{0, okSignal}}, 0},
		{"a failure does not move it", 20, []obs{{0, blind429}, {0, blind429}, {0, failed}}, 14},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := adaptiveAt(c.sends)
			now := t0.Add(time.Second)
			for _, o := range c.obs {
				now = t0.Add(time.Second + o.at)
				a.Observe(now, o.sig)
			}
			assert.InDelta(t, c.want, a.Limit(), 1e-9)
			assert.Zero(t, a.Take(now), "the first place is free")
			if c.want == 0 {
				assert.Zero(t, a.Take(now), "no rate, no wait")
				return
			}
			assert.InDelta(t, float64(time.Second)/c.want, float64(a.Take(now)), float64(time.Microsecond), "the next place is 1/rate later")
		})
	}
}

// Successes raise the rate until it no longer binds, above twice the
// measured rate plus 10/s (here 50/s): it is then dropped.
func TestAdaptiveRateDropsOnceItNoLongerBinds(t *testing.T) {
	a := adaptiveAt(20)
	now := t0.Add(time.Second)
	a.Observe(now, blind429)
	a.Observe(now, blind429)
	for range 64 { // 14/s × 1.02^64 ≈ 49.7/s
		a.Observe(now, okSignal)
	}
	assert.InDelta(t, 49.7, a.Limit(), 0.1)
	a.Observe(now, okSignal) // ≈ 50.7/s: dropped
	assert.Zero(t, a.Limit())
	assert.Zero(t, a.Take(now))
	assert.Zero(t, a.Take(now), "no rate, no wait")
}

// Take takes a place only when one is free; Refund gives it back; a change
// of rate scales the wait for the next place.
func TestAdaptiveRateTakeAndRefund(t *testing.T) {
	a := adaptiveAt(20)
	now := t0.Add(time.Second)
	a.Observe(now, blind429)
	a.Observe(now, blind429) // 14/s
	require.InDelta(t, 14, a.Limit(), 1e-9)
	interval := time.Duration(float64(time.Second) / a.Limit())
	require.Zero(t, a.Take(now))
	assert.Equal(t, interval, a.Take(now))
	assert.Equal(t, interval-time.Millisecond, a.Take(now.Add(time.Millisecond)), "a wait takes nothing")
	a.Refund()
	assert.Zero(t, a.Take(now), "refunded")
	assert.Equal(t, interval-time.Millisecond, a.Take(now.Add(time.Millisecond)), "taken again")
	assert.Zero(t, a.Take(now.Add(interval)))

	now = now.Add(interval)
	a.Observe(now, okSignal) // 14.28/s
	assert.InDelta(t, float64(time.Second)/14.28, float64(a.Take(now)), float64(time.Microsecond))
}

// A send a second or more before the current second (a time on another
// line) starts a new second rather than piling into the current one.
func TestAdaptiveRateMeasuresAcrossTimeLines(t *testing.T) {
	var a AdaptiveRate
	for range 3 {
		a.Sent(t0)
	}
	a.Sent(t0.Add(1500 * time.Millisecond))
	assert.EqualValues(t, 3, a.measured(), "the last whole second")
	a.Sent(t0.Add(-10 * time.Second))
	assert.EqualValues(t, 1, a.measured(), "another time line: a new second, no rate from the other")
	a.Sent(t0.Add(-8800 * time.Millisecond))
	a.Sent(t0.Add(-8800 * time.Millisecond))
	assert.EqualValues(t, 2, a.measured())
}

// A wall clock stepped back (NTP) while a scope is adaptively paced: Take's
// time is clamped to the latest it saw, Observe's is not. The adaptive rate
// still spaces requests at most one interval apart (before the fix, an hour's
// step held the scope 26 minutes).
func TestAdaptiveRateAfterAClockStepBackHoldsOneIntervalAtMost(t *testing.T) {
	ctx := context.Background()
	lim := NewLimiter()
	const scope = "p"
	now := t0 // a fake clock: wall time only, as notBefore's clamp gives
	for range 20 {
		d, _, err := lim.Take(ctx, scope, nil, now)
		require.NoError(t, err)
		require.Zero(t, d)
	}
	blind := Signal{Limit: -1, Remaining: -1, Throttled: true}
	require.NoError(t, lim.Observe(ctx, scope, now, blind))
	require.NoError(t, lim.Observe(ctx, scope, now, blind)) // 0.7 × 20/s = 14/s
	d, _, err := lim.Take(ctx, scope, nil, now)
	require.NoError(t, err)
	require.Zero(t, d)

	// The wall clock steps back an hour; a third blind 429 arrives.
	require.NoError(t, lim.Observe(ctx, scope, now.Add(-time.Hour), blind)) // 0.7 × 14/s = 9.8/s

	d, src, err := lim.Take(ctx, scope, nil, now.Add(time.Second))
	require.NoError(t, err)
	assert.LessOrEqual(t, d, time.Second,
		"an adaptive rate of 9.8/s held the scope for %v (%v)", d, src)
}

// The exported AdaptiveRate itself: a Take at a time earlier than the last
// one (a clock stepped back, or a redislimit caller's clock) waits one
// interval at most (before the fix, the whole step).
func TestAdaptiveRateTakeBeforeTheLastWaitsOneIntervalAtMost(t *testing.T) {
	var a AdaptiveRate
	blind := Signal{Limit: -1, Remaining: -1, Throttled: true}
	a.Observe(t0, blind)
	a.Observe(t0, blind) // 1/s: nothing measured
	require.Equal(t, 1.0, a.Limit())
	require.Zero(t, a.Take(t0))
	d := a.Take(t0.Add(-time.Hour))
	assert.LessOrEqual(t, d, time.Second, "a 1/s rate made a request wait %v", d)
	assert.Zero(t, a.Take(t0.Add(-time.Hour).Add(time.Second)), "one interval later the next goes: the step holds nothing")
}
