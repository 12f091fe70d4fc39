// Command chaos is payretry's demo: it starts the four provider simulators of
// package payretrytest with a seeded fault plan and sends the same payments
// through payretry, with each provider's preset, and through a naive client
// that retries the way the providers warn against. It ends with a table per
// provider and client: what succeeded, what failed, what is left to reconcile,
// and, from the simulators' ledgers, what was executed twice or lost.
//
//	go run ./examples/chaos
//	go run ./examples/chaos -payments 400 -faults 1.5 -provider verto
//
// Each payment has a deadline (-deadline, 3 s), as a checkout would: a payment
// still unsettled then is reported failed or, when it may have executed,
// outcome unknown, and reconciled through the provider's status lookup.
//
// Each client runs against its own simulator, so that the ledgers do not mix;
// both simulators of a provider draw the same faults for the same reference
// (the draws depend on the seed, the reference and the attempt number only),
// so the two clients meet the same weather.
//
// Midway (-restart, 1.5 s into the run) every client's process is killed: the
// contexts of its payments in flight are cancelled and its transport is
// dropped. 200 ms later a new one starts and sends the interrupted payments
// again. payretry resumes each by its operation id (payretry.WithOperation),
// so the provider answers the keys it has seen from its store; the
// "restart-fresh" client is payretry without operation ids, whose restart
// sends them again with fresh keys, as a service that keeps no operation id
// would.
//
// The exit status is 1 when payretry executed a payment twice or lost one.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"

	"github.com/payretry/payretry"
	"github.com/payretry/payretry/examples/internal/demo"
	"github.com/payretry/payretry/payretrytest"
)

// provider is one simulated provider and the payretry preset for it.
type provider struct {
	sim    payretrytest.Provider
	preset func() payretry.Policy
}

var providers = []provider{
	{payretrytest.ORZCash, payretry.ORZCash},
	{payretrytest.Verto, payretry.Verto},
	{payretrytest.KeyStone, payretry.KeyStone},
	{payretrytest.SmartRetry, payretry.SmartRetry},
}

// Demo time scale. The simulator stalls a payment for stallFor; both clients
// give up on an attempt after attemptTimeout, so a stall becomes a time-out
// after the payment was executed. payretry's backoff intervals and rule waits
// are divided by waitScale; the simulator's Retry-After values (whole seconds)
// are honoured as sent.
const (
	attemptTimeout = 300 * time.Millisecond
	stallFor       = time.Second
	waitScale      = 100
	latency        = 50 * time.Millisecond
	naiveAttempts  = 4
	naiveSleep     = 50 * time.Millisecond
	outageStart    = 2 * time.Second
	restartGap     = 200 * time.Millisecond // between the kill and the new process
)

// The clients, in the order of the table.
const (
	withOps      = "payretry"      // payretry, each payment with its operation id
	restartFresh = "restart-fresh" // payretry without operation ids
	naive        = "naive"
)

type config struct {
	payments int // in total, split across the providers run
	workers  int // per client and provider
	deadline time.Duration
	seed     int64
	plan     payretrytest.FaultPlan
	only     string
	restart  time.Duration // when the processes are killed and restarted; 0 for never
}

func main() {
	cfg, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(2)
	}
	os.Exit(run(cfg))
}

func parseFlags() (config, error) {
	var (
		cfg                                           config
		scale, before, after, stall, reset, r429, lat float64
		outage                                        time.Duration
	)
	fs := flag.CommandLine
	fs.IntVar(&cfg.payments, "payments", 2000, "payments in total, split evenly across the providers run\n"+
		"(the default, 500 per provider, takes about 20-25 s on 2 cores: payretry waits out\n"+
		"each Retry-After for the whole provider, so time grows with payments per provider)")
	fs.DurationVar(&cfg.deadline, "deadline", 3*time.Second, "each payment's deadline (its request context), for both clients,\n"+
		"as a checkout would set; 0 for none")
	fs.IntVar(&cfg.workers, "workers", 16, "concurrent payments per client and provider")
	fs.Int64Var(&cfg.seed, "seed", 1, "fault plan seed: the same seed gives the same faults per payment")
	fs.Float64Var(&scale, "faults", 1, "scale applied to every fault rate (-fail-before, -fail-after, -stall, -reset, -429, -latency); 0 turns faults off")
	fs.Float64Var(&before, "fail-before", 0.01, "fraction of payment requests answered 500/503 without executing")
	fs.Float64Var(&after, "fail-after", 0.015, "fraction executed, then answered 500/502/503 (ORZCash: connection reset)")
	fs.Float64Var(&stall, "stall", 0.11, "fraction executed, then held for "+stallFor.String()+
		" (past the "+attemptTimeout.String()+" attempt time-out)")
	fs.Float64Var(&reset, "reset", 0.18, "fraction executed, then the connection reset mid-response")
	fs.Float64Var(&r429, "429", 0.015, "fraction answered 429 with Retry-After: 1, without executing")
	fs.Float64Var(&lat, "latency", 0.10, "fraction of payment requests delayed by "+latency.String())
	fs.DurationVar(&outage, "outage", time.Second, "length of an outage (every request 503) starting "+
		outageStart.String()+" into the run; 0 for none")
	fs.StringVar(&cfg.only, "provider", "all", "all, orzcash, verto, keystone or smartretry")
	fs.DurationVar(&cfg.restart, "restart", 1500*time.Millisecond, "when every client's process is killed mid-run and restarted,\n"+
		"resending the payments it had in flight; 0 for no restart")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: go run ./examples/chaos [flags]\n\n"+
			"Sends payments through payretry and through a naive retry loop (fresh idempotency key on\n"+
			"every attempt, no Retry-After, fixed %v sleep, %d attempts) against loopback simulators of\n"+
			"ORZCash, Verto, KeyStone and SmartRetry with injected faults, and compares the ledgers.\n\n",
			naiveSleep, naiveAttempts)
		fs.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	if cfg.only != "all" && !slices.ContainsFunc(providers, func(p provider) bool { return string(p.sim) == cfg.only }) {
		return cfg, fmt.Errorf("-provider %q: want all, orzcash, verto, keystone or smartretry", cfg.only)
	}
	if cfg.payments < 1 || cfg.workers < 1 {
		return cfg, errors.New("-payments and -workers must be positive")
	}
	for _, r := range []*float64{&before, &after, &stall, &reset, &r429, &lat} {
		*r *= scale
		if *r < 0 || *r > 1 {
			return cfg, fmt.Errorf("fault rates must be fractions in [0, 1] after -faults %v", scale)
		}
	}
	if sum := before + after + stall + reset + r429; sum > 1 {
		return cfg, fmt.Errorf("fault rates sum to %.2f after -faults %v, want at most 1", before+after+stall+reset+r429, scale)
	}
	if outage < 0 {
		return cfg, errors.New("-outage must not be negative")
	}
	cfg.plan = payretrytest.FaultPlan{
		Seed: cfg.seed, FailBefore: before, FailAfter: after, Stall: stall, StallFor: stallFor,
		Reset: reset, RateLimited: r429, Latency: latency, LatencyRate: lat,
	}
	if outage > 0 {
		cfg.plan.Outages = []payretrytest.Window{{Start: outageStart, End: outageStart + outage}}
	}
	return cfg, nil
}

// demoPolicy is a copy of a preset for the demo's time scale: backoff
// intervals and rule waits divided by waitScale, and an attempt time-out.
// Keys, classes and rules are the preset's.
func demoPolicy(p payretry.Policy) payretry.Policy {
	p.InitialInterval /= waitScale
	p.MaxInterval /= waitScale
	p.AttemptTimeout = attemptTimeout
	rules := maps.Clone(p.Rules)
	for c, r := range rules {
		r.MinWait /= waitScale
		r.MaxWait /= waitScale
		rules[c] = r
	}
	p.Rules = rules
	return p
}

// result is how one payment ended, as its client saw it.
type result struct {
	ok      bool
	class   payretry.Class // of a failure
	unknown bool           // payretry: the outcome is unknown; reconcile by key
	key     string         // idempotency key of the last attempt
	latency time.Duration
}

// lane is one client sending payments to its own simulator.
type lane struct {
	p       provider
	client  string // withOps, restartFresh or naive
	srv     *payretrytest.Server
	proc    atomic.Pointer[process] // the client's current life
	start   func() *process         // starts a new one
	send    func(ctx context.Context, l *lane, c *http.Client, ref string, amount int) result
	refs    []string
	results []result
	resumed []bool // interrupted by the restart and sent again
	done    atomic.Int64
	wall    time.Duration      // from the start until its last payment ended
	stats   payretrytest.Stats // after the run, before reconciliation
}

// process is one life of a client: the contexts of its payments derive from
// ctx, and killing it cancels them all and drops its transport.
type process struct {
	ctx      context.Context
	kill     context.CancelFunc
	http     *http.Client
	replaced chan struct{} // closed once the next life has started
}

func run(cfg config) int {
	var selected []provider
	for _, p := range providers {
		if cfg.only == "all" || string(p.sim) == cfg.only {
			selected = append(selected, p)
		}
	}
	per := cfg.payments / len(selected)
	if per == 0 {
		per = 1
	}
	pl := cfg.plan
	fmt.Printf("payretry chaos demo: %d payments per provider (%d in total), %d workers per client and provider, seed %d\n",
		per, per*len(selected), cfg.workers, cfg.seed)
	if cfg.deadline > 0 {
		fmt.Printf("each payment has a %v deadline (its request context), for both clients\n", cfg.deadline)
	}
	fmt.Printf("faults per payment request: fail-before %.3g%%, fail-after %.3g%%, stall %.3g%% (%v), reset %.3g%%, 429 %.3g%%, latency %.3g%% (%v)",
		100*pl.FailBefore, 100*pl.FailAfter, 100*pl.Stall, pl.StallFor, 100*pl.Reset, 100*pl.RateLimited,
		100*pl.LatencyRate, pl.Latency)
	for _, w := range pl.Outages {
		fmt.Printf(", outage %v-%v", w.Start, w.End)
	}
	fmt.Printf("\npayretry: each provider's preset with backoff intervals and rule waits scaled down %dx for the demo\n"+
		"  (Verto's 5-10 s after a 5xx becomes 50-100 ms), attempt time-out %v; keys and rules untouched;\n"+
		"  Retry-After honoured as the simulators send it (whole seconds).\n"+
		"naive:    http.Client{Timeout: %v}, up to %d attempts on any error, 5xx or 429, %v apart,\n"+
		"  a fresh idempotency key (and Verto correlation id) on every attempt, Retry-After ignored.\n\n",
		waitScale, attemptTimeout, attemptTimeout, naiveAttempts, naiveSleep)

	var lanes []*lane
	defer func() {
		for _, l := range lanes {
			l.proc.Load().http.CloseIdleConnections()
			l.srv.Close()
		}
	}()
	for _, p := range selected {
		for _, client := range []string{withOps, restartFresh, naive} {
			l := &lane{p: p, client: client, results: make([]result, per), resumed: make([]bool, per)}
			l.start = func() *process {
				base := &http.Transport{MaxIdleConnsPerHost: cfg.workers, IdleConnTimeout: 10 * time.Second}
				pr := &process{http: &http.Client{Transport: base, Timeout: attemptTimeout}, replaced: make(chan struct{})}
				if client != naive {
					t, err := payretry.NewTransport(base, demoPolicy(p.preset()))
					if err != nil {
						panic(err) // the presets are valid
					}
					pr.http = &http.Client{Transport: t}
				}
				pr.ctx, pr.kill = context.WithCancel(context.Background())
				return pr
			}
			l.proc.Store(l.start())
			l.send = sendPayretry
			if client == naive {
				l.send = sendNaive
			}
			l.srv = payretrytest.NewServer(p.sim, payretrytest.Options{Plan: pl})
			for i := range per {
				l.refs = append(l.refs, fmt.Sprintf("chaos-%s-%05d", p.sim, i))
			}
			lanes = append(lanes, l)
		}
	}
	start := time.Now()
	stop := progress(lanes, start)
	if cfg.restart > 0 {
		restarted := time.AfterFunc(cfg.restart, func() { restart(lanes) })
		defer restarted.Stop()
	}
	var wg sync.WaitGroup
	for _, l := range lanes {
		next := make(chan int)
		var lwg sync.WaitGroup
		for range cfg.workers {
			lwg.Go(func() {
				for i := range next {
					for {
						pr := l.proc.Load()
						ctx, cancel := pr.ctx, context.CancelFunc(func() {})
						if cfg.deadline > 0 {
							ctx, cancel = context.WithTimeout(ctx, cfg.deadline)
						}
						res := l.send(ctx, l, pr.http, l.refs[i], 100+i%9900)
						cancel()
						if pr.ctx.Err() == nil {
							l.results[i] = res
							break
						}
						// Killed mid-payment: the next life sends it again.
						l.resumed[i] = true
						<-pr.replaced
					}
					l.done.Add(1)
				}
			})
		}
		wg.Go(func() {
			for i := range per {
				next <- i
			}
			close(next)
			lwg.Wait()
			l.wall = time.Since(start)
		})
	}
	wg.Wait()
	stop()
	elapsed := time.Since(start)
	for _, l := range lanes {
		l.stats = l.srv.Stats()
	}
	fmt.Printf("done in %v\n\n", elapsed.Round(10*time.Millisecond))
	return report(lanes)
}

// restart kills every lane's process, and starts a new one restartGap later.
func restart(lanes []*lane) {
	old := make([]*process, len(lanes))
	for i, l := range lanes {
		old[i] = l.proc.Load()
		old[i].kill()
	}
	time.Sleep(restartGap)
	for i, l := range lanes {
		old[i].http.CloseIdleConnections()
		l.proc.Store(l.start())
		close(old[i].replaced)
	}
}

// paymentBody is the JSON body of a payment; key, when not empty, goes in
// KeyStone's idempotency_key field.
func paymentBody(ref string, amount int, key string) string {
	if key != "" {
		return fmt.Sprintf(`{"reference":%q,"amount":%d,"currency":"EUR","idempotency_key":%q}`, ref, amount, key)
	}
	return fmt.Sprintf(`{"reference":%q,"amount":%d,"currency":"EUR"}`, ref, amount)
}

// sendPayretry makes one payment through payretry: the transport adds the
// key (header or body field) and the correlation id and retries by the preset.
// The payretry client names the payment's operation, from which the keys
// derive; restart-fresh does not, so its keys are random for each call.
func sendPayretry(ctx context.Context, l *lane, c *http.Client, ref string, amount int) result {
	start := time.Now()
	var res result
	if l.client == withOps {
		ctx = payretry.WithOperation(ctx, "chaos/"+ref)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.srv.PaymentURL(), strings.NewReader(paymentBody(ref, amount, "")))
	if err != nil {
		panic(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		err = payretry.CheckResponse(resp) // nil for a 2xx
	}
	res.latency = time.Since(start)
	var e *payretry.Error
	switch {
	case err == nil:
		res.ok = true
	case errors.As(err, &e):
		res.class, res.unknown, res.key = e.Class, e.OutcomeUnknown, e.IdempotencyKey
	default:
		res.class = payretry.ClassOther
	}
	return res
}

// sendNaive is the retry loop the providers' documents warn against: retry
// any error, 5xx or 429 after a fixed short sleep, with a fresh idempotency
// key each time, and never read Retry-After.
func sendNaive(ctx context.Context, l *lane, c *http.Client, ref string, amount int) result {
	start := time.Now()
	var (
		resp *http.Response
		err  error
		key  string
	)
	for attempt := 1; attempt <= naiveAttempts; attempt++ {
		if attempt > 1 {
			time.Sleep(naiveSleep)
		}
		key = uuid.NewString() // fresh on every attempt: the mistake
		var body string
		if l.p.sim == payretrytest.KeyStone {
			body = paymentBody(ref, amount, key)
		} else {
			body = paymentBody(ref, amount, "")
		}
		req, rerr := http.NewRequestWithContext(ctx, http.MethodPost, l.srv.PaymentURL(), strings.NewReader(body))
		if rerr != nil {
			panic(rerr)
		}
		req.Header.Set("Content-Type", "application/json")
		if l.p.sim != payretrytest.KeyStone {
			req.Header.Set("Idempotency-Key", key)
		}
		if l.p.sim == payretrytest.Verto {
			req.Header.Set("Vfx-Correlation-Id", uuid.NewString())
		}
		resp, err = c.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests {
				break
			}
		}
	}
	res := result{latency: time.Since(start), key: key}
	var ne net.Error
	switch {
	case err == nil && resp.StatusCode >= 200 && resp.StatusCode <= 299:
		res.ok = true
	case errors.As(err, &ne) && ne.Timeout(): // http.Client.Timeout
		res.class = payretry.ClassTimeout
	default:
		res.class = payretry.Classify(resp, err)
	}
	return res
}

// progress shows how far the lanes are: one updating line on a terminal,
// a line a second otherwise. The returned function stops it.
func progress(lanes []*lane, start time.Time) func() {
	tty := false
	if fi, err := os.Stdout.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		tty = true
	}
	every := time.Second
	if tty {
		every = 200 * time.Millisecond
	}
	line := func() string {
		var b strings.Builder
		fmt.Fprintf(&b, "%5.1fs", time.Since(start).Seconds())
		for _, client := range []string{withOps, restartFresh, naive} {
			var done, total, dup int
			for _, l := range lanes {
				if l.client == client {
					done += int(l.done.Load())
					total += len(l.refs)
					dup += l.srv.Duplicates()
				}
			}
			fmt.Fprintf(&b, "  %s %d/%d (extra executions %d)", client, done, total, dup)
		}
		return b.String()
	}
	quit, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				if tty {
					fmt.Printf("\r%s\n", line())
				}
				return
			case <-tick.C:
				if tty {
					fmt.Printf("\r%s", line())
				} else {
					fmt.Println(line())
				}
			}
		}
	}()
	return func() { close(quit); <-finished }
}

// tally is one row of the final table.
type tally struct {
	payments, ok, failed, unknown, twice, lost int
	resumed, resumedTwice                      int
	classes                                    map[payretry.Class]int
	unknownRefs                                []int
	p50, p99                                   time.Duration
}

func count(l *lane) tally {
	t := tally{payments: len(l.refs), classes: map[payretry.Class]int{}}
	lat := make([]time.Duration, 0, len(l.results))
	for i, r := range l.results {
		lat = append(lat, r.latency)
		n := l.srv.Executions(l.refs[i])
		if n > 1 {
			t.twice++
		}
		if l.resumed[i] {
			t.resumed++
			if n > 1 {
				t.resumedTwice++
			}
		}
		switch {
		case r.ok:
			t.ok++
			if n == 0 {
				t.lost++ // reported success, never executed
			}
		case r.unknown:
			t.unknown++
			t.unknownRefs = append(t.unknownRefs, i)
		default:
			t.failed++
			t.classes[r.class]++
			if n > 0 {
				t.lost++ // executed, yet reported as a definitive failure
			}
		}
	}
	slices.Sort(lat)
	t.p50, t.p99 = lat[len(lat)/2], lat[min(len(lat)-1, len(lat)*99/100)]
	return t
}

func (t tally) classList() string {
	if len(t.classes) == 0 {
		return ""
	}
	cs := slices.Sorted(maps.Keys(t.classes))
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = fmt.Sprintf("%s %d", c, t.classes[c])
	}
	return strings.Join(parts, ", ")
}

func report(lanes []*lane) int {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "provider\tclient\tpayments\tsucceeded\tfailed\toutcome unknown\texecuted twice\tlost\tresumed\tof which twice\tattempts\tfaulted\t429s\tp50\tp99\twall\t")
	tallies := make([]tally, len(lanes))
	status := 0
	for i, l := range lanes {
		t := count(l)
		tallies[i] = t
		unknown := "-" // the naive client has no such notion: every failure is a failure
		if l.client != naive {
			unknown = fmt.Sprint(t.unknown)
		}
		if l.client == withOps && (t.twice > 0 || t.lost > 0) {
			status = 1
		}
		faulted := 0
		for f, n := range l.stats.Faults {
			if f != payretrytest.FaultLatency {
				faulted += n
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%d\t%d\t%d\t%d\t%d\t%.0f%%\t%d\t%v\t%v\t%v\t\n",
			l.p.sim, l.client, t.payments, t.ok, t.failed, unknown, t.twice, t.lost, t.resumed, t.resumedTwice,
			l.stats.Payments, 100*float64(faulted)/float64(max(1, l.stats.Requests)), l.stats.RateLimited, round(t.p50), round(t.p99), l.wall.Round(10*time.Millisecond))
	}
	tw.Flush()

	fmt.Println("\nfailed, by class:")
	for i, l := range lanes {
		if s := tallies[i].classList(); s != "" {
			fmt.Printf("  %-10s %-8s  %s\n", l.p.sim, l.client, s)
		}
	}
	for i, l := range lanes {
		if l.client == withOps && (tallies[i].lost > 0 || tallies[i].twice > 0) {
			explain(l)
		}
	}
	fmt.Println("\noutcome unknown (payretry), reconciled through the provider's status lookup by reference:")
	for i, l := range lanes {
		if l.client == withOps && !reconcile(l, tallies[i]) {
			status = 1
		}
	}
	fmt.Println("\nexecuted twice: payments with more than one execution in the simulator's ledger.")
	fmt.Println("lost: executed but reported as a definitive failure, or reported as a success but never executed.")
	fmt.Println("resumed: payments in flight when the process was killed, sent again by the restarted one; payretry")
	fmt.Println("  resumes them by operation id, restart-fresh (payretry without operation ids) and naive with fresh keys.")
	fmt.Println("attempts, faulted, 429s: payment requests the client's simulator received, the share of requests it")
	fmt.Println("  hit with a fault (latency not counted; replays of a stored answer are never faulted) and its 429s.")
	if status != 0 {
		fmt.Println("\nFAIL: payretry executed a payment twice or lost one.")
	} else {
		fmt.Println("\nOK: payretry executed no payment twice and lost none.")
	}
	return status
}

// reconcile looks up every payment of l whose outcome payretry reported as
// unknown, prints the first few keys, and reports whether every lookup agrees
// with the simulator's ledger.
func reconcile(l *lane, t tally) bool {
	if len(t.unknownRefs) == 0 {
		fmt.Printf("  %-10s none\n", l.p.sim)
		return true
	}
	executed, notExecuted, agree := 0, 0, true
	var lines []string
	for _, i := range t.unknownRefs {
		ref, key := l.refs[i], l.results[i].key
		found, err := lookup(l, ref)
		n := l.srv.Executions(ref)
		switch {
		case err != nil:
			agree = false
			lines = append(lines, fmt.Sprintf("key %s  %s: lookup failed: %v", key, ref, err))
			continue
		case found:
			executed++
		default:
			notExecuted++
		}
		if found != (n == 1) {
			agree = false
		}
		if len(lines) < 5 {
			what := "404 not executed: safe to pay again"
			if found {
				what = "200 executed: do not pay again"
			}
			lines = append(lines, fmt.Sprintf("key %s  %s: %s (ledger: %d execution(s))", key, ref, what, n))
		}
	}
	fmt.Printf("  %-10s %d: %d executed, %d not executed", l.p.sim, len(t.unknownRefs), executed, notExecuted)
	if agree {
		fmt.Println(", all in agreement with the ledger; for reconciliation:")
	} else {
		fmt.Println(", NOT all in agreement with the ledger:")
	}
	for _, s := range lines {
		fmt.Println("      " + s)
	}
	return agree
}

// lookup asks the provider whether the payment with this reference was
// executed, through the lane's payretry client (a GET is retried freely).
func lookup(l *lane, ref string) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return demo.Lookup(ctx, l.proc.Load().http, l.srv.StatusURL(ref), nil)
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= 10*time.Millisecond:
		return d.Round(time.Millisecond)
	}
	return d.Round(10 * time.Microsecond)
}

// explain prints, for the first payments payretry lost or executed twice,
// what the simulator saw of each request.
func explain(l *lane) {
	fmt.Printf("\n%s payretry: lost or executed twice (the simulator's record of each request):\n", l.p.sim)
	shown := 0
	for i, r := range l.results {
		n := l.srv.Executions(l.refs[i])
		bad := n > 1 || (r.ok && n == 0) || (!r.ok && !r.unknown && n > 0)
		if !bad {
			continue
		}
		if shown++; shown > 5 {
			break
		}
		what := "succeeded"
		if !r.ok {
			what = "failed: " + r.class.String()
		}
		fmt.Printf("  %s (%s, executed %d times):", l.refs[i], what, n)
		for j, a := range l.srv.Attempts(l.refs[i]) {
			fmt.Printf(" #%d %d", j+1, a.Status)
			if a.Fault != "" {
				fmt.Printf(" %s", a.Fault)
			}
			if j < len(l.srv.Attempts(l.refs[i]))-1 {
				fmt.Print(",")
			}
		}
		fmt.Println()
	}
}
