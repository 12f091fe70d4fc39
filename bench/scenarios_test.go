package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestPaymentBody(t *testing.T) {
	b := PaymentBody("pay-000123")
	if len(b) != 200 {
		t.Fatalf("body is %d bytes, want 200", len(b))
	}
	var p struct{ Reference string }
	if err := json.Unmarshal(b, &p); err != nil || p.Reference != "pay-000123" {
		t.Fatalf("body %s: reference %q, err %v", b, p.Reference, err)
	}
}

// Every retrying client makes 4 attempts at a provider that always answers
// 503, and 1 at one that answers 400; bare makes 1.
func TestClientsRetryContract(t *testing.T) {
	for _, status := range []int{http.StatusServiceUnavailable, http.StatusBadRequest} {
		for _, name := range Peers {
			var n atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n.Add(1)
				io.Copy(io.Discard, r.Body)
				w.WriteHeader(status)
			}))
			base := NewBaseTransport()
			_, c, err := NewClient(name, base, Options{})
			if err != nil {
				t.Fatal(err)
			}
			pay(context.Background(), c, srv.URL+PaymentPath, "pay-1", bearer(""), 5*time.Second)
			want := int64(MaxAttempts)
			if name == Bare || status == http.StatusBadRequest {
				want = 1
			}
			if got := n.Load(); got != want {
				t.Errorf("%s, status %d: %d attempts, want %d", name, status, got, want)
			}
			base.CloseIdleConnections()
			srv.Close()
		}
	}
}

func TestRateLimitProvider(t *testing.T) {
	p := NewRateLimitProvider(3)
	srv := httptest.NewServer(p)
	defer srv.Close()
	// Start just after a second, so that all requests fall in one window.
	if err := sleepUntil(context.Background(), time.Unix(time.Now().Unix()+1, int64(5*time.Millisecond))); err != nil {
		t.Fatal(err)
	}
	var codes []int
	for i := range 5 {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+PaymentPath, bytes.NewReader(PaymentBody(ref(i))))
		req.Header.Set("Authorization", "Bearer "+APIKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
		reset, err := strconv.ParseInt(resp.Header.Get("X-RateLimit-Reset"), 10, 64)
		if err != nil || reset != time.Now().Unix()+1 {
			t.Errorf("X-RateLimit-Reset %q, want the next unix second", resp.Header.Get("X-RateLimit-Reset"))
		}
		if resp.Header.Get("X-RateLimit-Limit") != "3" {
			t.Errorf("X-RateLimit-Limit %q", resp.Header.Get("X-RateLimit-Limit"))
		}
		wantRem := strconv.Itoa(max(0, 3-(i+1)))
		if got := resp.Header.Get("X-RateLimit-Remaining"); got != wantRem {
			t.Errorf("request %d: X-RateLimit-Remaining %q, want %s", i, got, wantRem)
		}
		if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") != "1" {
			t.Errorf("429 without Retry-After: 1")
		}
	}
	want := []int{200, 200, 200, 429, 429}
	for i := range want {
		if codes[i] != want[i] {
			t.Fatalf("statuses %v, want %v", codes, want)
		}
	}
	if p.Throttled() != 2 || p.Requests() != 5 || p.MaxPerWindow() != 3 {
		t.Errorf("throttled %d, requests %d, max per window %d", p.Throttled(), p.Requests(), p.MaxPerWindow())
	}
}

func TestOutageProvider(t *testing.T) {
	p := NewOutageProvider(time.Now(), 100*time.Millisecond)
	srv := httptest.NewServer(p)
	defer srv.Close()
	get := func() int {
		resp, err := http.Post(srv.URL+PaymentPath, "application/json", bytes.NewReader(PaymentBody("p")))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.Header.Get("Retry-After") != "" {
			t.Error("503 carries a Retry-After")
		}
		return resp.StatusCode
	}
	if c := get(); c != http.StatusServiceUnavailable {
		t.Fatalf("during the outage: %d", c)
	}
	if _, ok := p.RecoveryToFirstSuccess(); ok {
		t.Fatal("a success before recovery")
	}
	time.Sleep(120 * time.Millisecond)
	if c := get(); c != http.StatusOK {
		t.Fatalf("after the outage: %d", c)
	}
	if d, ok := p.RecoveryToFirstSuccess(); !ok || d < 0 || d > time.Second {
		t.Errorf("recovery to first success %v %v", d, ok)
	}
	if p.OutageRequests() != 1 || p.Requests() != 2 {
		t.Errorf("outage requests %d, requests %d", p.OutageRequests(), p.Requests())
	}
}

func TestLedgerProvider(t *testing.T) {
	p := NewLedgerProvider(0.2, time.Second, 7)
	stalls := 0
	for i := range 10000 {
		if p.stallsOn(ref(i), 0) {
			stalls++
		}
		if p.stallsOn(ref(i), 0) != p.stallsOn(ref(i), 0) {
			t.Fatal("stall decision not deterministic")
		}
	}
	if stalls < 1800 || stalls > 2200 {
		t.Errorf("%d of 10000 first requests stall, want about 2000", stalls)
	}

	p = NewLedgerProvider(0, 0, 7)
	srv := httptest.NewServer(p)
	defer srv.Close()
	post := func(ref, key string) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+PaymentPath, bytes.NewReader(PaymentBody(ref)))
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), ref) {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
	}
	post("a", "k1")
	post("a", "k1")
	post("b", "")
	post("b", "")
	if p.Executions("a") != 1 || p.Executions("b") != 2 || p.Replays() != 1 {
		t.Errorf("executions a=%d b=%d, replays %d", p.Executions("a"), p.Executions("b"), p.Replays())
	}
}

func TestDuplicatesSmoke(t *testing.T) {
	cfg := DuplicatesConfig{Payments: 40, Workers: 8, StallRate: 0.2, Stall: 300 * time.Millisecond,
		AttemptTimeout: 60 * time.Millisecond, PaymentTimeout: 5 * time.Second, Seed: 1, Bound: 30 * time.Second}
	for _, name := range Peers {
		for _, key := range []bool{false, true} {
			r, err := RunDuplicates(context.Background(), cfg, name, key)
			if err != nil {
				t.Fatal(err)
			}
			m := r.Metrics
			t.Logf("%s %s: %v", name, r.Variant, m)
			if m["lost"] != 0 {
				t.Errorf("%s %s: %v payments never executed", name, r.Variant, m["lost"])
			}
			switch {
			case name == Bare:
				if m["duplicates"] != 0 || m["failed"] == 0 || m["attempts_per_payment"] != 1 {
					t.Errorf("bare: %v", m)
				}
			case name == Payretry || key:
				if m["duplicates"] != 0 {
					t.Errorf("%s %s: %v payments executed twice", name, r.Variant, m["duplicates"])
				}
			default:
				if m["duplicates"] == 0 {
					t.Errorf("%s without a key executed nothing twice: %v", name, m)
				}
			}
		}
	}
}

func TestOutageSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("runs about 5 s")
	}
	cfg := OutageConfig{Rate: 40, Duration: time.Second, Outage: 500 * time.Millisecond, PaymentTimeout: 3 * time.Second}
	for _, name := range Peers {
		r, err := RunOutage(context.Background(), cfg, name)
		if err != nil {
			t.Fatal(err)
		}
		m := r.Metrics
		t.Logf("%s: %v", name, m)
		if m["payments"] != 40 || m["outage_payments"] < 15 || m["outage_payments"] > 25 {
			t.Errorf("%s: arrivals %v", name, m)
		}
		switch name {
		case Bare:
			if m["attempts_per_outage_payment"] != 1 || m["failed"] < 15 {
				t.Errorf("bare: %v", m)
			}
		case Retryablehttp, Failsafe:
			if m["attempts_per_outage_payment"] < 2 {
				t.Errorf("%s retried little: %v", name, m)
			}
		}
		if _, ok := m["recovery_ms"]; !ok {
			t.Errorf("%s: no success after recovery", name)
		}
	}
}

func TestGoodputSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("runs about 12 s")
	}
	cfg := GoodputConfig{Limit: 20, Payments: 40, Workers: 4, PaymentTimeout: 10 * time.Second, Bound: 20 * time.Second}
	for _, name := range []string{Bare, Payretry, PayretrySmart, Retryablehttp, Failsafe} {
		r, err := RunGoodput(context.Background(), cfg, name)
		if err != nil {
			t.Fatal(err)
		}
		m := r.Metrics
		t.Logf("%s: %v", name, m)
		if m["max_per_window"] > 20 {
			t.Errorf("%s: provider let %v through in one window", name, m["max_per_window"])
		}
		if m["ok"]+m["failed"] != 40 {
			t.Errorf("%s: %v", name, m)
		}
		if name == Bare && (m["ok"] != 20 || m["throttled"] != 20) {
			t.Errorf("bare: %v", m)
		}
		if name != Bare && m["ok"] < 30 {
			t.Errorf("%s completed only %v of 40", name, m["ok"])
		}
	}
}

func TestMedianAndMarkdown(t *testing.T) {
	rows := []Row{
		{Scenario: "outage", Run: 1, Client: Payretry, Metrics: map[string]float64{"failed": 1, "outage_rps": 10}},
		{Scenario: "outage", Run: 2, Client: Payretry, Metrics: map[string]float64{"failed": 3, "outage_rps": 30}},
		{Scenario: "outage", Run: 3, Client: Payretry, Metrics: map[string]float64{"failed": 2, "outage_rps": 20}},
		{Scenario: "outage", Run: 1, Client: Retryablehttp, Metrics: map[string]float64{"failed": 4, "outage_rps": 40}},
		{Scenario: "outage", Run: 2, Client: Retryablehttp, Metrics: map[string]float64{"failed": 6, "outage_rps": 80}},
	}
	med := Median(rows)
	if len(med) != 2 || med[0].Metrics["failed"] != 2 || med[1].Metrics["outage_rps"] != 60 || med[0].Run != 3 {
		t.Fatalf("medians %+v", med)
	}
	var b strings.Builder
	WriteMarkdown(&b, Tables["outage"], med)
	out := b.String()
	for _, want := range []string{"### Outage", "| payretry | — | — | 20.0 | — | 2 | — |",
		"| payretry ÷ retryablehttp | — | 0.33× | 0.40× |"} {
		if !strings.Contains(out, want) {
			t.Errorf("markdown lacks %q:\n%s", want, out)
		}
	}
}
