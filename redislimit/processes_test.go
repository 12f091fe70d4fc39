package redislimit

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/payretry/payretry/payretrytest"
	"github.com/payretry/payretry/redislimit/internal/loadtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Replicas as separate processes: the test binary re-executes itself
// (TestMain, setupReplica) once per replica, each with its own Transport,
// connections and limiter, against one simulated SmartRetry account in
// this process, which allows 100 payment requests per second per API key.

// processRun is what one run across processes did.
type processRun struct {
	res       loadtest.Result
	reports   []replicaReport
	requests  int // the provider received
	throttled int // of them answered 429
	executed  int
	quota     float64 // share of the quota used, in the windows the run spanned whole
	windows   int     // those windows
}

func (r processRun) String() string {
	return fmt.Sprintf("%d payments in %v: %d requests, %d 429s (%.1f %%), %.1f %% of the quota used in %d whole windows, %d failed, %d unknown, slowest call %v",
		r.executed, r.res.Elapsed.Round(time.Millisecond), r.requests, r.throttled, 100*float64(r.throttled)/float64(r.requests),
		100*r.quota, r.windows, r.res.Failed, r.res.Unknown, r.res.MaxLatency.Round(time.Millisecond))
}

// runProcesses pays payments through n replica processes of workers each,
// set up by setup, at a new simulator with providerLatency. during, if set,
// runs meanwhile in a goroutine of its own, with the simulator; it returns
// once the run is over.
func runProcesses(t *testing.T, name string, n, workers, payments int, setup replicaSetup, during func(ctx context.Context, sim *payretrytest.Server)) (processRun, *payretrytest.Server) {
	t.Helper()
	sim := payretrytest.NewServer(payretrytest.SmartRetry, payretrytest.Options{
		Plan: payretrytest.FaultPlan{Latency: providerLatency, LatencyRate: 1},
	})
	t.Cleanup(sim.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stopped := make(chan struct{})
	if during != nil {
		go func() { defer close(stopped); during(ctx, sim) }()
	} else {
		close(stopped)
	}
	res, reports, err := loadtest.RunProcesses(ctx, loadtest.ProcessConfig{
		URL: sim.PaymentURL(), APIKey: "shared-account",
		Replicas: n, Workers: workers, Payments: payments,
		Deadline: 10 * time.Second, Reference: name,
		Setup: setup, Command: replicaCommand,
	})
	cancel()
	<-stopped
	require.NoError(t, err)
	st := sim.Stats()
	run := processRun{res: res, requests: st.Requests, throttled: st.RateLimited, executed: len(sim.Ledger())}
	for _, r := range reports {
		var rep replicaReport
		if len(r.Limiter) > 0 {
			require.NoError(t, json.Unmarshal(r.Limiter, &rep))
		}
		run.reports = append(run.reports, rep)
	}
	run.quota, run.windows = loadtest.QuotaUsed(sim, res.Outcomes, providerLimit)
	return run, sim
}

// checkLedger checks the caller's view against the provider's ledger,
// payment by payment: nothing executed twice, every success executed once,
// nothing that failed definitively executed.
func checkLedger(t *testing.T, sim *payretrytest.Server, outcomes []loadtest.Outcome) {
	t.Helper()
	assert.Zero(t, sim.Duplicates(), "no payment executed twice")
	for _, o := range outcomes {
		n := sim.Executions(o.Reference)
		switch {
		case o.Err == nil:
			assert.Equal(t, 1, n, "%s succeeded: executed once", o.Reference)
		case o.Unknown:
			assert.LessOrEqual(t, n, 1, "%s unknown: at most once", o.Reference)
		default:
			assert.Zero(t, n, "%s failed definitively: never executed (%v)", o.Reference, o.Err)
		}
	}
}

func TestProcessesShareTheQuota(t *testing.T) {
	srv := startRedis(t)
	const n, payments = 4, 600

	// The fallback has its own tests: a generous timeout keeps a loaded
	// test machine from turning this run into an in-process one.
	shared, sim := runProcesses(t, "shared", n, workers, payments, replicaSetup{Redis: []string{srv.Addr}, Timeout: 250 * time.Millisecond}, nil)
	t.Logf("%d processes with Redis:    %v", n, shared)
	var calls int64
	for i, r := range shared.reports {
		t.Logf("replica %d: %+v", i, r.Stats)
		assert.False(t, r.Degraded, "replica %d paced through Redis", i)
		assert.Zero(t, r.Stats.FallbackTakes, "replica %d never paced in-process", i)
		calls += r.Stats.RedisCalls
	}
	t.Logf("Redis calls per payment while the quota binds: %.2f", float64(calls)/payments)
	checkLedger(t, sim, shared.res.Outcomes)
	assert.Equal(t, payments, shared.res.Succeeded)
	assert.Equal(t, payments, shared.executed)
	assert.Zero(t, shared.throttled, "no 429")
	assert.GreaterOrEqual(t, shared.windows, 3)
	assert.GreaterOrEqual(t, shared.quota, 0.95, "at least 95 %% of the quota used")
	// The gate (scopeState.gate): without it every waiting request asks
	// Redis each time a token is due, about ten calls per payment here.
	assert.Less(t, float64(calls)/payments, 5.0, "Redis calls per payment while the quota binds")

	// Each process alone paces itself to the whole limit: together they
	// offer four times what the provider allows, and stop only when the
	// provider's Remaining says the window is spent, a round trip late.
	alone, sim := runProcesses(t, "alone", n, workers, payments, replicaSetup{}, nil)
	t.Logf("%d processes without Redis: %v", n, alone)
	checkLedger(t, sim, alone.res.Outcomes)
	assert.Greater(t, alone.throttled, 5, "without Redis the processes collect 429s")
}
