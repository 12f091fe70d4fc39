// Package loadtest pushes payments through several payretry Transports (the
// "replicas") at one provider, for the tests and the example: in one process
// (Run) or each replica in a child process of its own (RunProcesses, Child).
package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/payretry/payretry"
	"github.com/payretry/payretry/payretrytest"
)

// Config describes a run.
type Config struct {
	URL      string // the provider's payment endpoint
	APIKey   string // x-api-key of every request: the replicas share one account
	Replicas int
	Workers  int // per replica
	Payments int // in total
	// Policy returns the policy of a replica; its Limiter decides whether
	// the replicas pace together.
	Policy func(replica int) payretry.Policy
	// Deadline bounds each payment call (its context); 0 means none.
	Deadline time.Duration
	// Reference prefixes the payments' references.
	Reference string
	// OnDone, if set, is called after each payment with the number done.
	OnDone func(done int)
}

// Outcome is what the caller of one payment learnt.
type Outcome struct {
	Reference string
	Replica   int
	Status    int   // 0 when no response
	Err       error `json:"-"` // the *payretry.Error of a failed call, nil on success
	// ErrText is Err's message; from a child process, Err is rebuilt from
	// it and DeadlineExceeded.
	ErrText string `json:",omitempty"`
	// DeadlineExceeded: Err is or wraps context.DeadlineExceeded.
	DeadlineExceeded bool `json:",omitempty"`
	Unknown          bool // the provider may have executed it: reconcile
	Latency          time.Duration
}

// Result sums up a run.
type Result struct {
	Elapsed    time.Duration
	Outcomes   []Outcome
	Succeeded  int
	Failed     int // definitive failures
	Unknown    int // outcome unknown
	MaxLatency time.Duration
}

// Run sends cfg.Payments payments, each by one of cfg.Workers goroutines of
// one of cfg.Replicas Transports, and returns when all are done.
func Run(ctx context.Context, cfg Config) (Result, error) {
	transports := make([]*payretry.Transport, cfg.Replicas)
	for i := range transports {
		// Each replica has its own connections, as separate processes would.
		base := &http.Transport{MaxIdleConnsPerHost: cfg.Workers}
		defer base.CloseIdleConnections()
		t, err := payretry.NewTransport(base, cfg.Policy(i))
		if err != nil {
			return Result{}, err
		}
		transports[i] = t
	}
	outcomes := make([]Outcome, cfg.Payments)
	var next, done atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for r, t := range transports {
		for range cfg.Workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					n := int(next.Add(1))
					if n > cfg.Payments || ctx.Err() != nil {
						return
					}
					outcomes[n-1] = pay(ctx, t, cfg.URL, cfg.APIKey, cfg.Deadline, r, Reference(cfg.Reference, n))
					if cfg.OnDone != nil {
						cfg.OnDone(int(done.Add(1)))
					}
				}
			}()
		}
	}
	wg.Wait()
	return summarize(time.Since(start), outcomes), ctx.Err()
}

// Reference returns the reference of the n-th payment (from 1) of a run.
func Reference(prefix string, n int) string { return fmt.Sprintf("%s-%d", prefix, n) }

// summarize counts the outcomes of a run.
func summarize(elapsed time.Duration, outcomes []Outcome) Result {
	res := Result{Elapsed: elapsed, Outcomes: outcomes}
	for _, o := range outcomes {
		switch {
		case o.Reference == "":
		case o.Err == nil:
			res.Succeeded++
		case o.Unknown:
			res.Unknown++
		default:
			res.Failed++
		}
		res.MaxLatency = max(res.MaxLatency, o.Latency)
	}
	return res
}

func pay(ctx context.Context, t *payretry.Transport, url, apiKey string, deadline time.Duration, replica int, ref string) Outcome {
	o := Outcome{Reference: ref, Replica: replica}
	if deadline > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, deadline)
		defer cancel()
	}
	body := fmt.Sprintf(`{"reference":%q,"amount":1000,"currency":"USD"}`, ref)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		o.Err, o.ErrText = err, err.Error()
		return o
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-api-key", apiKey)
	start := time.Now()
	resp, err := t.RoundTrip(req)
	o.Latency = time.Since(start)
	if err == nil {
		o.Status = resp.StatusCode
		err = payretry.CheckResponse(resp)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if err != nil {
		o.Err, o.ErrText = err, err.Error()
		o.DeadlineExceeded = errors.Is(err, context.DeadlineExceeded)
		var pe *payretry.Error
		o.Unknown = errors.As(err, &pe) && pe.OutcomeUnknown
	}
	return o
}

// QuotaUsed returns the share of a provider's quota (limit requests per
// one-second window, aligned to unix seconds, as payretrytest's SmartRetry
// counts them) that a run's payments used: the requests the provider
// accepted (answered other than 429) in the windows the run spanned whole,
// over limit per window, and the number of those windows. The first and
// last windows, where the run started or ran out of payments, do not
// count.
func QuotaUsed(sim *payretrytest.Server, outcomes []Outcome, limit int) (float64, int) {
	var first, last time.Time
	accepted := map[int64]int{}
	for _, o := range outcomes {
		for _, a := range sim.Attempts(o.Reference) {
			if first.IsZero() || a.At.Before(first) {
				first = a.At
			}
			if a.At.After(last) {
				last = a.At
			}
			if a.Status != http.StatusTooManyRequests {
				accepted[a.At.Unix()]++
			}
		}
	}
	n, sum := 0, 0
	for sec := first.Unix() + 1; sec < last.Unix(); sec++ {
		n++
		sum += accepted[sec]
	}
	if n == 0 {
		return 0, 0
	}
	return float64(sum) / float64(n*limit), n
}
