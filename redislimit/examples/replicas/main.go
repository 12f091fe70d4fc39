// Command replicas shows replicas of a payment service, each a process of
// its own, sharing one provider account's quota through Redis. It starts a
// loopback SmartRetry simulator (100 payment requests per second per API
// key) and runs its replicas as child processes of itself (4 workers each,
// one API key), once with a redislimit.Limiter per replica on one Redis and
// once with each replica pacing alone, and prints the combined numbers.
//
//	go run ./examples/replicas                       # starts its own redis-server (loopback)
//	go run ./examples/replicas -cluster              # or a Redis Cluster: 3 masters, 3 replicas
//	go run ./examples/replicas -redis 127.0.0.1:6379 # or uses yours (keys under "payretry-example")
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/payretry/payretry"
	"github.com/payretry/payretry/payretrytest"
	"github.com/payretry/payretry/redislimit"
	"github.com/payretry/payretry/redislimit/internal/loadtest"
	"github.com/payretry/payretry/redislimit/internal/redisserver"
	"github.com/redis/go-redis/v9"
)

// setup is how a replica paces: the Setup of its loadtest.Job.
type setup struct {
	Redis   []string // none: the Transport's in-process limiter
	Cluster bool
}

// report is what a replica says of its limiter.
type report struct {
	Stats    redislimit.Stats
	Degraded bool
}

func main() {
	addr := flag.String("redis", "", "Redis address (host:port, or several, comma-separated, of a cluster); empty starts redis-server on free loopback ports")
	cluster := flag.Bool("cluster", false, "the Redis is a Redis Cluster (started with 3 masters and 3 replicas when -redis is empty)")
	payments := flag.Int("payments", 600, "payments in total")
	replicas := flag.Int("replicas", 4, "replicas (processes)")
	workers := flag.Int("workers", 4, "workers per replica")
	latency := flag.Duration("latency", 30*time.Millisecond, "round trip the simulator adds to each payment request")
	child := flag.Bool("child", false, "run as a replica (started by this command itself)")
	flag.Parse()
	var err error
	if *child {
		err = loadtest.Child(context.Background(), os.Stdin, os.Stdout, replica)
	} else {
		err = run(*addr, *cluster, *payments, *replicas, *workers, *latency)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "replicas:", err)
		os.Exit(1)
	}
}

func run(addr string, cluster bool, payments, replicas, workers int, latency time.Duration) error {
	ctx := context.Background()
	var addrs []string
	switch {
	case addr != "":
		addrs = strings.Split(addr, ",")
	case cluster:
		c, err := redisserver.StartCluster(ctx, 3, 1)
		if err != nil {
			return fmt.Errorf("starting a Redis Cluster (or pass -redis): %w", err)
		}
		defer c.Stop()
		addrs = c.Addrs()
		fmt.Printf("started a Redis Cluster: %s\n", strings.Join(addrs, " "))
	default:
		srv, err := redisserver.Start(ctx)
		if err != nil {
			return fmt.Errorf("starting redis-server (or pass -redis): %w", err)
		}
		defer srv.Stop()
		addrs = []string{srv.Addr}
		fmt.Printf("started redis-server on %s\n", srv.Addr)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	fmt.Printf("%d payments, %d replica processes x %d workers, one API key; provider: 100 payment requests/s per key, %v round trip\n\n",
		payments, replicas, workers, latency)
	fmt.Printf("%-14s %9s %9s %6s %7s %11s %9s %12s %14s\n",
		"pacing", "payments", "requests", "429s", "429 %", "quota used", "elapsed", "slowest call", "Redis calls/p")

	for _, shared := range []bool{true, false} {
		name, set := "in-process", setup{}
		if shared {
			name, set = "Redis, shared", setup{Redis: addrs, Cluster: cluster}
		}
		var plan payretrytest.FaultPlan
		if latency > 0 {
			plan.Latency, plan.LatencyRate = latency, 1
		}
		sim := payretrytest.NewServer(payretrytest.SmartRetry, payretrytest.Options{Plan: plan})
		res, reports, err := loadtest.RunProcesses(ctx, loadtest.ProcessConfig{
			URL: sim.PaymentURL(), APIKey: "shared-account",
			Replicas: replicas, Workers: workers, Payments: payments,
			Deadline:  30 * time.Second,
			Reference: fmt.Sprintf("example-%d-%t", time.Now().UnixNano(), shared),
			Setup:     set,
			Command:   func(int) *exec.Cmd { return exec.Command(self, "-child") },
		})
		if err != nil {
			sim.Close()
			return err
		}
		st := sim.Stats()
		dups := sim.Duplicates()
		quota, windows := loadtest.QuotaUsed(sim, res.Outcomes, 100)
		sim.Close()
		calls := "-"
		if shared {
			var n int64
			for i, r := range reports {
				var rep report
				if err := json.Unmarshal(r.Limiter, &rep); err != nil {
					return err
				}
				if rep.Degraded || rep.Stats.FallbackTakes > 0 {
					return fmt.Errorf("replica %d could not always reach Redis: numbers are partly in-process ones", i)
				}
				n += rep.Stats.RedisCalls
			}
			calls = fmt.Sprintf("%.2f", float64(n)/float64(payments))
		}
		fmt.Printf("%-14s %9d %9d %6d %6.1f%% %10.1f%% %9v %12v %14s\n",
			name, res.Succeeded, st.Requests, st.RateLimited, 100*float64(st.RateLimited)/float64(st.Requests),
			100*quota, res.Elapsed.Round(time.Millisecond), res.MaxLatency.Round(time.Millisecond), calls)
		if windows < 2 {
			fmt.Printf("%14s only %d whole windows: run more payments for the quota used\n", "", windows)
		}
		if res.Failed+res.Unknown > 0 || dups > 0 {
			fmt.Printf("%14s %d failed, %d unknown, %d duplicates\n", "", res.Failed, res.Unknown, dups)
		}
	}
	fmt.Println("\nquota used = requests the provider accepted in the one-second windows the run spanned whole,")
	fmt.Println("over 100 per window; Redis calls/p = the replicas' Redis calls per payment.")
	return nil
}

// replica makes a replica's policy, in the child process.
func replica(job loadtest.Job) (loadtest.Replica, error) {
	var set setup
	if err := json.Unmarshal(job.Setup, &set); err != nil {
		return loadtest.Replica{}, err
	}
	p := payretry.SmartRetry()
	if len(set.Redis) == 0 {
		return loadtest.Replica{Policy: p}, nil // nil Limiter: the Transport's own, in-process
	}
	var rdb redis.UniversalClient
	if set.Cluster {
		rdb = redis.NewClusterClient(&redis.ClusterOptions{Addrs: set.Redis, ContextTimeoutEnabled: true})
	} else {
		rdb = redis.NewClient(&redis.Options{Addr: set.Redis[0], ContextTimeoutEnabled: true})
	}
	// Connect before the payments start, as a service does when it starts.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return loadtest.Replica{}, errors.Join(err, rdb.Close())
	}
	l := redislimit.New(rdb, redislimit.Options{Prefix: "payretry-example", Logger: slog.Default()})
	p.Limiter = l
	return loadtest.Replica{
		Policy: p,
		Report: func() any { return report{Stats: l.Stats(), Degraded: l.Degraded()} },
		Close:  func() { _ = rdb.Close() },
	}, nil
}
