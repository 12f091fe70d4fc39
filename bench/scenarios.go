package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"
)

// Row is the outcome of one client in one run of a scenario.
type Row struct {
	Scenario string             `json:"scenario"`
	Run      int                `json:"run"`
	Client   string             `json:"client"`
	Variant  string             `json:"variant,omitempty"`
	Metrics  map[string]float64 `json:"metrics"`
	// Series is what the provider received over time, for the charts of
	// the goodput and outage scenarios; not in the JSON.
	Series *Series `json:"-"`
}

// pay sends one payment through c, a JSON body with the header fields h, and
// returns the status of its answer within timeout, or 0 for none.
func pay(ctx context.Context, c *http.Client, url, ref string, h http.Header, timeout time.Duration) int {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(PaymentBody(ref)))
	if err != nil {
		return 0
	}
	req.Header = h.Clone()
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// bearer is the header of the scenarios' payments: the API key as a bearer
// token and, when key is not empty, an Idempotency-Key.
func bearer(key string) http.Header {
	h := http.Header{"Authorization": {"Bearer " + APIKey}}
	if key != "" {
		h.Set("Idempotency-Key", key)
	}
	return h
}

func ref(i int) string { return fmt.Sprintf("pay-%06d", i) }

// GoodputConfig is scenario 2: workers push payments through a client at a
// provider that allows Limit requests per second per API key.
type GoodputConfig struct {
	Limit          int
	Payments       int
	Workers        int
	PaymentTimeout time.Duration // deadline of one payment, all attempts
	Bound          time.Duration // the whole run stops by then
}

// DefaultGoodput is the published configuration: 100 req/s, 600 payments
// (6 windows at best), 8 workers.
func DefaultGoodput() GoodputConfig {
	return GoodputConfig{Limit: 100, Payments: 600, Workers: 8,
		PaymentTimeout: 30 * time.Second, Bound: 60 * time.Second}
}

// RunGoodput runs scenario 2 for one client. The run starts within 50 ms
// of a unix second, so that windows are (nearly) whole; the ideal run takes
// Payments/Limit windows.
//
// Metrics: elapsed_s; windows (windows spanned, first to last); goodput
// (payments answered 200 / (windows × Limit)); ok; failed; requests;
// throttled (429s); throttled_pct (429s / requests × 100);
// attempts_per_payment (requests / payments); max_per_window.
func RunGoodput(ctx context.Context, cfg GoodputConfig, client string) (Row, error) {
	p := NewRateLimitProvider(cfg.Limit)
	srv := httptest.NewServer(p)
	defer srv.Close()
	base := NewBaseTransport()
	defer base.CloseIdleConnections()
	_, c, err := NewClient(client, base, Options{})
	if err != nil {
		return Row{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Bound)
	defer cancel()

	// Start at the beginning of a window: now, if the current one is less
	// than 50 ms old (as it is right after the previous client, whose last
	// window just opened), or else just after the next unix second.
	now := time.Now()
	first := now.Unix()
	if now.Sub(time.Unix(first, 0)) > 50*time.Millisecond {
		first++
		if err := sleepUntil(ctx, time.Unix(first, int64(2*time.Millisecond))); err != nil {
			return Row{}, err
		}
	}
	start := time.Now()
	p.Begin(start)
	jobs := make(chan int)
	var ok atomic.Int64
	var wg sync.WaitGroup
	for range cfg.Workers {
		wg.Go(func() {
			for i := range jobs {
				if pay(ctx, c, srv.URL+PaymentPath, ref(i), bearer(""), cfg.PaymentTimeout) == http.StatusOK {
					ok.Add(1)
				}
			}
		})
	}
	for i := range cfg.Payments {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	end := time.Now()

	windows := float64(end.Unix() - first + 1)
	req, thr := float64(p.Requests()), float64(p.Throttled())
	okN := float64(ok.Load())
	return Row{Scenario: "goodput", Client: client, Metrics: map[string]float64{
		"elapsed_s":            end.Sub(start).Seconds(),
		"windows":              windows,
		"goodput":              okN / (windows * float64(cfg.Limit)),
		"ok":                   okN,
		"failed":               float64(cfg.Payments) - okN,
		"requests":             req,
		"throttled":            thr,
		"throttled_pct":        100 * thr / max(req, 1),
		"attempts_per_payment": req / float64(cfg.Payments),
		"max_per_window":       float64(p.MaxPerWindow()),
	}, Series: p.Series()}, nil
}

func sleepUntil(ctx context.Context, t time.Time) error {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

// OutageConfig is scenario 3: payments arrive at Rate per second for
// Duration (open loop), and the provider answers 503 to everything for the
// first Outage.
type OutageConfig struct {
	Rate           int
	Duration       time.Duration
	Outage         time.Duration
	PaymentTimeout time.Duration
}

// DefaultOutage is the published configuration: 50/s for 6 s, down for 3 s,
// 10 s per payment.
func DefaultOutage() OutageConfig {
	return OutageConfig{Rate: 50, Duration: 6 * time.Second, Outage: 3 * time.Second,
		PaymentTimeout: 10 * time.Second}
}

// RunOutage runs scenario 3 for one client. A ticker launches one goroutine
// per payment; each has its own deadline, so the run ends at most
// PaymentTimeout after the last arrival.
//
// Metrics: payments; outage_payments (arrived during the outage);
// outage_requests (received during the outage); attempts_per_outage_payment
// (outage_requests / outage_payments); outage_rps (outage_requests /
// outage); recovery_ms (end of the outage to the first 200; absent if none);
// failed; requests; elapsed_s.
func RunOutage(ctx context.Context, cfg OutageConfig, client string) (Row, error) {
	base := NewBaseTransport()
	defer base.CloseIdleConnections()
	_, c, err := NewClient(client, base, Options{})
	if err != nil {
		return Row{}, err
	}
	n := int(cfg.Duration.Seconds() * float64(cfg.Rate))
	interval := time.Second / time.Duration(cfg.Rate)

	start := time.Now().Add(20 * time.Millisecond)
	p := NewOutageProvider(start, cfg.Outage)
	srv := httptest.NewServer(p)
	defer srv.Close()
	if err := sleepUntil(ctx, start); err != nil {
		return Row{}, err
	}

	var ok, inOutage atomic.Int64
	var wg sync.WaitGroup
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for i := range n {
		if i > 0 {
			select {
			case <-ctx.Done():
				return Row{}, ctx.Err()
			case <-ticker.C:
			}
		}
		if time.Since(start) < cfg.Outage {
			inOutage.Add(1)
		}
		wg.Go(func() {
			if pay(ctx, c, srv.URL+PaymentPath, ref(i), bearer(""), cfg.PaymentTimeout) == http.StatusOK {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	outReq, outPay := float64(p.OutageRequests()), float64(inOutage.Load())
	m := map[string]float64{
		"payments":                    float64(n),
		"outage_payments":             outPay,
		"outage_requests":             outReq,
		"attempts_per_outage_payment": outReq / max(outPay, 1),
		"outage_rps":                  outReq / cfg.Outage.Seconds(),
		"failed":                      float64(n) - float64(ok.Load()),
		"requests":                    float64(p.Requests()),
		"elapsed_s":                   elapsed.Seconds(),
	}
	if d, found := p.RecoveryToFirstSuccess(); found {
		m["recovery_ms"] = float64(d) / float64(time.Millisecond)
	}
	return Row{Scenario: "outage", Client: client, Metrics: m, Series: p.Series()}, nil
}

// DuplicatesConfig is scenario 4: a ledger that executes each request and
// then stalls past the client's attempt timeout on StallRate of requests.
type DuplicatesConfig struct {
	Payments       int
	Workers        int
	StallRate      float64
	Stall          time.Duration // how long a stalled request holds its answer
	AttemptTimeout time.Duration
	PaymentTimeout time.Duration
	Seed           uint64
	Bound          time.Duration
}

// DefaultDuplicates is the published configuration: 500 payments, 50
// workers, 20 % stalls of 500 ms, 100 ms attempt timeout.
func DefaultDuplicates() DuplicatesConfig {
	return DuplicatesConfig{Payments: 500, Workers: 50, StallRate: 0.2, Stall: 500 * time.Millisecond,
		AttemptTimeout: 100 * time.Millisecond, PaymentTimeout: 10 * time.Second, Seed: 20240611,
		Bound: 60 * time.Second}
}

// Duplicates variants: whether the caller sets its own Idempotency-Key.
const (
	CallerKey   = "caller key"
	NoCallerKey = "no caller key"
)

// RunDuplicates runs scenario 4 for one client. With callerKey the caller
// puts an Idempotency-Key (one per payment) on the request; without, peers
// send none and payretry adds its own.
//
// Metrics: duplicates (payments executed more than once); lost (payments
// never executed); failed (calls that did not end in a 200);
// failed_but_charged (failed calls whose payment was executed);
// attempts_per_payment; replays (answers replayed by key); elapsed_s.
func RunDuplicates(ctx context.Context, cfg DuplicatesConfig, client string, callerKey bool) (Row, error) {
	p := NewLedgerProvider(cfg.StallRate, cfg.Stall, cfg.Seed)
	srv := httptest.NewServer(p)
	defer srv.Close()
	base := NewBaseTransport()
	defer base.CloseIdleConnections()
	_, c, err := NewClient(client, base, Options{AttemptTimeout: cfg.AttemptTimeout})
	if err != nil {
		return Row{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Bound)
	defer cancel()

	okv := make([]bool, cfg.Payments)
	jobs := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for range cfg.Workers {
		wg.Go(func() {
			for i := range jobs {
				key := ""
				if callerKey {
					key = "caller-" + ref(i)
				}
				okv[i] = pay(ctx, c, srv.URL+PaymentPath, ref(i), bearer(key), cfg.PaymentTimeout) == http.StatusOK
			}
		})
	}
	for i := range cfg.Payments {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	elapsed := time.Since(start)
	// Stalled handlers still running hold no ledger state that matters:
	// every execution happened before its stall.

	var dup, lost, failed, charged int
	for i, ok := range okv {
		n := p.Executions(ref(i))
		switch {
		case n == 0:
			lost++
		case n > 1:
			dup++
		}
		if !ok {
			failed++
			if n > 0 {
				charged++
			}
		}
	}
	variant := NoCallerKey
	if callerKey {
		variant = CallerKey
	}
	return Row{Scenario: "duplicates", Client: client, Variant: variant, Metrics: map[string]float64{
		"duplicates":           float64(dup),
		"lost":                 float64(lost),
		"failed":               float64(failed),
		"failed_but_charged":   float64(charged),
		"attempts_per_payment": float64(p.Requests()) / float64(cfg.Payments),
		"replays":              float64(p.Replays()),
		"elapsed_s":            elapsed.Seconds(),
	}}, nil
}
