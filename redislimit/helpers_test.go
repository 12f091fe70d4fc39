package redislimit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payretry/payretry"
	"github.com/payretry/payretry/redislimit/internal/loadtest"
	"github.com/payretry/payretry/redislimit/internal/redisserver"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// startRedis starts a real redis-server on a free loopback port for one test
// and stops it when the test ends. The test is skipped, saying why, only when
// no redis-server binary is installed.
func startRedis(t testing.TB) *redisserver.Server {
	t.Helper()
	srv, err := redisserver.Start(context.Background())
	if errors.Is(err, redisserver.ErrNotInstalled) {
		t.Skip("redislimit tests run against a real Redis: " + err.Error())
	}
	require.NoError(t, err)
	t.Cleanup(srv.Stop)
	return srv
}

// newClient returns a client of addr with the settings the package doc
// recommends: context deadlines honoured, no command retries.
func newClient(t testing.TB, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{
		Addr:                  addr,
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
		DialTimeout:           100 * time.Millisecond,
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// logs records the lines a Limiter logs.
type logs struct {
	mu    sync.Mutex
	lines []string // messages
	full  []string // with time and attributes
}

func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.full, "\n")
}

func (l *logs) Enabled(context.Context, slog.Level) bool { return true }
func (l *logs) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, r.Message)
	line := r.Time.Format("15:04:05.000") + " " + r.Message
	r.Attrs(func(a slog.Attr) bool { line += " " + a.String(); return true })
	l.full = append(l.full, line)
	return nil
}
func (l *logs) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logs) WithGroup(string) slog.Handler      { return l }

func (l *logs) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.lines {
		if m == msg {
			n++
		}
	}
	return n
}

const (
	msgDown = "redislimit: redis unavailable, pacing in-process"
	msgBack = "redislimit: redis available again, pacing shared"
)

// quiet returns a logger that drops everything, for tests that do not look
// at the lines.
func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestMain(m *testing.M) {
	// go-redis logs each failed dial on the standard logger; the tests kill
	// Redis on purpose.
	redis.SetLogger(discard{})
	if os.Getenv(childEnv) != "" {
		// A replica started by runProcesses: this binary, re-executed.
		if err := loadtest.Child(context.Background(), os.Stdin, os.Stdout, setupReplica); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// childEnv, set, makes the test binary a replica (see TestMain).
const childEnv = "REDISLIMIT_TEST_REPLICA"

// replicaCommand re-executes the test binary as a replica.
func replicaCommand(int) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	return cmd
}

// replicaSetup says how a replica in a child process paces (the Setup of
// its loadtest.Job).
type replicaSetup struct {
	Redis   []string      // addresses; none: the Transport's own in-process limiter
	Cluster bool          // Redis is a Redis Cluster
	Timeout time.Duration // Options.Timeout; 0 the default
}

// replicaReport is what a replica says of its limiter after the run.
type replicaReport struct {
	Stats    Stats
	Degraded bool
	Events   []limiterEvent // the lines it logged
}

// limiterEvent is one line a replica's limiter logged.
type limiterEvent struct {
	At    time.Time
	Msg   string
	Calls int64  // Stats().RedisCalls then
	Error string // the error of an outage
}

// setupReplica makes a replica's policy from its job, in the child.
func setupReplica(job loadtest.Job) (loadtest.Replica, error) {
	var set replicaSetup
	if err := json.Unmarshal(job.Setup, &set); err != nil {
		return loadtest.Replica{}, err
	}
	p := payretry.SmartRetry()
	if len(set.Redis) == 0 {
		return loadtest.Replica{Policy: p}, nil // nil Limiter: in-process
	}
	var rdb redis.UniversalClient
	if set.Cluster {
		rdb = redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: set.Redis, ContextTimeoutEnabled: true, DialTimeout: 100 * time.Millisecond,
		})
	} else {
		rdb = redis.NewClient(&redis.Options{
			Addr: set.Redis[0], ContextTimeoutEnabled: true, MaxRetries: -1, DialTimeout: 100 * time.Millisecond,
		})
	}
	// Connect (and, for a cluster, read the slot map) before the run, as
	// a service does when it starts.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ping := func(ctx context.Context, c *redis.Client) error { return c.Ping(ctx).Err() }
	var err error
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, ping)
	} else {
		err = ping(ctx, rdb.(*redis.Client))
	}
	if err != nil {
		return loadtest.Replica{}, err
	}
	events := &eventLog{}
	l := New(rdb, Options{Timeout: set.Timeout, Logger: slog.New(events)})
	events.lim.Store(l)
	p.Limiter = l
	return loadtest.Replica{
		Policy: p,
		Report: func() any {
			return replicaReport{Stats: l.Stats(), Degraded: l.Degraded(), Events: events.all()}
		},
		Close: func() { _ = rdb.Close() },
	}, nil
}

// eventLog is a replica limiter's log handler.
type eventLog struct {
	lim    atomic.Pointer[Limiter]
	mu     sync.Mutex
	events []limiterEvent
}

func (e *eventLog) Enabled(context.Context, slog.Level) bool { return true }
func (e *eventLog) Handle(_ context.Context, r slog.Record) error {
	ev := limiterEvent{At: r.Time, Msg: r.Message}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "error" {
			ev.Error = a.Value.String()
		}
		return true
	})
	if l := e.lim.Load(); l != nil {
		ev.Calls = l.Stats().RedisCalls
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.events = append(e.events, ev)
	return nil
}
func (e *eventLog) WithAttrs([]slog.Attr) slog.Handler { return e }
func (e *eventLog) WithGroup(string) slog.Handler      { return e }

func (e *eventLog) all() []limiterEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.events)
}

type discard struct{}

func (discard) Printf(context.Context, string, ...any) {}
