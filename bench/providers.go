package bench

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// PaymentPath is the path every scenario posts payments to. It contains
// "/payments/sale", so payretry's SmartRetry preset files it under its
// documented 100/s payment limit.
const PaymentPath = "/v1/payments/sale"

// APIKey is the credential the scenarios send; rate limits are per key.
const APIKey = "sk_bench_0001"

// PaymentBody returns the JSON body of a payment: exactly 200 bytes for any
// reference of up to 16 characters.
func PaymentBody(ref string) []byte {
	const size = 200
	head := fmt.Sprintf(`{"reference":%q,"amount":4999,"currency":"USD","customer":"cus_8f2a61c9","description":"`, ref)
	tail := `"}`
	pad := size - len(head) - len(tail)
	if pad < 0 {
		pad = 0
	}
	b := make([]byte, 0, size)
	b = append(b, head...)
	for i := 0; i < pad; i++ {
		b = append(b, 'x')
	}
	return append(b, tail...)
}

// reference reads the payment reference from a request body.
func reference(r *http.Request) (string, bool) {
	var p struct {
		Reference string `json:"reference"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&p); err != nil || p.Reference == "" {
		return "", false
	}
	return p.Reference, true
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func approved(ref string) string {
	return `{"id":"txn_` + ref + `","reference":"` + ref + `","status":"approved"}`
}

// RateLimitProvider allows Limit requests per second per API key, in fixed
// windows aligned to unix seconds. Every response carries
// X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset (the unix
// time in seconds when the window ends); beyond the limit it answers 429
// with Retry-After: 1.
type RateLimitProvider struct {
	Limit int

	mu     sync.Mutex
	window map[string]int64 // API key -> current window (unix seconds)
	used   map[string]int   // API key -> requests in that window
	perWin map[int64]int    // window -> requests answered 200

	requests  atomic.Int64
	throttled atomic.Int64
	timeline  *timeline
}

// NewRateLimitProvider returns a provider allowing limit requests per
// second per API key.
func NewRateLimitProvider(limit int) *RateLimitProvider {
	return &RateLimitProvider{Limit: limit, window: map[string]int64{}, used: map[string]int{},
		perWin: map[int64]int{}, timeline: newTimeline(SeriesBucket)}
}

// ServeHTTP implements http.Handler.
func (p *RateLimitProvider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.requests.Add(1)
	io.Copy(io.Discard, r.Body)
	key := r.Header.Get("Authorization")
	now := time.Now()
	win := now.Unix()

	p.mu.Lock()
	if p.window[key] != win {
		p.window[key], p.used[key] = win, 0
	}
	p.used[key]++
	n := p.used[key]
	ok := n <= p.Limit
	if ok {
		p.perWin[win]++
	}
	p.mu.Unlock()

	p.timeline.add(now, !ok)
	h := w.Header()
	h.Set("X-RateLimit-Limit", strconv.Itoa(p.Limit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(max(0, p.Limit-n)))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(win+1, 10))
	if !ok {
		p.throttled.Add(1)
		h.Set("Retry-After", "1")
		writeJSON(w, http.StatusTooManyRequests,
			`{"type":"about:blank","title":"Too Many Requests","status":429,"reason_code":"RATE_LIMIT_EXCEEDED"}`)
		return
	}
	writeJSON(w, http.StatusOK, approved("rl"))
}

// Requests is the number of requests received.
func (p *RateLimitProvider) Requests() int64 { return p.requests.Load() }

// Throttled is the number of 429s sent.
func (p *RateLimitProvider) Throttled() int64 { return p.throttled.Load() }

// Begin sets the instant the run starts, bucket 0 of Series.
func (p *RateLimitProvider) Begin(start time.Time) { p.timeline.begin(start) }

// Series returns the requests and 429s per SeriesBucket since Begin.
func (p *RateLimitProvider) Series() *Series { return p.timeline.series() }

// MaxPerWindow is the most requests answered 200 in any one window.
func (p *RateLimitProvider) MaxPerWindow() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := 0
	for _, n := range p.perWin {
		m = max(m, n)
	}
	return m
}

// OutageProvider answers 503 (no Retry-After) to every request from Start
// until Start+Outage, and 200 afterwards.
type OutageProvider struct {
	start  time.Time
	outage time.Duration

	requests       atomic.Int64
	outageRequests atomic.Int64
	firstSuccess   atomic.Int64 // unix nanoseconds of the first 200 after the outage; 0 = none yet
	timeline       *timeline
}

// NewOutageProvider returns a provider that is down for outage from start.
func NewOutageProvider(start time.Time, outage time.Duration) *OutageProvider {
	tl := newTimeline(SeriesBucket)
	tl.begin(start)
	return &OutageProvider{start: start, outage: outage, timeline: tl}
}

// ServeHTTP implements http.Handler.
func (p *OutageProvider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	p.requests.Add(1)
	now := time.Now()
	p.timeline.add(now, false)
	if now.Before(p.start.Add(p.outage)) {
		if !now.Before(p.start) {
			p.outageRequests.Add(1)
		}
		writeJSON(w, http.StatusServiceUnavailable,
			`{"error":{"code":"service_unavailable","message":"upstream processor unavailable"}}`)
		return
	}
	p.firstSuccess.CompareAndSwap(0, now.UnixNano())
	writeJSON(w, http.StatusOK, approved("ok"))
}

// Requests is the number of requests received.
func (p *OutageProvider) Requests() int64 { return p.requests.Load() }

// Series returns the requests per SeriesBucket since the start.
func (p *OutageProvider) Series() *Series { return p.timeline.series() }

// OutageRequests is the number of requests received during the outage.
func (p *OutageProvider) OutageRequests() int64 { return p.outageRequests.Load() }

// RecoveryToFirstSuccess is the time from the end of the outage to the first
// 200, and false if none was sent.
func (p *OutageProvider) RecoveryToFirstSuccess() (time.Duration, bool) {
	ns := p.firstSuccess.Load()
	if ns == 0 {
		return 0, false
	}
	return time.Unix(0, ns).Sub(p.start.Add(p.outage)), true
}

// LedgerProvider executes each payment request (a ledger entry per
// reference), then stalls on a seeded StallRate of requests for Stall (or
// until the client goes away) before answering. A request whose
// Idempotency-Key was already executed is not executed again: the stored
// answer is replayed (and may stall like any other request).
type LedgerProvider struct {
	StallRate float64
	Stall     time.Duration
	Seed      uint64

	mu       sync.Mutex
	executed map[string]int    // reference -> executions
	stored   map[string]string // idempotency key -> stored answer
	seen     map[string]int    // reference -> requests so far

	requests atomic.Int64
	replays  atomic.Int64
	stalls   atomic.Int64
}

// NewLedgerProvider returns a ledger that stalls on stallRate of requests.
func NewLedgerProvider(stallRate float64, stall time.Duration, seed uint64) *LedgerProvider {
	return &LedgerProvider{StallRate: stallRate, Stall: stall, Seed: seed,
		executed: map[string]int{}, stored: map[string]string{}, seen: map[string]int{}}
}

// stalls decides, from the seed alone, whether the n-th request (from 0) for
// ref stalls: the same references see the same stalls in every run and for
// every client, whatever the order requests arrive in.
func (p *LedgerProvider) stallsOn(ref string, n int) bool {
	h := fnv.New64a()
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], p.Seed)
	binary.LittleEndian.PutUint64(b[8:], uint64(n))
	h.Write(b[:])
	io.WriteString(h, ref)
	return float64(mix(h.Sum64())>>11)/float64(1<<53) < p.StallRate
}

// mix is the splitmix64 finalizer: FNV's high bits barely change when only
// the last bytes of the input do.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// ServeHTTP implements http.Handler.
func (p *LedgerProvider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.requests.Add(1)
	ref, ok := reference(r)
	if !ok {
		writeJSON(w, http.StatusBadRequest, `{"error":{"code":"invalid_request","message":"reference missing"}}`)
		return
	}
	key := r.Header.Get("Idempotency-Key")

	p.mu.Lock()
	n := p.seen[ref]
	p.seen[ref]++
	answer, replay := "", false
	if key != "" {
		answer, replay = p.stored[key]
	}
	if !replay {
		p.executed[ref]++
		answer = approved(ref)
		if key != "" {
			p.stored[key] = answer
		}
	}
	p.mu.Unlock()

	if replay {
		p.replays.Add(1)
		w.Header().Set("Idempotent-Replayed", "true")
	}
	if p.stallsOn(ref, n) {
		p.stalls.Add(1)
		t := time.NewTimer(p.Stall)
		select {
		case <-t.C:
		case <-r.Context().Done():
		}
		t.Stop()
	}
	writeJSON(w, http.StatusOK, answer)
}

// Executions returns how many times ref was executed.
func (p *LedgerProvider) Executions(ref string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.executed[ref]
}

// Requests is the number of requests received.
func (p *LedgerProvider) Requests() int64 { return p.requests.Load() }

// Replays is the number of answers replayed by idempotency key.
func (p *LedgerProvider) Replays() int64 { return p.replays.Load() }

// Stalls is the number of requests that stalled.
func (p *LedgerProvider) Stalls() int64 { return p.stalls.Load() }
