package bench

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The gateway passes answers through, answers 504 with nginx's page when
// the upstream is slower than its read time-out, and 502 when the upstream
// drops the connection.
func TestGateway(t *testing.T) {
	released := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		switch r.URL.Path {
		case "/slow":
			select {
			case <-time.After(5 * time.Second):
			case <-r.Context().Done(): // the gateway gave up and closed the connection
				close(released)
			}
			writeJSON(w, http.StatusCreated, `{"status":"executed"}`)
		case "/drop":
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			conn.(*net.TCPConn).SetLinger(0)
			conn.Close()
		default:
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusServiceUnavailable, `{"code":"SERVICE_UNAVAILABLE"}`)
		}
	}))
	defer up.Close()
	gw, err := NewGateway(up.URL, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	post := func(path string) (*http.Response, string, time.Duration) {
		start := time.Now()
		req, _ := http.NewRequest(http.MethodPost, gw.URL+path, strings.NewReader(`{"reference":"r"}`))
		req.Header.Set("Idempotency-Key", "k-"+path) // Go's transport would replay a keyed request on a reused connection
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b), time.Since(start)
	}

	resp, body, _ := post("/ok")
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" || !strings.Contains(body, "SERVICE_UNAVAILABLE") {
		t.Errorf("pass-through: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	resp, body, took := post("/slow")
	if resp.StatusCode != http.StatusGatewayTimeout || resp.Header.Get("Server") != "nginx" ||
		!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(body, "<h1>504 Gateway Time-out</h1>") {
		t.Errorf("slow upstream: %d %v %q", resp.StatusCode, resp.Header, body)
	}
	if took < 100*time.Millisecond || took > 2*time.Second {
		t.Errorf("504 after %v, want about the 100 ms read time-out", took)
	}
	select {
	case <-released:
	case <-time.After(2 * time.Second):
		t.Error("the upstream request was not canceled when the gateway gave up")
	}
	resp, body, _ = post("/drop")
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "<h1>502 Bad Gateway</h1>") {
		t.Errorf("dropped connection: %d %q", resp.StatusCode, body)
	}
	if gw.Requests() != 3 || gw.Timeouts() != 1 || gw.BadGateways() != 1 {
		t.Errorf("requests %d, 504s %d, 502s %d", gw.Requests(), gw.Timeouts(), gw.BadGateways())
	}
}
