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

func resetStats(t testing.TB, addr string) {
	t.Helper()
	_, err := redisserver.Command(addr, "CONFIG", "RESETSTAT")
	require.NoError(t, err)
}

// scriptTime returns the scripts Redis ran since its last CONFIG RESETSTAT
// and the µs it spent running them (INFO commandstats: EVALSHA's calls and
// usec, which include the commands inside).
func scriptTime(t testing.TB, addr string) (calls, usec int) {
	t.Helper()
	info, err := redisserver.Command(addr, "INFO", "commandstats")
	require.NoError(t, err)
	for line := range strings.Lines(info) {
		stats, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_evalsha:")
		if !ok {
			continue
		}
		for f := range strings.SplitSeq(stats, ",") {
			k, v, _ := strings.Cut(f, "=")
			n, _ := strconv.Atoi(v)
			switch k {
			case "calls":
				calls = n
			case "usec":
				usec = n
			}
		}
	}
	require.Positive(t, calls)
	return calls, usec
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

// quietPolicy is SmartRetry's preset with limits factor times as high, so
// that nothing binds: the quiet path.
func quietPolicy(l payretry.Limiter, factor float64) payretry.Policy {
	p := payretry.SmartRetry()
	p.Limits = slices.Clone(p.Limits)
	for i := range p.Limits {
		p.Limits[i].Rate *= factor
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
		tr, err := payretry.NewTransport(nil, quietPolicy(l, 50))
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
		tr, err := payretry.NewTransport(nil, quietPolicy(l, 50))
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

// cannedProvider answers every request at once with a 201 carrying
// SmartRetry's X-RateLimit fields, of a window that never runs out.
type cannedProvider struct{}

func (cannedProvider) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("X-RateLimit-Limit", "1000000000")
	h.Set("X-RateLimit-Remaining", "999999999")
	h.Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().Unix()+1, 10))
	return &http.Response{StatusCode: http.StatusCreated, Header: h, Request: req,
		Body: io.NopCloser(strings.NewReader(`{"id":"pay_1","status":"executed"}`))}, nil
}

// BenchmarkLimiterCost measures what Redis adds to a payment call on the
// quiet path: one POST through a SmartRetry Transport (its limits raised so
// that none binds) to a provider answering in memory, with the in-process
// limiter and with redislimit on a loopback redis-server. It reports the
// median and 99th percentile of a call and the Redis calls per payment.
//
// A PING through the same kind of client gives the bare round trip.
//
//	go test -run '^$' -bench LimiterCost -benchtime 20000x -count 5
func BenchmarkLimiterCost(b *testing.B) {
	srv := startRedis(b)
	b.Run("ping", func(b *testing.B) {
		rdb := newClient(b, srv.Addr)
		took := make([]time.Duration, b.N)
		b.ResetTimer()
		for i := range b.N {
			start := time.Now()
			require.NoError(b, rdb.Ping(bg).Err())
			took[i] = time.Since(start)
		}
		b.StopTimer()
		slices.Sort(took)
		b.ReportMetric(float64(took[b.N/2])/1e3, "p50-µs")
		b.ReportMetric(float64(took[b.N*99/100])/1e3, "p99-µs")
	})
	for _, name := range []string{"inprocess", "redis"} {
		b.Run("limiter="+name, func(b *testing.B) {
			var l *Limiter
			var lim payretry.Limiter // nil: the Transport's own, in-process
			if name == "redis" {
				l = New(newClient(b, srv.Addr), Options{Prefix: "bench-" + strconv.Itoa(b.N), Logger: quiet()})
				lim = l
			}
			tr, err := payretry.NewTransport(cannedProvider{}, quietPolicy(lim, 1000))
			require.NoError(b, err)
			pay := func() {
				req, err := http.NewRequest(http.MethodPost, "https://api.smartretry.example/v1/payments/sale",
					strings.NewReader(`{"reference":"bench","amount":1000,"currency":"USD"}`))
				require.NoError(b, err)
				resp, err := tr.RoundTrip(req)
				require.NoError(b, err)
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			for range 100 {
				pay() // connects and loads the scripts
			}
			var before Stats
			if l != nil {
				before = l.Stats()
				resetStats(b, srv.Addr)
			}
			took := make([]time.Duration, b.N)
			b.ResetTimer()
			for i := range b.N {
				start := time.Now()
				pay()
				took[i] = time.Since(start)
			}
			b.StopTimer()
			slices.Sort(took)
			b.ReportMetric(float64(took[b.N/2])/1e3, "p50-µs")
			b.ReportMetric(float64(took[b.N*99/100])/1e3, "p99-µs")
			if l != nil {
				st := l.Stats()
				require.Zero(b, st.FallbackTakes, "paced through Redis throughout")
				b.ReportMetric(float64(st.RedisCalls-before.RedisCalls)/float64(b.N), "redis-calls/op")
				calls, usec := scriptTime(b, srv.Addr)
				b.ReportMetric(float64(usec)/float64(calls), "script-µs/call")
			}
		})
	}
}
