package payretry

import (
	"context"
	"sync"
	"time"
)

// timeouts ends the attempts that outlive their time-out. One timer serves
// all of a Transport's attempts: a timer per attempt was a quarter of a
// preset's cost per call (BENCHMARKS.md, "Where a preset's cost goes").
type timeouts struct {
	mu    sync.Mutex
	seq   uint64
	live  map[uint64]timeout
	timer *time.Timer // nil until the first attempt
	armed time.Time   // when timer fires; zero when it is not set
}

type timeout struct {
	at  time.Time
	end context.CancelCauseFunc
}

// add has end(ErrAttemptTimeout) called d from now unless remove(id) comes
// first.
func (ts *timeouts) add(d time.Duration, end context.CancelCauseFunc) (id uint64) {
	at := time.Now().Add(d)
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.live == nil {
		ts.live = map[uint64]timeout{}
	}
	ts.seq++
	ts.live[ts.seq] = timeout{at, end}
	if ts.armed.IsZero() || at.Before(ts.armed) {
		ts.arm(at)
	}
	return ts.seq
}

// remove forgets attempt id and reports whether it ended in time; id 0 is
// an attempt without a time-out.
func (ts *timeouts) remove(id uint64) bool {
	if id == 0 {
		return true
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	_, ok := ts.live[id]
	delete(ts.live, id)
	return ok
}

// arm sets the timer to fire at at. Call with mu held.
func (ts *timeouts) arm(at time.Time) {
	ts.armed = at
	if ts.timer == nil {
		ts.timer = time.AfterFunc(time.Until(at), ts.fire)
	} else {
		ts.timer.Reset(time.Until(at))
	}
}

// fire ends the attempts whose time is up and sets the timer for the next.
// An idle Transport keeps no timer set.
func (ts *timeouts) fire() {
	now := time.Now()
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.armed = time.Time{}
	var next time.Time
	for id, t := range ts.live {
		switch {
		case !t.at.After(now):
			delete(ts.live, id)
			t.end(ErrAttemptTimeout)
		case next.IsZero() || t.at.Before(next):
			next = t.at
		}
	}
	if !next.IsZero() {
		ts.arm(next)
	}
}
