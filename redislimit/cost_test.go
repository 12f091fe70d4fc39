package redislimit

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/payretry/payretry"
	"github.com/payretry/payretry/payretrytest"
	"github.com/payretry/payretry/redislimit/internal/redisserver"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// What the limiter costs: Redis round trips per payment, as Redis counts
// them (INFO commandstats), and the time a Redis call adds.

// commandCalls returns the calls of each command Redis served since its
// last CONFIG RESETSTAT, without the test's own INFO and CONFIG.
func commandCalls(t *testing.T, addr string) map[string]int {
	t.Helper()
	info, err := redisserver.Command(addr, "INFO", "commandstats")
	require.NoError(t, err)
	calls := map[string]int{}
	for line := range strings.Lines(info) {
		// cmdstat_evalsha:calls=200,usec=...,rejected_calls=0,failed_calls=0
		name, stats, ok := strings.Cut(strings.TrimSpace(line), ":")
		name, isCmd := strings.CutPrefix(name, "cmdstat_")
		if !ok || !isCmd || name == "info" || strings.HasPrefix(name, "config") {
			continue
		}
		for f := range strings.SplitSeq(stats, ",") {
			if v, ok := strings.CutPrefix(f, "calls="); ok {
				n, err := strconv.Atoi(v)
				require.NoError(t, err)
				calls[name] = n
			}
		}
	}
	return calls
}

func resetStats(t *testing.T, addr string) {
	t.Helper()
	_, err := redisserver.Command(addr, "CONFIG", "RESETSTAT")
	require.NoError(t, err)
}

// roundTrips sorts the commands Redis counted: the limiter's scripts
// (EVALSHA, EVAL: a round trip each), the commands the scripts run inside
// (no round trip), and the rest, which the client sent: a new connection's
// HELLO and CLIENT SETINFO.
func roundTrips(calls map[string]int) (scripts, inside, other int) {
	for name, n := range calls {
		switch name {
		case "evalsha", "eval":
			scripts += n
		case "time", "hmget", "hset", "pexpire", "get", "set":
			inside += n
		default:
			other += n
		}
	}
	return scripts, inside, other
}

// quietPolicy is SmartRetry's preset with limits fifty times as high, so
// that nothing binds: the quiet path.
func quietPolicy(l payretry.Limiter) payretry.Policy {
	p := payretry.SmartRetry()
	p.Limits = slices.Clone(p.Limits)
	for i := range p.Limits {
		p.Limits[i].Rate *= 50
	}
	p.Limiter = l
	return p
}

func quietSimulator(t *testing.T) *payretrytest.Server {
	sim := payretrytest.NewServer(payretrytest.SmartRetry, payretrytest.Options{
		Limits: payretrytest.Limits{Payment: 100_000, All: 100_000},
	})
	t.Cleanup(sim.Close)
	return sim
}

func payOnce(t *testing.T, c *http.Client, url, ref string) time.Duration {
	t.Helper()
	start := time.Now()
	resp, err := c.Post(url, "application/json", strings.NewReader(fmt.Sprintf(`{"reference":%q,"amount":1000,"currency":"USD"}`, ref)))
	d := time.Since(start)
	if !assert.NoError(t, err) {
		return d
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	assert.NoError(t, payretry.CheckResponse(resp), ref)
	return d
}

func TestRoundTripsPerPayment(t *testing.T) {
	srv := startRedis(t)

	t.Run("quiet", func(t *testing.T) {
		sim := quietSimulator(t)
		l := New(newClient(t, srv.Addr), Options{Timeout: 250 * time.Millisecond, Logger: quiet()})
		tr, err := payretry.NewTransport(nil, quietPolicy(l))
		require.NoError(t, err)
		c := &http.Client{Transport: tr}
		payOnce(t, c, sim.PaymentURL(), "warm-up") // connects and loads the scripts
		resetStats(t, srv.Addr)
		before := l.Stats()

		const payments = 200
		for i := range payments {
			payOnce(t, c, sim.PaymentURL(), "quiet-"+strconv.Itoa(i))
		}
		scripts, inside, other := roundTrips(commandCalls(t, srv.Addr))
		st := l.Stats()
		t.Logf("quiet path: %d payments, %d script calls (%.2f round trips per payment; %d commands inside them), %d other commands; %+v",
			payments, scripts, float64(scripts)/payments, inside, other, st)
		assert.Equal(t, payments, len(sim.Ledger())-1)
		assert.Equal(t, payments, scripts, "one round trip per payment: its Take, which carries the last payment's Observe")
		assert.Zero(t, other, "nothing else: no new connection")
		assert.Equal(t, int64(payments), st.Carried-before.Carried, "each success reached Redis with the next Take")
	})

	t.Run("hold", func(t *testing.T) {
		sim := quietSimulator(t)
		l := New(newClient(t, srv.Addr), Options{Timeout: 250 * time.Millisecond, Logger: quiet()})
		other := New(newClient(t, srv.Addr), Options{Logger: quiet()})
		tr, err := payretry.NewTransport(nil, quietPolicy(l))
		require.NoError(t, err)
		c := &http.Client{Transport: tr}
		payOnce(t, c, sim.PaymentURL(), "warm-up")
		resetStats(t, srv.Addr)
		before := l.Stats()

		// Another replica got a 429 with Retry-After: the account is held
		// for 400 ms. Payments arrive meanwhile, one every 5 ms.
		const payments, hold = 40, 400 * time.Millisecond
		sig := noSignal()
		sig.Throttled, sig.RetryAt = true, time.Now().Add(hold)
		require.NoError(t, other.Observe(bg, "smartretry/payment", time.Now(), sig))
		start := time.Now()
		var wg sync.WaitGroup
		waited := make([]time.Duration, payments)
		for i := range payments {
			wg.Add(1)
			go func() {
				defer wg.Done()
				waited[i] = payOnce(t, c, sim.PaymentURL(), "held-"+strconv.Itoa(i))
			}()
			time.Sleep(5 * time.Millisecond)
		}
		wg.Wait()
		require.Less(t, time.Since(start), 2*hold, "the payments were held, not failed")
		scripts, _, conns := roundTrips(commandCalls(t, srv.Addr))
		st := l.Stats()
		t.Logf("under a hold: %d payments arriving during a %v hold, %d script calls (%.3f round trips per payment, the 429's Observe on another replica aside), %d connection-setup commands; %+v",
			payments, hold, scripts, float64(scripts-1)/payments, conns, st)
		assert.Equal(t, payments, len(sim.Ledger())-1)
		for i, w := range waited {
			assert.Greater(t, w, hold-time.Duration(i)*5*time.Millisecond-50*time.Millisecond, "payment %d waited for the hold", i)
		}
		// One call (the Observe of the 429) is the other replica's. Of this
		// one: the first Take learns the hold, the others wait for it
		// without asking, and each payment takes its place once it ends.
		assert.LessOrEqual(t, scripts-1, payments+2, "at most one round trip per payment, and the one that learns the hold")
		assert.GreaterOrEqual(t, st.LocalWaits-before.LocalWaits, int64(payments-5), "the waits during the hold were answered in-process")
	})
}
