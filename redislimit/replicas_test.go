package redislimit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payretry/payretry"
	"github.com/payretry/payretry/payretrytest"
	"github.com/payretry/payretry/redislimit/internal/loadtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Three replicas (Transports in this process, each with its own limiter and
// its own Redis connection; processes_test.go runs them as processes) × 4
// workers push payments at one SmartRetry simulator, which allows 100
// payment requests per second per API key (fixed one-second windows,
// X-RateLimit-* on every response, 429 with Retry-After beyond). All
// replicas use the same API key.

const (
	replicas      = 3
	workers       = 4
	providerLimit = 100 // payment requests per second per key
	// providerLatency is added by the simulator to every payment request,
	// after its rate limit counted it: a real provider's round trip. On bare
	// loopback (about 1 ms) each response's X-RateLimit-Remaining reaches
	// the replicas so soon that even independent limiters see a spent window
	// almost at once (measured: 10-25 429s of 600 payments without Redis,
	// 0 with it); over a realistic round trip each replica sends on stale
	// counts for that long.
	providerLatency = 30 * time.Millisecond
)

type runStats struct {
	res                 loadtest.Result
	requests, throttled int
	executed            int
	goodput             float64 // executed payments per second
}

func (s runStats) String() string {
	return fmt.Sprintf("%d payments in %v: %d requests, %d 429s (%.1f %%), goodput %.1f/s (%.2f of the limit), %d failed, %d unknown, slowest call %v",
		s.executed, s.res.Elapsed.Round(time.Millisecond), s.requests, s.throttled, 100*float64(s.throttled)/float64(s.requests),
		s.goodput, s.goodput/providerLimit, s.res.Failed, s.res.Unknown, s.res.MaxLatency.Round(time.Millisecond))
}

func runReplicas(t *testing.T, name string, latency time.Duration, payments int, limiter func(replica int) payretry.Limiter, onDone func(int)) (runStats, *payretrytest.Server) {
	t.Helper()
	var plan payretrytest.FaultPlan
	if latency > 0 {
		plan.Latency, plan.LatencyRate = latency, 1
	}
	sim := payretrytest.NewServer(payretrytest.SmartRetry, payretrytest.Options{Plan: plan})
	t.Cleanup(sim.Close)
	res, err := loadtest.Run(context.Background(), loadtest.Config{
		URL: sim.PaymentURL(), APIKey: "shared-account",
		Replicas: replicas, Workers: workers, Payments: payments,
		Policy: func(i int) payretry.Policy {
			p := payretry.SmartRetry()
			p.Limiter = limiter(i) // nil: the Transport's own in-process limiter
			return p
		},
		Deadline:  10 * time.Second,
		Reference: name,
		OnDone:    onDone,
	})
	require.NoError(t, err)
	st := sim.Stats()
	s := runStats{res: res, requests: st.Requests, throttled: st.RateLimited, executed: len(sim.Ledger())}
	s.goodput = float64(s.executed) / res.Elapsed.Seconds()
	shown := 0
	for _, o := range res.Outcomes {
		if o.Err != nil && shown < 5 {
			t.Logf("%s: %s failed after %v: %v", name, o.Reference, o.Latency.Round(time.Millisecond), o.Err)
			shown++
		}
	}
	return s, sim
}

// timed wraps a Limiter to measure how long Take and Observe block.
type timed struct {
	payretry.Limiter
	slowest atomic.Int64
}

func (l *timed) note(start time.Time) {
	d := int64(time.Since(start))
	for {
		cur := l.slowest.Load()
		if d <= cur || l.slowest.CompareAndSwap(cur, d) {
			return
		}
	}
}

func (l *timed) Take(ctx context.Context, scope string, limits []payretry.Limit, now time.Time) (time.Duration, payretry.WaitSource, error) {
	defer l.note(time.Now())
	return l.Limiter.Take(ctx, scope, limits, now)
}

func (l *timed) Observe(ctx context.Context, scope string, now time.Time, s payretry.Signal) error {
	defer l.note(time.Now())
	return l.Limiter.Observe(ctx, scope, now, s)
}

func TestRedisRestartMidRun(t *testing.T) {
	srv := startRedis(t)
	const payments = 600
	const timeout = 50 * time.Millisecond
	var lines logs
	limiters := make([]*Limiter, replicas)
	wrapped := make([]*timed, replicas)
	for i := range limiters {
		limiters[i] = New(newClient(t, srv.Addr), Options{Timeout: timeout, Logger: slogger(&lines)})
		wrapped[i] = &timed{Limiter: limiters[i]}
	}

	// Halfway, Redis is killed; a second later it is back on the same port,
	// empty (no persistence, no cached scripts).
	var (
		once           sync.Once
		restarted      = make(chan struct{})
		callsAtRestart [replicas]int64
		restartErr     error
	)
	onDone := func(n int) {
		if n != payments/3 {
			return
		}
		once.Do(func() {
			go func() {
				defer close(restarted)
				srv.Stop()
				t.Logf("redis-server killed after %d payments", n)
				time.Sleep(time.Second)
				restartErr = srv.Restart(context.Background())
				for i, l := range limiters {
					callsAtRestart[i] = l.Stats().RedisCalls
				}
				t.Logf("redis-server restarted")
			}()
		})
	}
	run, sim := runReplicas(t, "restart", providerLatency, payments, func(i int) payretry.Limiter { return wrapped[i] }, onDone)
	<-restarted
	require.NoError(t, restartErr)
	t.Logf("Redis killed and restarted mid-run: %v", run)

	// No payment lost or duplicated: the caller's view agrees with the
	// provider's ledger, payment by payment.
	assert.Zero(t, sim.Duplicates())
	for _, o := range run.res.Outcomes {
		n := sim.Executions(o.Reference)
		switch {
		case o.Err == nil:
			assert.Equal(t, 1, n, "%s succeeded: executed once", o.Reference)
		case o.Unknown:
			assert.LessOrEqual(t, n, 1, "%s unknown: at most once", o.Reference)
		default:
			assert.Zero(t, n, "%s failed definitively: never executed (%v)", o.Reference, o.Err)
		}
		assert.False(t, errors.Is(o.Err, context.DeadlineExceeded), "%s ran into its deadline: %v", o.Reference, o.Err)
	}
	assert.Equal(t, payments, run.res.Succeeded, "the provider was healthy: every payment went through")
	assert.Less(t, run.res.MaxLatency, 10*time.Second, "no call blocked past its deadline")

	// No limiter call blocked past the timeout (plus scheduling slack under
	// -race on two cores).
	for i, w := range wrapped {
		slowest := time.Duration(w.slowest.Load())
		t.Logf("replica %d: slowest limiter call %v; %+v", i, slowest.Round(time.Millisecond), limiters[i].Stats())
		assert.Less(t, slowest, timeout+150*time.Millisecond)
	}

	// Each replica noticed the outage once, logged it once, and went back
	// to Redis after the restart.
	for i, l := range limiters {
		st := l.Stats()
		assert.False(t, l.Degraded(), "replica %d uses Redis again", i)
		assert.GreaterOrEqual(t, st.Outages, int64(1), "replica %d saw the outage", i)
		assert.GreaterOrEqual(t, st.Recoveries, int64(1), "replica %d recovered", i)
		assert.Greater(t, st.RedisCalls, callsAtRestart[i]+10, "replica %d paced through Redis after the restart", i)
	}
	// One line per outage and recovery, not per request. (On a loaded
	// machine a Redis call may also pass the 50 ms timeout before the kill:
	// that is an outage too.)
	t.Logf("limiter log:\n%v", &lines)
	var outages, recoveries, fallbacks int64
	for _, l := range limiters {
		st := l.Stats()
		outages, recoveries, fallbacks = outages+st.Outages, recoveries+st.Recoveries, fallbacks+st.FallbackTakes
	}
	assert.Equal(t, int(outages), lines.count(msgDown), "one line per outage")
	assert.Equal(t, int(recoveries), lines.count(msgBack), "one line per recovery")
	assert.Greater(t, fallbacks, outages, "requests paced in-process meanwhile, without a line each")
}
