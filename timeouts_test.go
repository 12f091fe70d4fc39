package payretry

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// One timer ends each attempt at its own deadline, whatever order they were
// added in, and never one removed in time.
func TestTimeoutsEndEachAttemptAtItsDeadline(t *testing.T) {
	var ts timeouts
	start := time.Now()
	var mu sync.Mutex
	ended := map[string]time.Duration{}
	end := func(name string) context.CancelCauseFunc {
		return func(err error) {
			assert.ErrorIs(t, err, ErrAttemptTimeout)
			mu.Lock()
			ended[name] = time.Since(start)
			mu.Unlock()
		}
	}
	late := ts.add(300*time.Millisecond, end("late"))
	ts.add(150*time.Millisecond, end("middle"))
	early := ts.add(50*time.Millisecond, end("early"))
	kept := ts.add(100*time.Millisecond, end("kept"))
	assert.True(t, ts.remove(kept), "removed before its deadline: in time")

	time.Sleep(200 * time.Millisecond)
	assert.False(t, ts.remove(early), "its deadline passed: timed out")
	assert.True(t, ts.remove(late), "still running")
	time.Sleep(200 * time.Millisecond)

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, ended, 2, "only early and middle outlived their time: %v", ended)
	assert.GreaterOrEqual(t, ended["early"], 50*time.Millisecond)
	assert.Less(t, ended["early"], 150*time.Millisecond, "ended at its own deadline, not at the next")
	assert.GreaterOrEqual(t, ended["middle"], 150*time.Millisecond)
}

// Concurrent calls through one Transport: the stalled ones time out after
// AttemptTimeout, the quick ones are not cut, and every call ends.
func TestAttemptTimeoutConcurrentCalls(t *testing.T) {
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			s := newScriptOn(t, proto, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Query().Get("stall") != "" {
					stall(w, r)
					return
				}
				w.WriteHeader(http.StatusOK)
			})
			tr, err := NewTransport(s.base, Policy{Name: "t", MaxAttempts: 1, AttemptTimeout: time.Second})
			require.NoError(t, err)
			var wg sync.WaitGroup
			for i := range 20 {
				wg.Go(func() {
					url := s.URL
					if i%2 == 0 {
						url += "?stall=1"
					}
					req, _ := http.NewRequest(http.MethodGet, url, nil)
					began := time.Now()
					resp, err := tr.RoundTrip(req)
					took := time.Since(began)
					if i%2 == 0 {
						assert.True(t, errors.Is(err, ErrAttemptTimeout), "call %d: %v", i, err)
						assert.GreaterOrEqual(t, took, time.Second)
						assert.Less(t, took, 4*time.Second)
						return
					}
					if assert.NoError(t, err, "call %d", i) {
						resp.Body.Close()
						assert.Equal(t, http.StatusOK, resp.StatusCode)
					}
				})
			}
			wg.Wait()
		})
	}
}
