package payretry

import (
	"sync/atomic"
	"time"
)

// clockBase is the last reading of time.Now that clockNow builds on.
var clockBase atomic.Pointer[time.Time]

// clockNow returns the current time with one read of the monotonic clock, where
// time.Now reads the wall clock as well: every call reads the clock at least
// once, so this halves what a call spends on it. The wall reading is that of
// a time.Now at most a second old, advanced by the monotonic clock since, so
// it strays from the wall clock only by a step of the system clock within
// that second. Durations and comparisons between two readings use the
// monotonic clock either way.
func clockNow() time.Time {
	if b := clockBase.Load(); b != nil {
		if d := time.Since(*b); d >= 0 && d < time.Second {
			return b.Add(d)
		}
	}
	t := time.Now()
	clockBase.Store(&t)
	return t
}
