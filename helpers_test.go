package payretry

import (
	"context"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// t0 is the fixed instant fake clocks start from.
var t0 = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

// fakeClock is the transport's clock in tests: waits advance it at once and
// are recorded.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	waits []time.Duration
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waits = append(c.waits, d)
	c.now = c.now.Add(d)
	return nil
}

func (c *fakeClock) Waits() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.waits...)
}

// newTestTransport returns a transport on a fake clock whose jitter draws the
// middle of its range, so that waits are exact.
func newTestTransport(t testing.TB, base http.RoundTripper, p Policy) (*Transport, *fakeClock) {
	t.Helper()
	tr, err := NewTransport(base, p)
	require.NoError(t, err)
	clk := &fakeClock{now: t0}
	tr.now, tr.sleep, tr.rand = clk.Now, clk.Sleep, func() float64 { return 0.5 }
	return tr, clk
}

// seen is one request as the server received it.
type seen struct {
	Method string
	Path   string
	Header http.Header
	Body   []byte
	Proto  int // 1 or 2
}

// script is a loopback server that answers the n-th request with the n-th
// handler (the last one repeats) and records every request.
type script struct {
	*httptest.Server
	base  http.RoundTripper // a client transport for the server's protocol
	mu    sync.Mutex
	reqs  []seen
	conns atomic.Int32 // connections accepted
}

// protocols are the wires that behaviour tests run over: HTTP/1.1 in clear,
// and HTTP/2 over TLS, as payment APIs are reached; net/http fails and
// retries differently on each.
var protocols = []string{"HTTP/1.1", "HTTP/2"}

func newScript(t testing.TB, handlers ...http.HandlerFunc) *script {
	t.Helper()
	return newScriptOn(t, "HTTP/1.1", handlers...)
}

// newScriptOn is newScript over proto, one of protocols; s.base speaks it.
func newScriptOn(t testing.TB, proto string, handlers ...http.HandlerFunc) *script {
	t.Helper()
	s := &script{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		n := len(s.reqs)
		s.reqs = append(s.reqs, seen{r.Method, r.URL.Path, r.Header.Clone(), body, r.ProtoMajor})
		s.mu.Unlock()
		handlers[min(n, len(handlers)-1)](w, r)
	}))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	switch proto {
	case "HTTP/1.1":
		s.Start()
		s.base = &http.Transport{}
	case "HTTP/2":
		s.EnableHTTP2 = true
		s.StartTLS()
		s.base = s.Client().Transport
	default:
		t.Fatalf("no protocol %q", proto)
	}
	t.Cleanup(func() {
		s.base.(*http.Transport).CloseIdleConnections()
		s.Close()
	})
	return s
}

func (s *script) Requests() []seen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seen(nil), s.reqs...)
}

// headers returns the values of header h on every request received.
func (s *script) headers(h string) []string {
	var out []string
	for _, r := range s.Requests() {
		out = append(out, r.Header.Get(h))
	}
	return out
}

// status answers with a status code, optional header pairs and a body.
func status(code int, body string, kv ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(kv); i += 2 {
			w.Header().Set(kv[i], kv[i+1])
		}
		w.WriteHeader(code)
		io.WriteString(w, body)
	}
}

// stall holds the request until the client goes away or the server closes.
func stall(w http.ResponseWriter, r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-time.After(5 * time.Second):
	}
}

// reset ends the exchange without an answer after reading the request: it
// closes the connection (HTTP/1.1) or resets the stream (HTTP/2).
func reset(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 2 {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err)
	}
	conn.Close()
}

// post sends a POST through tr and returns the response and error.
func post(t testing.TB, tr http.RoundTripper, url, body string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, stringsReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := tr.RoundTrip(req)
	if resp != nil {
		t.Cleanup(func() { resp.Body.Close() })
	}
	return resp, err
}

func stringsReader(s string) io.Reader {
	if s == "" {
		return nil
	}
	return &stringReader{s: s}
}

// stringReader has no Len method, so http.NewRequest sets no GetBody: tests
// choose GetBody explicitly with bodyWithGetBody.
type stringReader struct {
	s string
	i int
}

func (r *stringReader) Read(p []byte) (int, error) {
	if r.i >= len(r.s) {
		return 0, io.EOF
	}
	n := copy(p, r.s[r.i:])
	r.i += n
	return n, nil
}

func readAll(t testing.TB, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

func newTextLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, nil))
}

// discardLog is a server error log that drops what it is given (TLS
// handshake errors that a test provokes).
func discardLog() *log.Logger { return log.New(io.Discard, "", 0) }
