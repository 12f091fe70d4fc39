package redislimit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/payretry/payretry"
	"github.com/payretry/payretry/payretrytest"
	"github.com/payretry/payretry/redislimit/internal/redisserver"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// On a Redis Cluster: three masters, each with one replica, on loopback,
// through redis.NewClusterClient.

// startCluster starts a 3-master, 3-replica cluster for one test and stops
// it when the test ends; skipped, saying why, only without redis-server or
// redis-cli.
func startCluster(t *testing.T) *redisserver.Cluster {
	t.Helper()
	start := time.Now()
	c, err := redisserver.StartCluster(context.Background(), 3, 1)
	if errors.Is(err, redisserver.ErrNotInstalled) {
		t.Skip("the cluster tests run against a real Redis Cluster: " + err.Error())
	}
	require.NoError(t, err)
	t.Cleanup(c.Stop)
	t.Logf("cluster of %d nodes ready in %v", len(c.Nodes), time.Since(start).Round(time.Millisecond))
	return c
}

func newClusterClient(t *testing.T, c *redisserver.Cluster) *redis.ClusterClient {
	t.Helper()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs: c.Addrs(), ContextTimeoutEnabled: true, DialTimeout: 100 * time.Millisecond,
	})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// scriptKeys records the keys of every script the client runs.
type scriptKeys struct {
	mu    sync.Mutex
	calls [][]string
}

func (s *scriptKeys) DialHook(next redis.DialHook) redis.DialHook { return next }
func (s *scriptKeys) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (s *scriptKeys) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		// EVAL/EVALSHA script numkeys key... arg...
		if name := cmd.Name(); name == "eval" || name == "evalsha" {
			args := cmd.Args()
			n, _ := strconv.Atoi(fmt.Sprint(args[2]))
			keys := make([]string, n)
			for i := range n {
				keys[i] = fmt.Sprint(args[3+i])
			}
			s.mu.Lock()
			s.calls = append(s.calls, keys)
			s.mu.Unlock()
		}
		return next(ctx, cmd)
	}
}

func TestClusterKeysOfAScopeShareASlot(t *testing.T) {
	c := startCluster(t)
	rdb := newClusterClient(t, c)
	rec := &scriptKeys{}
	rdb.AddHook(rec)
	l := New(rdb, Options{Timeout: 250 * time.Millisecond, Logger: quiet()})

	// Every call of SmartRetry's scopes, with the preset's limits (each
	// scope's own bucket and the combined "all"), and of a second provider.
	p := payretry.SmartRetry()
	byName := map[string]payretry.Limit{}
	for _, lim := range p.Limits {
		byName[lim.Name] = lim
	}
	scopes := []struct {
		scope  string
		limits []payretry.Limit
	}{
		{"smartretry/payment", []payretry.Limit{byName["payment"], byName["all"]}},
		{"smartretry/status", []payretry.Limit{byName["status"], byName["all"]}},
		{"smartretry/recurring", []payretry.Limit{byName["recurring"], byName["all"]}},
		{"orzcash", nil},
		{"weird{tag}/x%y", []payretry.Limit{{Name: "b{r}aces", Rate: 10}}},
	}
	fail := noSignal()
	fail.Failed = true
	hold := noSignal()
	hold.Throttled, hold.RetryAt = true, time.Now().Add(10*time.Millisecond)
	for _, sc := range scopes {
		for range 3 {
			ok := noSignal()
			ok.OK, ok.Limit, ok.Remaining, ok.Reset = true, 100, 50, time.Now().Add(time.Second)
			_, _, err := l.Take(bg, sc.scope, sc.limits, time.Now())
			require.NoError(t, err)
			require.NoError(t, l.Observe(bg, sc.scope, time.Now(), ok))
		}
		require.NoError(t, l.Observe(bg, sc.scope, time.Now(), fail))
		require.NoError(t, l.Observe(bg, sc.scope, time.Now(), hold))
	}
	st := l.Stats()
	require.Zero(t, st.RedisErrors, "no script failed (a cross-slot one is refused with CROSSSLOT)")
	require.False(t, l.Degraded())
	require.Positive(t, st.Carried, "successes went with a later Take")

	// The slots as the cluster computes them (CLUSTER KEYSLOT), not as
	// the hash tags promise.
	rec.mu.Lock()
	calls := rec.calls
	rec.mu.Unlock()
	require.GreaterOrEqual(t, len(calls), int(st.RedisCalls))
	slotOf := map[string]int{}
	providers := map[string]int{} // provider -> slot
	for _, keys := range calls {
		require.NotEmpty(t, keys)
		for _, k := range keys {
			if _, ok := slotOf[k]; !ok {
				s, err := c.KeySlot(k)
				require.NoError(t, err)
				slotOf[k] = s
			}
			assert.Equal(t, slotOf[keys[0]], slotOf[k], "keys of one script in one slot: %v", keys)
		}
		prov := strings.TrimPrefix(strings.SplitN(keys[0], "}", 2)[0], "payretry:{")
		if s, ok := providers[prov]; ok {
			assert.Equal(t, s, slotOf[keys[0]], "all of a provider's scopes in one slot (its combined limits are shared)")
		}
		providers[prov] = slotOf[keys[0]]
	}
	t.Logf("%d script calls over %d keys; slots by provider: %v", len(calls), len(slotOf), providers)
	assert.Len(t, providers, 3)
}

// The master that holds SmartRetry's slot is killed mid-run: its replica
// takes over, the replicas pace in-process meanwhile and come back to
// Redis; the provider's ledger shows every payment once.
func TestClusterFailoverMidRun(t *testing.T) {
	c := startCluster(t)
	const n, payments = 4, 700
	slot, err := c.KeySlot("payretry:{smartretry}:scope:smartretry/payment")
	require.NoError(t, err)
	master, err := c.MasterOf(slot)
	require.NoError(t, err)
	require.NotNil(t, master)

	var killedAt, failedOverAt time.Time
	var killErr error
	run, sim := runProcesses(t, "failover", n, workers, payments, replicaSetup{Redis: c.Addrs(), Cluster: true},
		func(ctx context.Context, sim *payretrytest.Server) {
			for sim.Stats().Executions < payments/5 {
				if ctx.Err() != nil {
					killErr = errors.New("the run ended before the kill")
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
			killedAt = time.Now()
			master.Stop()
			// Over when the new master serves the slot: it reports the
			// cluster ok (after its promotion a master waits the node
			// timeout before it does).
			for ctx.Err() == nil {
				if m, err := c.MasterOf(slot); err == nil && m != nil && m != master {
					if info, err := redisserver.Command(m.Addr, "CLUSTER", "INFO"); err == nil && strings.Contains(info, "cluster_state:ok") {
						failedOverAt = time.Now()
						return
					}
				}
				time.Sleep(10 * time.Millisecond)
			}
			killErr = errors.New("no replica took over")
		})
	require.NoError(t, killErr)
	t.Logf("master %s of slot %d killed after %d payments; a replica serves the slot %v later",
		master.Addr, slot, payments/5, failedOverAt.Sub(killedAt).Round(time.Millisecond))
	t.Logf("%d processes on a cluster, failover mid-run: %v", n, run)

	// No payment lost or executed twice.
	checkLedger(t, sim, run.res.Outcomes)
	assert.Equal(t, payments, run.res.Succeeded, "the provider was healthy: every payment went through")
	assert.Equal(t, payments, run.executed)
	for _, o := range run.res.Outcomes {
		assert.False(t, errors.Is(o.Err, context.DeadlineExceeded), "%s ran into its deadline: %v", o.Reference, o.Err)
	}
	// Payments went on while the slot was not served.
	during := 0
	for _, p := range sim.Ledger() {
		if p.At.After(killedAt) && p.At.Before(failedOverAt) {
			during++
		}
	}
	t.Logf("%d payments executed while the slot was not served", during)
	assert.Positive(t, during)
	// 429s stay bounded: each process paces to the provider's Remaining
	// meanwhile, and a 429's Retry-After holds it for a second.
	assert.LessOrEqual(t, run.throttled*100, 5*run.requests, "429s at most 5 %% of requests")

	for i, r := range run.reports {
		t.Logf("replica %d: %+v", i, r.Stats)
		for _, e := range r.Events {
			t.Logf("replica %d: %s %s (after %d Redis calls) %s", i, e.At.Format("15:04:05.000"), e.Msg, e.Calls, e.Error)
		}
		assert.Positive(t, r.Stats.FallbackTakes, "replica %d paced in-process meanwhile", i)
		// It logged the outage, or was pacing in-process already: on a
		// loaded machine a Redis call may pass the 50 ms timeout before
		// the kill, and then the replica tries again a second later.
		after := slices.IndexFunc(r.Events, func(e limiterEvent) bool { return !e.At.Before(killedAt) })
		if after < 0 {
			after = len(r.Events)
		}
		degraded := after > 0 && r.Events[after-1].Msg == msgDown
		require.True(t, degraded || slices.ContainsFunc(r.Events[after:], func(e limiterEvent) bool { return e.Msg == msgDown }),
			"replica %d saw the outage", i)
		// Back once the slot was served again (no Redis call of the
		// limiter can succeed before: all its keys are in that slot), and
		// paced through Redis after. (A late timeout may still make it
		// pace in-process again for a second at the end.)
		j := slices.IndexFunc(r.Events[after:], func(e limiterEvent) bool { return e.Msg == msgBack })
		require.GreaterOrEqual(t, j, 0, "replica %d came back to Redis", i)
		back := r.Events[after+j]
		t.Logf("replica %d: back on Redis %v after the slot was served again", i, back.At.Sub(failedOverAt).Round(time.Millisecond))
		// The limiter tries Redis again every retry interval and asks for
		// the slot map every quarter of it; a node asked for the map may
		// not know of the failover yet.
		assert.Less(t, back.At.Sub(failedOverAt), 3*time.Second, "replica %d back within about its retry interval", i)
		assert.Greater(t, r.Stats.RedisCalls, back.Calls+20, "replica %d paced through Redis after", i)
	}
}
