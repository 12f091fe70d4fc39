package payretry_test

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/payretry/payretry"
	"github.com/payretry/payretry/payretrytest"
)

// simPayments is the number of payments driven through each preset.
const simPayments = 10_000

// simWorkers is the number of goroutines sending payments to each simulator.
const simWorkers = 16

// simPlan is the heavy fault mix of TestSimulator: about a third of the
// payment requests fail before or after executing, stall past the attempt
// time-out, lose their connection or are rate limited, and a short outage
// takes the provider down. Stalls are released when the attempt gives up, so
// a retry with the same key usually meets the stored answer, sometimes the key
// still in flight (409).
func simPlan(seed int64) payretrytest.FaultPlan {
	return payretrytest.FaultPlan{
		Seed:        seed,
		FailBefore:  0.08,
		FailAfter:   0.10,
		Stall:       0.05,
		StallFor:    500 * time.Millisecond,
		Reset:       0.13,
		RateLimited: 0.03,
		Latency:     20 * time.Millisecond,
		LatencyRate: 0.03,
		Outages:     []payretrytest.Window{{Start: 1500 * time.Millisecond, End: 1800 * time.Millisecond}},
	}
}

// simScale shrinks the preset's backoff intervals and rule waits (Verto's
// 5-10 s after a 5xx) by this factor, so that ten thousand payments fit in
// seconds. Keys, classes and rules are the preset's.
const simScale = 100

// simPolicy returns a copy of a preset for the simulator: waits scaled down by
// simScale, a 200 ms attempt time-out (shorter than the plan's stalls) and,
// for SmartRetry, client-side rates that match the simulator's raised limits.
func simPolicy(p payretry.Policy) payretry.Policy {
	p.InitialInterval /= simScale
	p.MaxInterval /= simScale
	p.AttemptTimeout = 200 * time.Millisecond
	p.MaxElapsedTime = 20 * time.Second
	rules := maps.Clone(p.Rules)
	for c, r := range rules {
		r.MinWait /= simScale
		r.MaxWait /= simScale
		rules[c] = r
	}
	p.Rules = rules
	limits := append([]payretry.Limit(nil), p.Limits...)
	for i := range limits {
		limits[i].Rate *= simRateScale
	}
	p.Limits = limits
	return p
}

// simRateScale raises SmartRetry's documented rate limits, on both the
// simulator and the client, so that ten thousand payments are not a
// hundred seconds of pacing at 100/s.
const simRateScale = 20

// fastRetryAfter is the base transport of TestSimulator: the simulator answers
// its 429s and 503s with whole-second Retry-After values, which payretry holds
// for the whole provider; the test turns them into "0" (the scaled-down wait
// rounds to nothing) so that the holds do not dominate the run. Everything
// else, X-RateLimit-* included, is passed through.
type fastRetryAfter struct{ base http.RoundTripper }

func (f fastRetryAfter) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := f.base.RoundTrip(r)
	if resp != nil && resp.Header.Get("Retry-After") != "" {
		resp.Header.Set("Retry-After", "0")
	}
	return resp, err
}

// simResult is how one payment ended, as the caller saw it.
type simResult struct {
	ref    string
	status int             // 0 when no response was returned
	err    *payretry.Error // from RoundTrip, or CheckResponse of a non-2xx
	other  error           // an error that is not a *payretry.Error
}

// TestSimulator drives ten thousand payments through each preset against its
// simulator under a heavy fault mix and checks that none is executed twice and
// none is lost: every payment either succeeded and was executed exactly once,
// failed definitively and was never executed, or was reported with an unknown
// outcome and an idempotency key that the ledger confirms.
func TestSimulator(t *testing.T) {
	presets := []struct {
		provider payretrytest.Provider
		policy   payretry.Policy
	}{
		{payretrytest.ORZCash, payretry.ORZCash()},
		{payretrytest.Verto, payretry.Verto()},
		{payretrytest.KeyStone, payretry.KeyStone()},
		{payretrytest.SmartRetry, payretry.SmartRetry()},
	}
	for i, ps := range presets {
		t.Run(string(ps.provider), func(t *testing.T) {
			t.Parallel()
			simulate(t, ps.provider, simPolicy(ps.policy), int64(101+i))
		})
	}
}

func simulate(t *testing.T, provider payretrytest.Provider, policy payretry.Policy, seed int64) {
	srv := payretrytest.NewServer(provider, payretrytest.Options{
		Plan: simPlan(seed),
		Limits: payretrytest.Limits{
			Payment: 100 * simRateScale, Status: 500 * simRateScale,
			Recurring: 100 * simRateScale, All: 1000 * simRateScale,
		},
	})
	defer srv.Close()
	base := &http.Transport{MaxIdleConnsPerHost: 2 * simWorkers, IdleConnTimeout: 5 * time.Second}
	defer base.CloseIdleConnections()
	tr, err := payretry.NewTransport(fastRetryAfter{base}, policy)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: tr}

	start := time.Now()
	results := make([]simResult, simPayments)
	next := make(chan int)
	var wg sync.WaitGroup
	for range simWorkers {
		wg.Go(func() {
			for i := range next {
				results[i] = pay(client, srv.PaymentURL(), fmt.Sprintf("sim-%s-%05d", provider, i))
			}
		})
	}
	for i := range simPayments {
		next <- i
	}
	close(next)
	wg.Wait()
	elapsed := time.Since(start)

	st := srv.Stats()
	faults := 0
	for f, n := range st.Faults {
		if f != payretrytest.FaultLatency {
			faults += n
		}
	}
	ledger := map[string][]payretrytest.Payment{}
	for _, p := range srv.Ledger() {
		ledger[p.Reference] = append(ledger[p.Reference], p)
	}

	var ok, failed, unknown, lost int
	classes := map[string]int{}
	reported := 0
	errorf := func(format string, args ...any) { // the first few in full
		if reported++; reported <= 20 {
			t.Errorf(format, args...)
		}
	}
	for _, r := range results {
		pays := ledger[r.ref]
		switch {
		case r.other != nil:
			lost++
			errorf("%s: error that is not a *payretry.Error: %v", r.ref, r.other)
		case r.status >= 200 && r.status <= 299:
			ok++
			if len(pays) != 1 {
				lost++
				errorf("%s: succeeded (%d) but executed %d times", r.ref, r.status, len(pays))
			}
		case r.err != nil && r.err.OutcomeUnknown:
			unknown++
			classes["unknown "+r.err.Class.String()]++
			if r.err.IdempotencyKey == "" {
				lost++
				errorf("%s: outcome unknown without an idempotency key to reconcile: %v", r.ref, r.err)
				continue
			}
			switch len(pays) {
			case 0: // not executed: reconciliation finds nothing, the payment can be made again
			case 1:
				if pays[0].IdempotencyKey != r.err.IdempotencyKey {
					lost++
					errorf("%s: outcome unknown under key %s, but executed under key %s",
						r.ref, r.err.IdempotencyKey, pays[0].IdempotencyKey)
				}
			default:
				errorf("%s: executed %d times", r.ref, len(pays))
			}
		default:
			failed++
			if r.err != nil {
				classes[r.err.Class.String()]++
			}
			if len(pays) != 0 {
				lost++
				errorf("%s: reported as a definitive failure (status %d: %v) but executed %d times; requests: %s",
					r.ref, r.status, r.err, len(pays), describe(srv.Attempts(r.ref)))
			}
		}
	}
	t.Logf("%s: %d payments in %v: %d succeeded, %d failed, %d outcome unknown %v; "+
		"%d requests (%d payment requests), %d faulted (%.0f%%), faults %v, statuses %v, conflicts %d, replays %d, executions %d",
		provider, simPayments, elapsed.Round(time.Millisecond), ok, failed, unknown, classes,
		st.Requests, st.Payments, faults, 100*float64(faults)/float64(st.Requests), st.Faults, st.ByStatus,
		st.Conflicts, st.Replays, st.Executions)

	if got := float64(faults) / float64(st.Requests); got < 0.30 {
		t.Errorf("%.1f%% of requests were faulted, want at least 30%%", 100*got)
	}
	if d := srv.Duplicates(); d != 0 {
		t.Errorf("%d duplicate executions, want 0", d)
	}
	if lost != 0 {
		t.Errorf("%d payments lost, want 0", lost)
	}
	if ok < simPayments/2 {
		t.Errorf("only %d of %d payments succeeded", ok, simPayments)
	}
}

// pay sends one payment and returns how it ended.
func pay(client *http.Client, url, ref string) simResult {
	res := simResult{ref: ref}
	body := fmt.Sprintf(`{"reference":%q,"amount":%d,"currency":"EUR"}`, ref, 100+len(ref))
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		res.other = err
		return res
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		if !errors.As(err, &res.err) {
			res.other = err
		}
		return res
	}
	defer resp.Body.Close()
	res.status = resp.StatusCode
	if cerr := payretry.CheckResponse(resp); cerr != nil {
		if !errors.As(cerr, &res.err) {
			res.other = cerr
		}
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return res
}

// describe lists the simulator's record of a payment's requests.
func describe(attempts []payretrytest.Attempt) string {
	var b strings.Builder
	for i, a := range attempts {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "#%d +%v status %d", i+1, a.At.Sub(attempts[0].At).Round(time.Millisecond), a.Status)
		if a.Fault != "" {
			fmt.Fprintf(&b, " fault %s", a.Fault)
		}
		if len(a.IdempotencyKey) >= 8 {
			fmt.Fprintf(&b, " key %s…", a.IdempotencyKey[:8])
		}
	}
	return b.String()
}
