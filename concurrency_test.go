package payretry

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ledgerServer executes payments once per Idempotency-Key and replays the
// stored answer, with a seeded fault mix (30 % of first sends): 503 before
// executing, 429, a stall and a connection reset after executing.
type ledgerServer struct {
	*httptest.Server
	mu       sync.Mutex
	executed map[string]int    // reference -> executions
	stored   map[string]string // key -> reference executed under it
	faults   int
	requests int
}

func newLedgerServer(t *testing.T, seed uint64) *ledgerServer {
	s := &ledgerServer{executed: map[string]int{}, stored: map[string]string{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p struct{ Reference string }
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil || p.Reference == "" {
			w.WriteHeader(400)
			return
		}
		key := r.Header.Get("Idempotency-Key")
		s.mu.Lock()
		s.requests++
		h := fnv.New64a()
		fmt.Fprintf(h, "%d/%s/%d", seed, p.Reference, s.requests)
		roll := h.Sum64() % 100
		if ref, ok := s.stored[key]; ok && key != "" {
			s.mu.Unlock()
			w.WriteHeader(200) // replay of the stored result
			fmt.Fprintf(w, `{"reference":%q}`, ref)
			return
		}
		if roll < 10 {
			s.faults++
			s.mu.Unlock()
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(503)
			return
		}
		if roll < 15 {
			s.faults++
			s.mu.Unlock()
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(429)
			return
		}
		s.executed[p.Reference]++
		if key != "" {
			s.stored[key] = p.Reference
		}
		if roll < 30 {
			s.faults++
		}
		s.mu.Unlock()
		switch {
		case roll < 23:
			stall(w, r)
			return
		case roll < 30:
			reset(w, r)
			return
		}
		w.WriteHeader(201)
	}))
	t.Cleanup(s.Close)
	return s
}

func TestConcurrentPaymentsNeverExecuteTwice(t *testing.T) {
	s := newLedgerServer(t, 7)
	p := keyed()
	p.AttemptTimeout = 50 * time.Millisecond
	p.InitialInterval = time.Millisecond
	p.MaxAttempts = 8
	tr, err := NewTransport(nil, p)
	require.NoError(t, err)

	const workers, each = 16, 25
	type result struct {
		ref     string
		ok      bool
		unknown bool
		key     string
	}
	results := make(chan result, workers*each)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				ref := fmt.Sprintf("pay-%d-%d", w, i)
				req, _ := http.NewRequest(http.MethodPost, s.URL, strings.NewReader(`{"reference":"`+ref+`"}`))
				resp, err := tr.RoundTrip(req)
				res := result{ref: ref}
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					res.ok = resp.StatusCode/100 == 2
				} else {
					var e *Error
					if errors.As(err, &e) {
						res.unknown, res.key = e.OutcomeUnknown, e.IdempotencyKey
					}
				}
				results <- res
			}
		}()
	}
	wg.Wait()
	close(results)

	s.mu.Lock()
	defer s.mu.Unlock()
	assert.GreaterOrEqual(t, s.faults*100/s.requests, 20, "a heavy fault mix")
	succeeded := 0
	for r := range results {
		assert.LessOrEqual(t, s.executed[r.ref], 1, "%s executed twice", r.ref)
		switch {
		case r.ok:
			succeeded++
			assert.Equal(t, 1, s.executed[r.ref], "%s succeeded but was not executed", r.ref)
		case r.unknown:
			// Reconcile through the provider's store by the reported key.
			require.NotEmpty(t, r.key)
			if ref, ok := s.stored[r.key]; ok {
				assert.Equal(t, r.ref, ref)
			}
		default:
			assert.Zero(t, s.executed[r.ref], "%s reported as failed but executed", r.ref)
		}
	}
	assert.Greater(t, succeeded, workers*each*8/10)
}
