// Command replicas shows three replicas of a payment service sharing one
// provider account's quota through Redis. It starts a loopback SmartRetry
// simulator (100 payment requests per second per API key), pushes payments
// through three payretry Transports (4 workers each, one API key) once with
// a redislimit.Limiter per replica on one Redis, and once with each replica
// pacing alone, and prints the combined numbers.
//
//	go run ./examples/replicas                       # starts its own redis-server (loopback)
//	go run ./examples/replicas -redis 127.0.0.1:6379 # or uses yours (keys under "payretry-example")
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/payretry/payretry"
	"github.com/payretry/payretry/payretrytest"
	"github.com/payretry/payretry/redislimit"
	"github.com/payretry/payretry/redislimit/internal/loadtest"
	"github.com/payretry/payretry/redislimit/internal/redisserver"
	"github.com/redis/go-redis/v9"
)

func main() {
	addr := flag.String("redis", "", "Redis address; empty starts a redis-server on a free loopback port")
	payments := flag.Int("payments", 600, "payments in total")
	replicas := flag.Int("replicas", 3, "replicas (Transports)")
	workers := flag.Int("workers", 4, "workers per replica")
	latency := flag.Duration("latency", 30*time.Millisecond, "round trip the simulator adds to each payment request")
	flag.Parse()
	if err := run(*addr, *payments, *replicas, *workers, *latency); err != nil {
		fmt.Fprintln(os.Stderr, "replicas:", err)
		os.Exit(1)
	}
}

func run(addr string, payments, replicas, workers int, latency time.Duration) error {
	ctx := context.Background()
	if addr == "" {
		srv, err := redisserver.Start(ctx)
		if err != nil {
			return fmt.Errorf("starting redis-server (or pass -redis): %w", err)
		}
		defer srv.Stop()
		addr = srv.Addr
		fmt.Printf("started redis-server on %s\n", addr)
	}
	fmt.Printf("%d payments, %d replicas x %d workers, one API key; provider: 100 payment requests/s per key, %v round trip\n\n",
		payments, replicas, workers, latency)
	fmt.Printf("%-14s %9s %9s %6s %8s %9s %10s %8s %12s\n",
		"pacing", "payments", "requests", "429s", "429 %", "elapsed", "goodput/s", "vs limit", "slowest call")

	for _, shared := range []bool{true, false} {
		var limiters []*redislimit.Limiter
		limiter := func(int) payretry.Limiter { return nil } // the Transport's own, in-process
		name := "in-process"
		if shared {
			name = "Redis, shared"
			limiter = func(int) payretry.Limiter {
				rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
				l := redislimit.New(rdb, redislimit.Options{Prefix: "payretry-example", Logger: slog.Default()})
				limiters = append(limiters, l)
				return l
			}
		}
		var plan payretrytest.FaultPlan
		if latency > 0 {
			plan.Latency, plan.LatencyRate = latency, 1
		}
		sim := payretrytest.NewServer(payretrytest.SmartRetry, payretrytest.Options{Plan: plan})
		res, err := loadtest.Run(ctx, loadtest.Config{
			URL: sim.PaymentURL(), APIKey: "shared-account",
			Replicas: replicas, Workers: workers, Payments: payments,
			Policy: func(i int) payretry.Policy {
				p := payretry.SmartRetry()
				p.Limiter = limiter(i)
				return p
			},
			Deadline:  30 * time.Second,
			Reference: fmt.Sprintf("example-%d-%t", time.Now().UnixNano(), shared),
		})
		st := sim.Stats()
		executed, dups := len(sim.Ledger()), sim.Duplicates()
		sim.Close()
		if err != nil {
			return err
		}
		goodput := float64(executed) / res.Elapsed.Seconds()
		fmt.Printf("%-14s %9d %9d %6d %7.1f%% %9v %10.1f %8.2f %12v\n",
			name, executed, st.Requests, st.RateLimited, 100*float64(st.RateLimited)/float64(st.Requests),
			res.Elapsed.Round(time.Millisecond), goodput, goodput/100, res.MaxLatency.Round(time.Millisecond))
		if res.Failed+res.Unknown > 0 || dups > 0 {
			fmt.Printf("%14s %d failed, %d unknown, %d duplicates\n", "", res.Failed, res.Unknown, dups)
		}
		for _, l := range limiters {
			if l.Degraded() {
				return errors.New("a limiter could not reach Redis: numbers are in-process ones")
			}
		}
	}
	fmt.Println("\ngoodput = executed payments / elapsed; over a short run it can pass the limit by up to one")
	fmt.Println("window, because the first one is partly over when the run starts.")
	return nil
}
