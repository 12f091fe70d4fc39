package redislimit

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/payretry/payretry/redislimit/internal/redisserver"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// startRedis starts a real redis-server on a free loopback port for one test
// and stops it when the test ends. The test is skipped, saying why, only when
// no redis-server binary is installed.
func startRedis(t *testing.T) *redisserver.Server {
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
func newClient(t *testing.T, addr string) *redis.Client {
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
	os.Exit(m.Run())
}

type discard struct{}

func (discard) Printf(context.Context, string, ...any) {}
