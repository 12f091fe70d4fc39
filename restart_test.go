package payretry_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/payretry/payretry"
	"github.com/payretry/payretry/payretrytest"
)

// A process that dies mid-payment and a new one that resumes it by its
// operation id: the ledger must show the payment executed exactly once,
// whatever state the first process died in.

// process is one life of a service: its own Transport, its contexts, and a
// base transport that can kill it at an attempt: before the request leaves,
// or after the provider answered but before the answer is read.
type process struct {
	tr     *payretry.Transport
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	n       int
	killAt  int  // the attempt at which the process dies; 0: never
	killPre bool // die before the request leaves
}

func newProcess(t *testing.T, policy payretry.Policy) *process {
	pr := &process{}
	pr.ctx, pr.cancel = context.WithCancel(context.Background())
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)
	tr, err := payretry.NewTransport(fastRetryAfter{pr.killer(base)}, simPolicy(policy))
	require.NoError(t, err)
	pr.tr = tr
	return pr
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func (pr *process) killer(next http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		pr.mu.Lock()
		pr.n++
		die := pr.n == pr.killAt
		pr.mu.Unlock()
		if die && pr.killPre {
			pr.cancel()
			if r.Body != nil {
				r.Body.Close()
			}
			return nil, context.Canceled
		}
		resp, err := next.RoundTrip(r)
		if die {
			if resp != nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			pr.cancel() // the answer came, but nobody is left to read it
			return nil, errors.New("process killed")
		}
		return resp, err
	})
}

// pay sends the payment of operation op.
func (pr *process) pay(t *testing.T, provider payretrytest.Provider, url, op, ref string) (*http.Response, error) {
	body := `{"reference":"` + ref + `","amount":1000,"currency":"EUR"}`
	req, err := http.NewRequestWithContext(payretry.WithOperation(pr.ctx, op), http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := pr.tr.RoundTrip(req)
	if resp != nil {
		t.Cleanup(func() { resp.Body.Close() })
	}
	return resp, err
}

func TestResumeAfterRestart(t *testing.T) {
	presets := []struct {
		provider payretrytest.Provider
		policy   func() payretry.Policy
	}{
		{payretrytest.ORZCash, payretry.ORZCash},
		{payretrytest.Verto, payretry.Verto},
		{payretrytest.KeyStone, payretry.KeyStone},
		{payretrytest.SmartRetry, payretry.SmartRetry},
	}
	// The death points. The provider is down (503) for its first
	// downFor requests, then up.
	points := []struct {
		name     string
		downFor  int  // requests answered 503 before the provider is up
		killAt   int  // the attempt at which the first process dies
		killPre  bool // before the request leaves
		executed bool // whether the first process's attempts executed the payment
	}{
		{name: "before sending", killAt: 1, killPre: true},
		{name: "after sending", killAt: 1, executed: true},
		{name: "mid-retry, after a 503", downFor: 1, killAt: 2, killPre: true},
		{name: "after a retry was sent", downFor: 1, killAt: 2, executed: true},
		{name: "after two retries were sent", downFor: 2, killAt: 3, executed: true},
	}
	for _, ps := range presets {
		for _, pt := range points {
			t.Run(string(ps.provider)+"/"+pt.name, func(t *testing.T) {
				clk := &simClock{now: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
				var outages []payretrytest.Window
				if pt.downFor > 0 {
					outages = []payretrytest.Window{{Start: 0, End: time.Hour}}
				}
				srv := payretrytest.NewServer(ps.provider, payretrytest.Options{Clock: clk.Now,
					Plan: payretrytest.FaultPlan{Outages: outages}})
				defer srv.Close()
				// The provider comes back up after downFor requests.
				up := func() {
					if pt.downFor > 0 && srv.Stats().Requests >= pt.downFor {
						clk.set(clk.Now().Add(2 * time.Hour))
					}
				}
				const op, ref = "order-8812/charge", "order-8812"

				policy := ps.policy()
				policy.OnAttempt = func(payretry.Attempt) { up() }
				first := newProcess(t, policy)
				first.killAt, first.killPre = pt.killAt, pt.killPre
				_, err := first.pay(t, ps.provider, srv.PaymentURL(), op, ref)
				require.Error(t, err, "the first process dies")
				var e *payretry.Error
				require.ErrorAs(t, err, &e)
				assert.Equal(t, op, e.Operation)
				assert.Equal(t, pt.executed, srv.Executions(ref) == 1, "executed by the first process")
				first = nil // its Transport is dropped

				up()
				second := newProcess(t, ps.policy())
				resp, err := second.pay(t, ps.provider, srv.PaymentURL(), op, ref)
				require.NoError(t, err)
				assert.Less(t, resp.StatusCode, 300, "the resumed payment succeeds")
				assert.Equal(t, 1, srv.Executions(ref), "executed exactly once")
				assert.Zero(t, srv.Duplicates())
			})
		}
	}
}

// simClock is a settable clock for the simulator.
type simClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *simClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *simClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}
