// Command observability sends payments through a payretry Transport
// instrumented with otelpayretry to a provider simulator that injects faults
// (failures, rate limits, stalls and a short outage), exports the metrics in
// Prometheus format on a loopback /metrics endpoint with OpenTelemetry's
// Prometheus exporter, and at the end scrapes that endpoint over HTTP and
// prints the payretry series.
//
//	cd examples/observability && go run .
//	go run . -provider verto -payments 300 -serve 1m   # keep /metrics up for a minute afterwards
//
// It is a module of its own (github.com/payretry/payretry/examples/observability),
// so that OpenTelemetry and the Prometheus client stay out of payretry's go.mod.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/payretry/payretry"
	"github.com/payretry/payretry/otelpayretry"
	"github.com/payretry/payretry/payretrytest"
)

// config is one run.
type config struct {
	provider string        // orzcash, verto, keystone or smartretry
	payments int           // payments sent
	workers  int           // concurrent callers
	deadline time.Duration // of each payment
	plan     payretrytest.FaultPlan
	every    time.Duration // how often the progress line scrapes /metrics; 0 means never
	serve    time.Duration // how long /metrics stays up after the run
}

// outageFor is how long the demo's outage lasts.
const outageFor = time.Second

// demoPlan is the simulator's weather: a few failures of each kind, and
// an outage of outageFor from outageAt (none when 0).
func demoPlan(seed int64, outageAt time.Duration) payretrytest.FaultPlan {
	p := payretrytest.FaultPlan{
		Seed:        seed,
		FailBefore:  0.05,
		FailAfter:   0.03,
		RateLimited: 0.02,
		Stall:       0.02,
		StallFor:    time.Second,
		Reset:       0.02,
	}
	if outageAt > 0 {
		// Every payment request's connection is dropped unanswered: to
		// the client, the provider is down.
		p.Phases = []payretrytest.Phase{{Window: payretrytest.Window{Start: outageAt, End: outageAt + outageFor}, Drop: 1}}
	}
	return p
}

// presets pairs each simulator with payretry's policy for it.
var presets = map[string]struct {
	sim    payretrytest.Provider
	policy func() payretry.Policy
}{
	"orzcash":    {payretrytest.ORZCash, payretry.ORZCash},
	"verto":      {payretrytest.Verto, payretry.Verto},
	"keystone":   {payretrytest.KeyStone, payretry.KeyStone},
	"smartretry": {payretrytest.SmartRetry, payretry.SmartRetry},
}

func main() {
	var c config
	var seed int64
	var outage time.Duration
	flag.StringVar(&c.provider, "provider", "smartretry", "simulated provider: orzcash, verto, keystone or smartretry")
	flag.IntVar(&c.payments, "payments", 150, "payments to send")
	flag.IntVar(&c.workers, "workers", 10, "concurrent callers")
	flag.DurationVar(&c.deadline, "deadline", 3*time.Second, "deadline of each payment")
	flag.Int64Var(&seed, "seed", 1, "seed of the fault plan")
	flag.DurationVar(&outage, "outage", time.Second, "start of a 1 s outage after the simulator starts (0: none)")
	flag.DurationVar(&c.every, "every", 500*time.Millisecond, "scrape /metrics this often for a progress line (0: never)")
	flag.DurationVar(&c.serve, "serve", 0, "keep /metrics up this long after the run, for a Prometheus to scrape")
	flag.Parse()
	c.plan = demoPlan(seed, outage)
	if err := run(context.Background(), c, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "observability:", err)
		os.Exit(1)
	}
}

// run sends c.payments payments through an instrumented Transport, serves
// /metrics on a loopback port meanwhile, and writes the payretry series it
// scrapes from there at the end to out.
func run(ctx context.Context, c config, out io.Writer) error {
	pr, ok := presets[c.provider]
	if !ok {
		return fmt.Errorf("unknown provider %q", c.provider)
	}

	// OpenTelemetry metrics, exported to a Prometheus registry.
	registry := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(registry), otelprom.WithoutScopeInfo())
	if err != nil {
		return err
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	defer mp.Shutdown(context.Background())

	metricsURL, stop, err := serveMetrics(registry)
	if err != nil {
		return err
	}
	defer stop()
	fmt.Fprintf(out, "metrics: %s\n", metricsURL)

	sim := payretrytest.NewServer(pr.sim, payretrytest.Options{Plan: c.plan})
	defer sim.Close()

	// The instrumented Transport: the only lines a service adds. (Options{}
	// would use the global providers; the policy is the preset's, with
	// waits made shorter for a demo.)
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	t, err := otelpayretry.NewTransport(base, demoPolicy(pr.policy()), otelpayretry.Options{MeterProvider: mp})
	if err != nil {
		return err
	}
	client := &http.Client{Transport: t}

	start := time.Now()
	stopWatch := watch(ctx, metricsURL, c.every, start, out)
	results := pay(ctx, client, sim, c)
	stopWatch()
	fmt.Fprintf(out, "%d payments in %.1f s: %d succeeded, %d failed, %d outcome unknown; %d executed twice\n",
		c.payments, time.Since(start).Seconds(), results[outcomeOK], results[outcomeFailed], results[outcomeUnknown], sim.Duplicates())

	series, err := scrape(ctx, metricsURL)
	scraper.CloseIdleConnections()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nscraped from %s:\n", metricsURL)
	for _, s := range series {
		fmt.Fprintln(out, s)
	}
	if c.serve > 0 {
		fmt.Fprintf(out, "\nserving %s for %s\n", metricsURL, c.serve)
		select {
		case <-time.After(c.serve):
		case <-ctx.Done():
		}
	}
	return nil
}

// demoPolicy divides the preset's backoff and rule waits by 20, so that a
// run takes seconds; the simulator's Retry-After values are honoured as
// sent.
func demoPolicy(p payretry.Policy) payretry.Policy {
	const scale = 20
	p.InitialInterval /= scale
	p.MaxInterval /= scale
	p.AttemptTimeout = 300 * time.Millisecond // the simulator stalls for 1 s
	rules := map[payretry.Class]payretry.Rule{}
	for c, r := range p.Rules {
		r.MinWait /= scale
		r.MaxWait /= scale
		rules[c] = r
	}
	if p.Rules != nil {
		p.Rules = rules
	}
	return p
}

// serveMetrics serves the registry on a loopback port and returns the URL
// of its /metrics and a function that shuts the server down.
func serveMetrics(registry *prometheus.Registry) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
	}
	return "http://" + ln.Addr().String() + "/metrics", stop, nil
}

// scraper is the client of scrape, apart from the payments'.
var scraper = &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}

// scrape gets url like a Prometheus server would and returns its payretry
// series, with their HELP and TYPE lines.
func scrape(ctx context.Context, url string) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := scraper.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	var series []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name := strings.TrimPrefix(strings.TrimPrefix(line, "# HELP "), "# TYPE ")
		if strings.HasPrefix(name, "payretry_") {
			series = append(series, line)
		}
	}
	return series, sc.Err()
}

// Outcomes of a payment, as its caller sees them.
const (
	outcomeOK = iota
	outcomeFailed
	outcomeUnknown
	numOutcomes
)

// pay sends the payments from c.workers goroutines and counts their
// outcomes.
func pay(ctx context.Context, client *http.Client, sim *payretrytest.Server, c config) [numOutcomes]int {
	var (
		mu      sync.Mutex
		results [numOutcomes]int
		wg      sync.WaitGroup
	)
	next := make(chan int)
	for range c.workers {
		wg.Go(func() {
			for i := range next {
				o := payOnce(ctx, client, sim, c, i)
				mu.Lock()
				results[o]++
				mu.Unlock()
			}
		})
	}
	for i := range c.payments {
		next <- i
	}
	close(next)
	wg.Wait()
	return results
}

func payOnce(ctx context.Context, client *http.Client, sim *payretrytest.Server, c config, i int) int {
	ctx, cancel := context.WithTimeout(ctx, c.deadline)
	defer cancel()
	body := fmt.Sprintf(`{"reference":"obs-%d-%05d","amount":%d,"currency":"EUR"}`, c.plan.Seed, i, 1000+i)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, sim.PaymentURL(), strings.NewReader(body))
	if err != nil {
		return outcomeFailed
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer demo-token")
	req.Header.Set("X-Api-Key", "demo-key")
	resp, err := client.Do(req)
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		err = payretry.CheckResponse(resp)
	}
	var perr *payretry.Error
	switch {
	case err == nil:
		return outcomeOK
	case errors.As(err, &perr) && perr.OutcomeUnknown:
		return outcomeUnknown
	}
	return outcomeFailed
}

// watch scrapes url every d until the returned function is called, and
// prints a line of what it read: the attempts, the calls ended, the unknown
// outcomes, the holds and the scopes down.
func watch(ctx context.Context, url string, d time.Duration, start time.Time, out io.Writer) (stop func()) {
	if d <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(d)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			series, err := scrape(ctx, url)
			if err != nil {
				fmt.Fprintln(out, "scrape:", err)
				continue
			}
			v := sums(series)
			fmt.Fprintf(out, "t=%4.1fs  attempts %4.0f  calls ended %4.0f  unknown %2.0f  held %4.0f  scopes down %v\n",
				time.Since(start).Seconds(), v["payretry_attempts_total"], v["payretry_call_duration_seconds_count"],
				v["payretry_unknown_outcomes_total"], v["payretry_limiter_holds_total"], down(series))
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// sums adds up the samples of each series name in the exposition lines.
func sums(lines []string) map[string]float64 {
	out := map[string]float64{}
	for _, l := range lines {
		if strings.HasPrefix(l, "#") {
			continue
		}
		name, value := sample(l)
		out[name] += value
	}
	return out
}

// sample splits an exposition line into its name and value.
func sample(line string) (string, float64) {
	name := line
	if i := strings.IndexAny(line, "{ "); i >= 0 {
		name = line[:i]
	}
	var v float64
	if i := strings.LastIndexByte(line, ' '); i >= 0 {
		v, _ = strconv.ParseFloat(line[i+1:], 64)
	}
	return name, v
}

// down returns the scopes that payretry_limiter_down_scopes reports down.
func down(lines []string) []string {
	var scopes []string
	for _, l := range lines {
		if name, v := sample(l); name == "payretry_limiter_down_scopes" && v > 0 {
			if i := strings.Index(l, `payretry_scope="`); i >= 0 {
				scope := l[i+len(`payretry_scope="`):]
				scopes = append(scopes, scope[:strings.IndexByte(scope, '"')])
			}
		}
	}
	return scopes
}
