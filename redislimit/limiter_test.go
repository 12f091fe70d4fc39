package redislimit

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payretry/payretry"
	"github.com/payretry/payretry/redislimit/internal/redisserver"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Unit behaviour of Take and Observe on a real Redis. Two Limiters on one
// Redis stand for two replicas.

var bg = context.Background()

// pacing is what New paces by.
var pacing = payretry.DefaultPacing()

func pair(t *testing.T, opts Options) (*Limiter, *Limiter) {
	srv := startRedis(t)
	if opts.Logger == nil {
		opts.Logger = quiet()
	}
	return New(newClient(t, srv.Addr), opts), New(newClient(t, srv.Addr), opts)
}

func noSignal() payretry.Signal { return payretry.Signal{Limit: -1, Remaining: -1} }

func take(t *testing.T, l *Limiter, scope string, limits ...payretry.Limit) (time.Duration, payretry.WaitSource) {
	t.Helper()
	d, src, err := l.Take(bg, scope, limits, time.Now())
	require.NoError(t, err)
	return d, src
}

func TestHoldIsShared(t *testing.T) {
	a, b := pair(t, Options{})
	now := time.Now()
	sig := noSignal()
	sig.RetryAt, sig.Throttled = now.Add(400*time.Millisecond), true
	require.NoError(t, a.Observe(bg, "p/pay", now, sig))

	d, src := take(t, b, "p/pay")
	assert.Equal(t, payretry.WaitRetryAfter, src)
	assert.InDelta(t, 400*time.Millisecond, d, float64(100*time.Millisecond), "the other replica is held too")
	d, _ = take(t, b, "p/status")
	assert.Zero(t, d, "other scopes are not held")

	// A shorter Retry-After does not shorten the hold.
	sig.RetryAt = time.Now().Add(50 * time.Millisecond)
	require.NoError(t, b.Observe(bg, "p/pay", time.Now(), sig))
	d, _ = take(t, a, "p/pay")
	assert.Greater(t, d, 200*time.Millisecond)

	time.Sleep(d)
	d, src = take(t, a, "p/pay")
	assert.Zero(t, d)
	assert.Equal(t, payretry.WaitNone, src)
}

func TestWindowCountsAllReplicas(t *testing.T) {
	a, b := pair(t, Options{})
	now := time.Now()
	sig := noSignal()
	sig.Limit, sig.Remaining, sig.Reset, sig.OK = 10, 10, now.Add(time.Second), true
	require.NoError(t, a.Observe(bg, "p/pay", now, sig))

	granted := 0
	var wait time.Duration
	for i := range 20 {
		d, src := take(t, []*Limiter{a, b}[i%2], "p/pay")
		if d > 0 {
			assert.Equal(t, payretry.WaitRateLimit, src)
			wait = d
			break
		}
		granted++
	}
	assert.Equal(t, 10, granted, "the two replicas together send the window's limit, not twice it")
	assert.InDelta(t, time.Second+pacing.HoldMargin, wait, float64(150*time.Millisecond), "held until the reset")

	// The window rolls on Redis time: both go again.
	time.Sleep(wait)
	d, _ := take(t, b, "p/pay")
	assert.Zero(t, d)
	d, _ = take(t, a, "p/pay")
	assert.Zero(t, d)
}

// A request sent just before the reset may reach the provider after it: it
// counts in the next window too.
func TestBoundaryRequestsCountInTheNextWindow(t *testing.T) {
	a, b := pair(t, Options{})
	now := time.Now()
	sig := noSignal()
	sig.Limit, sig.Remaining, sig.Reset, sig.OK = 10, 10, now.Add(boundaryGuard+30*time.Millisecond), true
	require.NoError(t, a.Observe(bg, "p/pay", now, sig))
	time.Sleep(40 * time.Millisecond) // into the guard band
	for i := range 3 {
		d, _ := take(t, []*Limiter{a, b}[i%2], "p/pay")
		require.Zero(t, d)
	}
	d, _ := take(t, a, "p/pay")
	require.Zero(t, d, "4 of 10")
	d, _ = take(t, a, "p/pay")
	require.Zero(t, d, "5 of 10")
	time.Sleep(boundaryGuard) // the window rolled
	granted := 0
	for i := range 20 {
		d, _ := take(t, []*Limiter{a, b}[i%2], "p/pay")
		if d > 0 {
			break
		}
		granted++
	}
	assert.Equal(t, 5, granted, "the five sent in the last %v count in the new window", boundaryGuard)
}

func TestProviderCountIsShared(t *testing.T) {
	a, b := pair(t, Options{})
	now := time.Now()
	sig := noSignal()
	sig.Limit, sig.Remaining, sig.Reset, sig.OK = 10, 3, now.Add(time.Second), true
	require.NoError(t, a.Observe(bg, "p/pay", now, sig))
	// Other clients of the account spend the window: the provider says so
	// to one replica.
	sig.Remaining = 0
	require.NoError(t, a.Observe(bg, "p/pay", time.Now(), sig))
	d, src := take(t, b, "p/pay")
	assert.Equal(t, payretry.WaitRateLimit, src)
	assert.InDelta(t, time.Second, d, float64(150*time.Millisecond), "Remaining 0 seen by one replica holds the other")

	// A later window replaces it; an earlier reset (a late response of an
	// old window) does not.
	old := noSignal()
	old.Limit, old.Remaining, old.Reset, old.OK = 10, 10, time.Now().Add(-time.Second), true
	require.NoError(t, b.Observe(bg, "p/pay", time.Now(), old))
	d, _ = take(t, a, "p/pay")
	assert.Greater(t, d, 500*time.Millisecond)
}

func TestBucketsAreSharedGCRA(t *testing.T) {
	a, b := pair(t, Options{})
	lim := payretry.Limit{Name: "payment", Rate: 50, Burst: 5}

	// The burst, across both replicas.
	for i := range 5 {
		d, _ := take(t, []*Limiter{a, b}[i%2], "p/pay", lim)
		require.Zero(t, d, "burst request %d", i)
	}
	d, src := take(t, b, "p/pay", lim)
	assert.Equal(t, payretry.WaitRateLimit, src)
	assert.Greater(t, d, time.Duration(0))
	assert.LessOrEqual(t, d, 20*time.Millisecond, "one emission interval at 50/s")

	// The rate, with both replicas pushing for 600 ms.
	var granted atomic.Int32
	var wg sync.WaitGroup
	start := time.Now()
	for _, l := range []*Limiter{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < 600*time.Millisecond {
				d, _, err := l.Take(bg, "p/pay", []payretry.Limit{lim}, time.Now())
				if err != nil {
					t.Error(err)
					return
				}
				if d == 0 {
					granted.Add(1)
					continue
				}
				time.Sleep(d)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	max := int32(elapsed.Seconds()*lim.Rate) + 2
	t.Logf("%d granted in %v at %v/s (burst spent)", granted.Load(), elapsed, lim.Rate)
	assert.LessOrEqual(t, granted.Load(), max, "never above the rate")
	assert.GreaterOrEqual(t, granted.Load(), int32(0.75*0.6*lim.Rate), "close to the rate")
}

func TestBucketsAllOrNothing(t *testing.T) {
	a, b := pair(t, Options{})
	x := payretry.Limit{Name: "x", Rate: 1, Burst: 1}
	y := payretry.Limit{Name: "y", Rate: 1, Burst: 1}
	d, _ := take(t, a, "p/one", y)
	require.Zero(t, d)
	d, _ = take(t, b, "p/two", x, y) // y is spent: x must not be taken
	assert.InDelta(t, time.Second, d, float64(100*time.Millisecond))
	d, _ = take(t, a, "p/three", x)
	assert.Zero(t, d, "x was left untouched")

	// Buckets are per provider and limit name: a combined limit binds all
	// the provider's scopes, not another provider's.
	all := payretry.Limit{Name: "all", Rate: 1, Burst: 2}
	d1, _ := take(t, a, "p/pay", all)
	d2, _ := take(t, b, "p/status", all)
	d3, _ := take(t, a, "p/pay", all)
	d4, _ := take(t, b, "q/pay", all)
	assert.Equal(t, []bool{true, true, false, true}, []bool{d1 == 0, d2 == 0, d3 == 0, d4 == 0})
}

func TestOneProbePerIntervalAcrossReplicas(t *testing.T) {
	a, b := pair(t, Options{})
	fail := noSignal()
	fail.Failed = true
	for i := range pacing.OutageFailures {
		require.NoError(t, []*Limiter{a, b}[i%2].Observe(bg, "p/pay", time.Now(), fail))
	}
	d, src := take(t, b, "p/pay")
	assert.Equal(t, payretry.WaitOutage, src)
	assert.InDelta(t, pacing.ProbeInterval, d, float64(50*time.Millisecond), "down after OutageFailures failures, counted across replicas")

	for round := range 3 {
		time.Sleep(d + 5*time.Millisecond)
		var probes, waits atomic.Int32
		var wg sync.WaitGroup
		for i := range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d, src, err := []*Limiter{a, b}[i%2].Take(bg, "p/pay", nil, time.Now())
				assert.NoError(t, err)
				assert.Equal(t, payretry.WaitOutage, src)
				if d == 0 {
					probes.Add(1)
				} else {
					waits.Add(1)
				}
			}()
		}
		wg.Wait()
		assert.Equal(t, int32(1), probes.Load(), "round %d: one probe across the replicas", round)
		assert.Equal(t, int32(9), waits.Load())
		d, _ = take(t, a, "p/pay")
		// The probe failed: the interval starts again.
		require.NoError(t, a.Observe(bg, "p/pay", time.Now(), fail))
	}

	ok := noSignal()
	ok.OK = true
	require.NoError(t, b.Observe(bg, "p/pay", time.Now(), ok))
	d, src = take(t, a, "p/pay")
	assert.Zero(t, d)
	assert.Equal(t, payretry.WaitNone, src, "back up: everyone goes")

	// Down when OutageFailures of the last OutageWindow requests failed,
	// across replicas: a success between them does not break them up; a
	// cool-down sets the probe interval.
	for range pacing.OutageFailures - 1 {
		require.NoError(t, a.Observe(bg, "p/q", time.Now(), fail))
	}
	require.NoError(t, b.Observe(bg, "p/q", time.Now(), ok))
	d, _ = take(t, b, "p/q")
	assert.Zero(t, d, "not down yet")
	// The same, with enough successes after the first failure that it is
	// no longer among the last OutageWindow: not down.
	for range pacing.OutageFailures - 1 {
		require.NoError(t, a.Observe(bg, "p/r", time.Now(), fail))
	}
	for range pacing.OutageWindow - pacing.OutageFailures + 1 {
		require.NoError(t, b.Observe(bg, "p/r", time.Now(), ok))
	}
	require.NoError(t, a.Observe(bg, "p/r", time.Now(), fail))
	d, _ = take(t, b, "p/r")
	assert.Zero(t, d, "the first failure is no longer among the last requests")
	fail.CoolDown = 700 * time.Millisecond
	require.NoError(t, a.Observe(bg, "p/q", time.Now(), fail))
	d, src = take(t, b, "p/q")
	assert.Equal(t, payretry.WaitOutage, src)
	assert.InDelta(t, 700*time.Millisecond, d, float64(100*time.Millisecond))
}

// The scripts take the pacing numbers from payretry.Pacing as arguments:
// with other numbers, they hold otherwise.
func TestScriptsPaceByPacing(t *testing.T) {
	srv := startRedis(t)
	p := payretry.DefaultPacing()
	p.HoldMargin, p.DefaultHold, p.ProbeInterval = 40*time.Millisecond, 300*time.Millisecond, 250*time.Millisecond
	p.OutageWindow, p.OutageFailures = 4, 2
	require.NotEqual(t, pacing, p)
	l := newLimiter(newClient(t, srv.Addr), Options{Logger: quiet()}, p)

	spent := noSignal()
	spent.OK, spent.Remaining = true, 0
	require.NoError(t, l.Observe(bg, "p/nowindow", time.Now(), spent))
	d, src := take(t, l, "p/nowindow")
	assert.Equal(t, payretry.WaitRetryAfter, src)
	assert.InDelta(t, p.DefaultHold, d, float64(30*time.Millisecond), "spent without a reset: DefaultHold")

	require.NoError(t, l.Observe(bg, "p/window", time.Now(), okSignal(1, 0, time.Now().Add(200*time.Millisecond))))
	d, src = take(t, l, "p/window")
	assert.Equal(t, payretry.WaitRateLimit, src)
	assert.InDelta(t, 200*time.Millisecond+p.HoldMargin, d, float64(20*time.Millisecond), "until the reset, plus HoldMargin")

	// Down when OutageFailures of the last OutageWindow failed: 2 of 4.
	fail, ok := noSignal(), noSignal()
	fail.Failed, ok.OK = true, true
	for _, sig := range []payretry.Signal{fail, ok, ok, ok, fail} {
		require.NoError(t, l.Observe(bg, "p/down", time.Now(), sig))
	}
	d, src = take(t, l, "p/down")
	require.Zero(t, d, "one failure among the last four")
	require.NoError(t, l.Observe(bg, "p/down", time.Now(), fail))
	d, src = take(t, l, "p/down")
	assert.Equal(t, payretry.WaitOutage, src)
	assert.InDelta(t, p.ProbeInterval, d, float64(30*time.Millisecond), "the next probe after ProbeInterval")
	time.Sleep(d)
	d, src = take(t, l, "p/down")
	require.Equal(t, payretry.WaitOutage, src)
	require.Zero(t, d, "the probe")
	d, _ = take(t, l, "p/down")
	assert.InDelta(t, p.ProbeInterval, d, float64(30*time.Millisecond), "the probe after it, ProbeInterval later")
}

// Outage detection in Redis follows the in-process limiter's, request by
// request: the same ends of requests (failures, successes, 429s) in phases
// of failure rates take the scope down and bring it up at the same
// requests, and Redis keeps the last requests as Pacing.Record does.
func TestOutageFollowsTheInProcessLimiter(t *testing.T) {
	srv := startRedis(t)
	l := New(newClient(t, srv.Addr), Options{Logger: quiet()})
	local := payretry.NewLimiter()
	downScopes := local.(interface{ DownScopes() []string }).DownScopes
	rng := rand.New(rand.NewPCG(1, 2))
	var outcomes uint64
	var downs, ups int
	wasDown := false
	for i := range 600 {
		failRate := []float64{0.1, 0.7, 0.4, 0.95, 0.55}[i/120]
		sig := noSignal()
		switch r := rng.Float64(); {
		case r < failRate:
			sig.Failed = true
		case r < failRate+0.05:
			sig.Throttled = true
		default:
			sig.OK = true
		}
		now := time.Now()
		require.NoError(t, l.Observe(bg, "p/pay", now, sig))
		require.NoError(t, local.Observe(bg, "p/pay", now, sig))
		localDown := slices.Contains(downScopes(), "p/pay")
		if sig.Failed || !wasDown {
			outcomes, _ = pacing.Record(outcomes, sig.Failed)
		} else {
			outcomes = 0 // an answer brings the scope up
		}
		if localDown != wasDown {
			if localDown {
				downs++
			} else {
				ups++
			}
			wasDown = localDown
		}
		require.Equal(t, localDown, hashField(t, l, "p/pay", "down") == "1", "request %d: down", i)
		require.Equal(t, strconv.FormatUint(outcomes, 10), hashField(t, l, "p/pay", "outcomes"), "request %d: the last requests", i)
	}
	t.Logf("the scope went down %d times and up %d times", downs, ups)
	assert.GreaterOrEqual(t, downs, 2, "the phases take the scope down")
	assert.GreaterOrEqual(t, ups, 2, "and bring it up")
}

// The scripts keep the last requests in Lua's 32-bit numbers: payretry's
// window fits, and the widest they keep works to its last bit.
func TestOutageWindowFitsTheScripts(t *testing.T) {
	require.LessOrEqual(t, pacing.OutageWindow, maxOutageWindow, "payretry.DefaultPacing judges more requests than the scripts keep")
	srv := startRedis(t)
	p := pacing
	p.OutageWindow, p.OutageFailures = maxOutageWindow, maxOutageWindow
	l := newLimiter(newClient(t, srv.Addr), Options{Logger: quiet()}, p)
	fail := noSignal()
	fail.Failed = true
	for range maxOutageWindow - 1 {
		require.NoError(t, l.Observe(bg, "p/pay", time.Now(), fail))
	}
	d, _ := take(t, l, "p/pay")
	require.Zero(t, d, "31 of 32")
	require.NoError(t, l.Observe(bg, "p/pay", time.Now(), fail))
	_, src := take(t, l, "p/pay")
	assert.Equal(t, payretry.WaitOutage, src, "32 of 32")
}

func TestKeysAreNamespacedAndExpire(t *testing.T) {
	srv := startRedis(t)
	rdb := newClient(t, srv.Addr)
	l := New(rdb, Options{Prefix: "app{1}", KeyTTL: 200 * time.Millisecond, Logger: quiet()})

	lim := payretry.Limit{Name: "payment", Rate: 10, Burst: 1}
	d, _ := take(t, l, "smartretry/payment", lim)
	require.Zero(t, d)
	sig := noSignal()
	sig.RetryAt = time.Now().Add(300 * time.Millisecond)
	require.NoError(t, l.Observe(bg, "smartretry/status", time.Now(), sig))

	keys, err := rdb.Keys(bg, "*").Result()
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{
		"app%7B1%7D:{smartretry}:scope:smartretry/payment",
		"app%7B1%7D:{smartretry}:scope:smartretry/status",
		"app%7B1%7D:{smartretry}:bucket:payment",
	}, keys, "prefix escaped; the provider is the hash tag")

	ttl := func(k string) time.Duration {
		d, err := rdb.PTTL(bg, k).Result()
		require.NoError(t, err)
		return d
	}
	assert.LessOrEqual(t, ttl("app%7B1%7D:{smartretry}:bucket:payment"), 101*time.Millisecond, "a bucket lives until it is full again")
	assert.Greater(t, ttl("app%7B1%7D:{smartretry}:bucket:payment"), time.Duration(0))
	assert.LessOrEqual(t, ttl("app%7B1%7D:{smartretry}:scope:smartretry/payment"), 200*time.Millisecond, "KeyTTL past the last instant")
	h := ttl("app%7B1%7D:{smartretry}:scope:smartretry/status")
	assert.Greater(t, h, 400*time.Millisecond, "the hold, then KeyTTL")
	assert.LessOrEqual(t, h, 501*time.Millisecond)

	time.Sleep(600 * time.Millisecond)
	n, err := rdb.DBSize(bg).Result()
	require.NoError(t, err)
	assert.Zero(t, n, "everything expired")
	d, _ = take(t, l, "smartretry/payment", lim)
	assert.Zero(t, d, "an expired bucket is a full one")
}

// Holds follow the in-process limiter's, signal by signal: each signal as
// the Transport passes it to Observe (RetryAt on a 429 only, every instant
// bounded by MaxRetryAfter) holds a scope in Redis as long as it holds one
// in payretry.NewLimiter, for the same reason, and neither holds it after.
func TestHoldsFollowTheInProcessLimiter(t *testing.T) {
	srv := startRedis(t)
	l := New(newClient(t, srv.Addr), Options{Logger: quiet()})
	local := payretry.NewLimiter()
	now := time.Now()
	const bound = 300 * time.Millisecond // as if MaxRetryAfter
	failed, throttled := noSignal(), noSignal()
	failed.Failed, throttled.Throttled = true, true
	with := func(sig payretry.Signal, f func(*payretry.Signal)) payretry.Signal { f(&sig); return sig }
	cases := map[string]payretry.Signal{
		"spent, reset, no limit":   okSignal(-1, 0, now.Add(bound)),
		"spent, no reset":          okSignal(-1, 0, time.Time{}),
		"limit 0, reset":           okSignal(0, 0, now.Add(bound)),
		"limit 0, no reset":        okSignal(0, -1, time.Time{}),
		"spent window":             okSignal(10, 0, now.Add(bound)),
		"reset clipped, not spent": okSignal(10, 3, now.Add(bound)),
		"429, Retry-After clipped": with(throttled, func(s *payretry.Signal) { s.RetryAt = now.Add(bound) }),
		"429 with quota left":      with(throttled, func(s *payretry.Signal) { s.Limit, s.Remaining, s.Reset = 10, 3, now.Add(bound) }),
		"5xx":                      failed,
	}
	for name, sig := range cases {
		require.NoError(t, l.Observe(bg, "p/"+name, now, sig))
		require.NoError(t, local.Observe(bg, "p/"+name, now, sig))
	}
	compare := func(when string, now time.Time) {
		t.Helper()
		for name := range cases {
			want, wantSrc, err := local.Take(bg, "p/"+name, nil, now)
			require.NoError(t, err)
			got, src, err := l.Take(bg, "p/"+name, nil, now)
			require.NoError(t, err)
			assert.Equal(t, wantSrc, src, "%s, %s: the wait's source", name, when)
			assert.InDelta(t, want, got, float64(40*time.Millisecond), "%s, %s: the wait", name, when)
			assert.LessOrEqual(t, got, max(bound, pacing.DefaultHold)+pacing.HoldMargin, "%s, %s: within the bound", name, when)
		}
	}
	compare("at once", time.Now())
	// Past every hold (the longest is DefaultHold): nothing holds, neither
	// a limit of 0, which is spent until the reset, not for ever.
	time.Sleep(pacing.DefaultHold + 2*pacing.HoldMargin)
	compare("after the holds", time.Now())
	for name := range cases {
		d, _ := take(t, l, "p/"+name)
		assert.Zero(t, d, "%s: free after the holds", name)
	}
}

// Through a Transport, a replica holds the others only on evidence about
// the account: a 429 (for at most MaxRetryAfter), a spent window (its
// reset clipped to MaxRetryAfter); not a 5xx's Retry-After, nor a 429
// whose quota fields say requests are left.
func TestTransportHoldsReplicasOnEvidenceOnly(t *testing.T) {
	a, b := pair(t, Options{})
	const bound = 400 * time.Millisecond
	far := strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)
	soon := strconv.FormatInt(time.Now().Add(2*time.Second).Unix(), 10)
	answers := map[string]struct {
		code    int
		header  []string
		src     payretry.WaitSource // b's Take after a's call; WaitNone: not held
		atLeast time.Duration
	}{
		"5xx":      {503, []string{"Retry-After", "30"}, payretry.WaitNone, 0},
		"429left":  {429, []string{"Retry-After", "30", "X-RateLimit-Limit", "100", "X-RateLimit-Remaining", "87", "X-RateLimit-Reset", soon}, payretry.WaitNone, 0},
		"429":      {429, []string{"Retry-After", "30"}, payretry.WaitRetryAfter, bound - 100*time.Millisecond},
		"spentfar": {200, []string{"X-RateLimit-Limit", "100", "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", far}, payretry.WaitRateLimit, bound - 100*time.Millisecond},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ans := answers[strings.TrimPrefix(r.URL.Path, "/")]
		for i := 0; i < len(ans.header); i += 2 {
			w.Header().Set(ans.header[i], ans.header[i+1])
		}
		w.WriteHeader(ans.code)
	}))
	t.Cleanup(srv.Close)
	for name, ans := range answers {
		tr, err := payretry.NewTransport(nil, payretry.Policy{Name: name, MaxAttempts: 1, MaxRetryAfter: bound, Limiter: a})
		require.NoError(t, err)
		resp, err := (&http.Client{Transport: tr}).Get(srv.URL + "/" + name)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, ans.code, resp.StatusCode)
		d, src := take(t, b, name)
		assert.Equal(t, ans.src, src, name)
		if ans.src == payretry.WaitNone {
			assert.Zero(t, d, "%s: the other replica is not held", name)
			continue
		}
		assert.Greater(t, d, ans.atLeast, "%s: the other replica is held", name)
		assert.LessOrEqual(t, d, bound+pacing.HoldMargin, "%s: for at most MaxRetryAfter", name)
	}
}

// The replicas' clocks (the now they pass) do not matter: instants travel
// as durations from now and are anchored on Redis time.
func TestClockSkewDoesNotMatter(t *testing.T) {
	a, b := pair(t, Options{})
	ahead := func() time.Time { return time.Now().Add(time.Hour) }
	behind := func() time.Time { return time.Now().Add(-37 * time.Minute) }

	now := ahead()
	sig := noSignal()
	sig.RetryAt, sig.Throttled = now.Add(300*time.Millisecond), true
	require.NoError(t, a.Observe(bg, "p/hold", now, sig))
	d, src, err := b.Take(bg, "p/hold", nil, behind())
	require.NoError(t, err)
	assert.Equal(t, payretry.WaitRetryAfter, src)
	assert.InDelta(t, 300*time.Millisecond, d, float64(80*time.Millisecond))

	now = ahead()
	win := noSignal()
	win.Limit, win.Remaining, win.Reset, win.OK = 2, 2, now.Add(time.Second), true
	require.NoError(t, a.Observe(bg, "p/win", now, win))
	// The same window, as the replica behind reads it.
	now = behind()
	win.Remaining, win.Reset = 1, now.Add(time.Second)
	require.NoError(t, b.Observe(bg, "p/win", now, win))
	for range 2 {
		d, _, err = b.Take(bg, "p/win", nil, behind())
		require.NoError(t, err)
		assert.Zero(t, d)
	}
	d, src, err = a.Take(bg, "p/win", nil, ahead())
	require.NoError(t, err)
	assert.Equal(t, payretry.WaitRateLimit, src)
	assert.InDelta(t, time.Second, d, float64(150*time.Millisecond), "not an hour, not 37 minutes")
}

func TestAdaptiveRateStaysLocal(t *testing.T) {
	a, b := pair(t, Options{})
	blind := noSignal()
	blind.Throttled = true
	now := time.Now()
	for i := range 20 {
		d, _, err := a.Take(bg, "p/pay", nil, now)
		require.NoError(t, err)
		require.Zero(t, d, "request %d", i)
	}
	require.NoError(t, a.Observe(bg, "p/pay", now, blind))
	require.NoError(t, a.Observe(bg, "p/pay", now, blind))
	// a measured 20/s and now paces at 14/s: it has one place at once, then
	// waits; b is not slowed by a's guess.
	d, _, err := a.Take(bg, "p/pay", nil, now)
	require.NoError(t, err)
	assert.Zero(t, d)
	d, src, err := a.Take(bg, "p/pay", nil, now)
	require.NoError(t, err)
	assert.Equal(t, payretry.WaitRateLimit, src)
	assert.InDelta(t, time.Second/14, d, float64(5*time.Millisecond))
	d, _, err = b.Take(bg, "p/pay", nil, now)
	require.NoError(t, err)
	assert.Zero(t, d)
}

// The replica's adaptive rate is a payretry.AdaptiveRate fed by its Takes
// and Observes: a success raises it, and a Take that Redis makes wait (here
// a hold) gives its place back.
func TestAdaptiveRateGivesBackItsPlaceWhenRedisWaits(t *testing.T) {
	srv := startRedis(t)
	l := New(newClient(t, srv.Addr), Options{Logger: quiet()})
	blind := noSignal()
	blind.Throttled = true
	now := time.Now()
	for range 20 {
		d, _, err := l.Take(bg, "p/pay", nil, now)
		require.NoError(t, err)
		require.Zero(t, d)
	}
	require.NoError(t, l.Observe(bg, "p/pay", now, blind))
	require.NoError(t, l.Observe(bg, "p/pay", now, blind))
	ok := noSignal()
	ok.OK = true
	require.NoError(t, l.Observe(bg, "p/pay", now, ok))
	assert.InDelta(t, 14.28, l.scope("p/pay").adaptive.Limit(), 1e-9, "0.7 of 20/s, then 2% more")

	hold := blind
	hold.RetryAt = now.Add(20 * time.Millisecond)
	require.NoError(t, l.Observe(bg, "p/pay", now, hold))
	d, src, err := l.Take(bg, "p/pay", nil, now)
	require.NoError(t, err)
	require.Equal(t, payretry.WaitRetryAfter, src)
	time.Sleep(d + 5*time.Millisecond)
	d, _, err = l.Take(bg, "p/pay", nil, time.Now())
	require.NoError(t, err)
	assert.Zero(t, d, "the place the hold did not use (1/14.28 s after the first)")
}

func TestFallbackWhenRedisIsDown(t *testing.T) {
	srv := startRedis(t)
	var lines logs
	fallback := payretry.NewLimiter()
	l := New(newClient(t, srv.Addr), Options{
		Timeout: 50 * time.Millisecond, RetryInterval: 200 * time.Millisecond,
		Fallback: fallback, Logger: slogger(&lines),
	})
	d, _ := take(t, l, "p/pay")
	require.Zero(t, d)
	require.False(t, l.Degraded())

	srv.Stop()
	// Many concurrent requests: each answered within the timeout, one line.
	var slowest atomic.Int64
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			d, _, err := l.Take(bg, "p/pay", nil, time.Now())
			assert.NoError(t, err)
			assert.Zero(t, d)
			el := int64(time.Since(start))
			for {
				cur := slowest.Load()
				if el <= cur || slowest.CompareAndSwap(cur, el) {
					break
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("slowest Take while Redis is down: %v", time.Duration(slowest.Load()))
	assert.LessOrEqual(t, time.Duration(slowest.Load()), 50*time.Millisecond+100*time.Millisecond)
	assert.True(t, l.Degraded())
	assert.Equal(t, 1, lines.count(msgDown), "logged once per outage, not per request")

	// The fallback paces meanwhile: a hold observed now is kept in-process.
	sig := noSignal()
	sig.RetryAt = time.Now().Add(time.Second)
	require.NoError(t, l.Observe(bg, "p/pay", time.Now(), sig))
	d, src := take(t, l, "p/pay")
	assert.Equal(t, payretry.WaitRetryAfter, src)
	assert.Greater(t, d, 800*time.Millisecond)

	// Redis comes back: after RetryInterval one call tries it and the
	// limiter is shared again.
	require.NoError(t, srv.Restart(bg))
	time.Sleep(250 * time.Millisecond)
	d, _ = take(t, l, "p/other")
	assert.Zero(t, d)
	assert.False(t, l.Degraded(), "recovered")
	assert.Equal(t, 1, lines.count(msgBack))
	assert.Equal(t, 1, lines.count(msgDown))
	st := l.Stats()
	assert.Equal(t, int64(1), st.Outages)
	assert.Equal(t, int64(1), st.Recoveries)
	assert.Positive(t, st.FallbackTakes)
}

func TestSlowRedisNeverBlocksPastTheTimeout(t *testing.T) {
	// A client that honours context deadlines runs the script in the
	// caller's goroutine; another in a goroutine of its own (see run).
	t.Run("context deadlines", func(t *testing.T) {
		srv := startRedis(t)
		c := newClient(t, srv.Addr)
		require.True(t, honoursDeadlines(c))
		testSlowRedis(t, srv, c)
	})
	t.Run("no context deadlines", func(t *testing.T) {
		srv := startRedis(t)
		c := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1}) // reads wait 3 s
		t.Cleanup(func() { c.Close() })
		require.False(t, honoursDeadlines(c))
		testSlowRedis(t, srv, c)
	})
}

func testSlowRedis(t *testing.T, srv *redisserver.Server, c *redis.Client) {
	var lines logs
	l := New(c, Options{Timeout: 50 * time.Millisecond, RetryInterval: 100 * time.Millisecond, Logger: slogger(&lines)})
	d, _ := take(t, l, "p/pay")
	require.Zero(t, d)

	require.NoError(t, srv.Pause()) // accepts, never answers
	t.Cleanup(func() { _ = srv.Resume() })
	start := time.Now()
	d, _, err := l.Take(bg, "p/pay", nil, time.Now())
	el := time.Since(start)
	require.NoError(t, err)
	assert.Zero(t, d)
	assert.GreaterOrEqual(t, el, 50*time.Millisecond)
	assert.Less(t, el, 150*time.Millisecond, "bounded by Options.Timeout")
	assert.True(t, l.Degraded())
	// Within RetryInterval, Redis is not tried at all.
	start = time.Now()
	_, _, _ = l.Take(bg, "p/pay", nil, time.Now())
	assert.Less(t, time.Since(start), 20*time.Millisecond)
	// A caller's shorter deadline wins, and its expiry is not an outage.
	require.NoError(t, srv.Resume())
	time.Sleep(120 * time.Millisecond)
	for l.Degraded() {
		take(t, l, "p/pay")
		time.Sleep(10 * time.Millisecond)
	}
	assert.Equal(t, 1, lines.count(msgBack))
	ctx, cancel := context.WithCancel(bg)
	cancel()
	_, _, err = l.Take(ctx, "p/pay", nil, time.Now())
	require.NoError(t, err)
	assert.False(t, l.Degraded(), "the caller's own context is no Redis outage")
}

func TestFailClosed(t *testing.T) {
	srv := startRedis(t)
	l := New(newClient(t, srv.Addr), Options{FailClosed: true, Logger: quiet()})
	srv.Stop()
	for range 3 {
		d, src, err := l.Take(bg, "p/pay", nil, time.Now())
		require.NoError(t, err, "an error would make the Transport send unpaced")
		assert.Equal(t, time.Second, d)
		assert.Equal(t, payretry.WaitRateLimit, src)
	}
	assert.NoError(t, l.Observe(bg, "p/pay", time.Now(), noSignal()))
}

func slogger(h *logs) *slog.Logger { return slog.New(h) }

// hashField reads a field of a scope's state in Redis.
func hashField(t *testing.T, l *Limiter, scope, field string) string {
	t.Helper()
	v, err := l.client.HGet(bg, l.scope(scope).key, field).Result()
	require.NoError(t, err)
	return v
}

func okSignal(limit, remaining int, reset time.Time) payretry.Signal {
	sig := noSignal()
	sig.OK, sig.Limit, sig.Remaining, sig.Reset = true, limit, remaining, reset
	return sig
}

// A success that holds nobody reaches Redis with the next Take: one round
// trip per request. Anything that holds or counts goes at once.
func TestSuccessGoesWithTheNextTake(t *testing.T) {
	a, b := pair(t, Options{})
	reset := time.Now().Add(time.Second)

	// A scope Redis has not called quiet yet: the success goes at once.
	require.NoError(t, a.Observe(bg, "p/pay", time.Now(), okSignal(10, 9, reset)))
	assert.Equal(t, int64(1), a.Stats().RedisCalls)
	d, _ := take(t, a, "p/pay") // Redis: quiet
	require.Zero(t, d)

	calls := a.Stats().RedisCalls
	require.NoError(t, a.Observe(bg, "p/pay", time.Now(), okSignal(10, 8, reset)))
	require.NoError(t, a.Observe(bg, "p/pay", time.Now(), okSignal(10, 6, reset)))
	assert.Equal(t, calls, a.Stats().RedisCalls, "no call of their own")
	assert.Equal(t, "1", hashField(t, a, "p/pay", "used"), "not told yet")
	d, _ = take(t, a, "p/pay")
	require.Zero(t, d)
	assert.Equal(t, calls+1, a.Stats().RedisCalls)
	assert.Equal(t, int64(1), a.Stats().Carried)
	assert.Equal(t, "4", hashField(t, a, "p/pay", "used"), "the lowest Remaining of the window, with the Take")

	// What holds the others goes at once.
	for name, sig := range map[string]payretry.Signal{
		"Remaining 0": okSignal(10, 0, reset),
		"Retry-After": {Limit: -1, Remaining: -1, Throttled: true, RetryAt: time.Now().Add(50 * time.Millisecond)},
		"429":         {Limit: -1, Remaining: -1, Throttled: true},
		"failure":     {Limit: -1, Remaining: -1, Failed: true},
	} {
		scope := "p/" + name
		take(t, a, scope)
		calls := a.Stats().RedisCalls
		require.NoError(t, a.Observe(bg, scope, time.Now(), sig))
		assert.Equal(t, calls+1, a.Stats().RedisCalls, "%s: a call of its own", name)
	}
	d, src := take(t, b, "p/Remaining 0")
	assert.Equal(t, payretry.WaitRateLimit, src, "b sees the spent window at once")
	assert.Positive(t, d)

	// After a failure, a success goes at once: it counts among the last
	// requests before the next failure does.
	calls = a.Stats().RedisCalls
	require.NoError(t, a.Observe(bg, "p/failure", time.Now(), okSignal(10, 5, reset)))
	assert.Equal(t, calls+1, a.Stats().RedisCalls)
	assert.Equal(t, "2", hashField(t, a, "p/failure", "outcomes"), "the failure, then the success")
}

// record returns the outcomes bits after ends (true for a failure), as
// payretry's Pacing.Record keeps them, as Redis writes them.
func record(ends ...bool) string {
	var m uint64
	for _, failed := range ends {
		m, _ = pacing.Record(m, failed)
	}
	return strconv.FormatUint(m, 10)
}

// failures returns n failures for record.
func failures(n int) []bool { return slices.Repeat([]bool{true}, n) }

// A success carried by a later Take counts among the last requests, one 0
// for each, and does not end an outage, or clear failures, observed after
// it.
func TestCarriedSuccessKeepsItsPlace(t *testing.T) {
	a, b := pair(t, Options{})
	fail := noSignal()
	fail.Failed = true
	success := okSignal(-1, -1, time.Time{})

	// a's successes came before b's failures, which take the scope down:
	// it stays down.
	take(t, a, "p/before")
	require.NoError(t, a.Observe(bg, "p/before", time.Now(), success))
	time.Sleep(2 * time.Millisecond)
	for range pacing.OutageFailures {
		require.NoError(t, b.Observe(bg, "p/before", time.Now(), fail))
	}
	d, src := take(t, a, "p/before") // carries the success
	assert.Equal(t, int64(1), a.Stats().Carried)
	assert.Equal(t, payretry.WaitOutage, src, "still down")
	assert.Positive(t, d)

	// Not down yet: the carried successes shift a 0 in each, and the
	// failures observed after them stay counted; one more failure takes
	// the scope down.
	take(t, a, "p/count")
	for range 3 {
		require.NoError(t, a.Observe(bg, "p/count", time.Now(), success))
	}
	time.Sleep(2 * time.Millisecond)
	for range pacing.OutageFailures - 1 {
		require.NoError(t, b.Observe(bg, "p/count", time.Now(), fail))
	}
	d, src = take(t, a, "p/count") // carries the three successes
	assert.Equal(t, int64(2), a.Stats().Carried)
	require.Zero(t, d)
	assert.Equal(t, record(append(failures(pacing.OutageFailures-1), false, false, false)...),
		hashField(t, a, "p/count", "outcomes"), "three successes, after the failures")
	require.NoError(t, b.Observe(bg, "p/count", time.Now(), fail))
	_, src = take(t, a, "p/count")
	assert.Equal(t, payretry.WaitOutage, src, "the failures were not cleared")

	// a's success came after them (a still thought the scope quiet): it
	// brings the scope up, as it would have at once.
	take(t, a, "p/after")
	for range pacing.OutageFailures {
		require.NoError(t, b.Observe(bg, "p/after", time.Now(), fail))
	}
	time.Sleep(2 * time.Millisecond)
	require.NoError(t, a.Observe(bg, "p/after", time.Now(), success))
	d, src = take(t, a, "p/after")
	assert.Equal(t, int64(3), a.Stats().Carried)
	assert.Zero(t, d)
	assert.Equal(t, payretry.WaitNone, src, "up again")
	assert.Equal(t, "0", hashField(t, a, "p/after", "outcomes"), "cleared")
}

// A hold or spent window Redis reported is answered in-process until it
// ends; an outage wait is not (a probe's success ends it).
func TestKnownHoldsAreAnsweredInProcess(t *testing.T) {
	a, b := pair(t, Options{})
	sig := noSignal()
	sig.Throttled, sig.RetryAt = true, time.Now().Add(200*time.Millisecond)
	require.NoError(t, b.Observe(bg, "p/pay", time.Now(), sig))

	d, src := take(t, a, "p/pay")
	require.Equal(t, payretry.WaitRetryAfter, src)
	calls := a.Stats().RedisCalls
	for range 5 {
		d2, src := take(t, a, "p/pay")
		assert.Equal(t, payretry.WaitRetryAfter, src)
		assert.LessOrEqual(t, d2, d)
	}
	assert.Equal(t, calls, a.Stats().RedisCalls, "no Redis call during the hold")
	assert.Equal(t, int64(5), a.Stats().LocalWaits)
	time.Sleep(d)
	d, src = take(t, a, "p/pay")
	assert.Zero(t, d, "Redis agrees the hold is over when the replica asks")
	assert.Equal(t, payretry.WaitNone, src)
	assert.Equal(t, calls+1, a.Stats().RedisCalls)

	// A spent window.
	require.NoError(t, b.Observe(bg, "p/win", time.Now(), okSignal(10, 0, time.Now().Add(300*time.Millisecond))))
	_, src = take(t, a, "p/win")
	require.Equal(t, payretry.WaitRateLimit, src)
	calls = a.Stats().RedisCalls
	_, src = take(t, a, "p/win")
	assert.Equal(t, payretry.WaitRateLimit, src)
	assert.Equal(t, calls, a.Stats().RedisCalls)

	// An outage: every ask goes to Redis.
	fail := noSignal()
	fail.Failed = true
	for range pacing.OutageFailures {
		require.NoError(t, b.Observe(bg, "p/down", time.Now(), fail))
	}
	_, src = take(t, a, "p/down")
	require.Equal(t, payretry.WaitOutage, src)
	calls = a.Stats().RedisCalls
	ok := noSignal()
	ok.OK = true
	require.NoError(t, b.Observe(bg, "p/down", time.Now(), ok)) // the probe succeeded
	d, src = take(t, a, "p/down")
	assert.Zero(t, d, "up again at once")
	assert.Equal(t, payretry.WaitNone, src)
	assert.Equal(t, calls+1, a.Stats().RedisCalls)
}

// Requests of one replica waiting for a token ask Redis when it is due, one
// at a time, instead of all at once.
func TestBucketGate(t *testing.T) {
	a, b := pair(t, Options{})
	lim := []payretry.Limit{{Name: "pay", Rate: 20, Burst: 1}} // a token every 50 ms
	d, _ := take(t, a, "p/pay", lim...)
	require.Zero(t, d)
	d, src := take(t, a, "p/pay", lim...)
	require.Equal(t, payretry.WaitRateLimit, src)
	require.InDelta(t, 50*time.Millisecond, d, float64(10*time.Millisecond))

	calls := a.Stats().RedisCalls
	for range 5 {
		d2, src := take(t, a, "p/pay", lim...)
		assert.Equal(t, payretry.WaitRateLimit, src)
		assert.LessOrEqual(t, d2, d, "until the token is due")
	}
	assert.Equal(t, calls, a.Stats().RedisCalls, "the replica's other waiting requests do not ask Redis")
	d2, _ := take(t, b, "p/pay", lim...)
	assert.Positive(t, d2, "another replica asks Redis itself")
	assert.Equal(t, int64(1), b.Stats().RedisCalls)

	time.Sleep(d + 5*time.Millisecond)
	d, _ = take(t, a, "p/pay", lim...)
	assert.Zero(t, d, "the token, when due")
	d, src = take(t, a, "p/pay", lim...)
	assert.Equal(t, payretry.WaitRateLimit, src)
	assert.InDelta(t, 50*time.Millisecond, d, float64(10*time.Millisecond), "the next one")
	assert.Equal(t, calls+1, a.Stats().RedisCalls, "asked once when due; the next knows the wait")

	// Other limits, another gate; a bucket with tokens left, no gate.
	wide := []payretry.Limit{{Name: "wide", Rate: 1000, Burst: 100}}
	for range 10 {
		d, _ := take(t, a, "p/pay", wide...)
		assert.Zero(t, d)
	}
}

// A success a failed Take could not deliver waits for the next one.
func TestCarriedSuccessSurvivesAFailedTake(t *testing.T) {
	srv := startRedis(t)
	l := New(newClient(t, srv.Addr), Options{RetryInterval: 100 * time.Millisecond, Logger: quiet()})
	take(t, l, "p/pay")
	require.NoError(t, l.Observe(bg, "p/pay", time.Now(), okSignal(10, 3, time.Now().Add(5*time.Second))))
	srv.Stop()
	take(t, l, "p/pay") // fails: the fallback answers
	require.True(t, l.Degraded())
	require.NoError(t, srv.Restart(bg)) // empty
	time.Sleep(150 * time.Millisecond)
	take(t, l, "p/pay")
	require.False(t, l.Degraded())
	assert.Equal(t, int64(1), l.Stats().Carried)
	assert.Equal(t, "7", hashField(t, l, "p/pay", "used"), "delivered after the restart")
}
