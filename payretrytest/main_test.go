package payretrytest_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/payretry/payretry/payretrytest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// t0 is a fixed instant in the middle of a Unix second window.
var t0 = time.Unix(1711979532, 0).UTC()

// fakeClock is a settable Options.Clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// reply is a response read in full.
type reply struct {
	status int
	header http.Header
	raw    string
	body   map[string]any // nil unless the body is a JSON object
}

func (r reply) str(field string) string {
	s, _ := r.body[field].(string)
	return s
}

// headers are request headers.
type headers map[string]string

// do sends one request; body is marshalled unless it is a string.
func do(ctx context.Context, c *http.Client, method, url string, body any, h headers) (reply, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewReader([]byte(b))
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			return reply{}, err
		}
		rd = bytes.NewReader(buf)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return reply{}, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, err
	}
	r := reply{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &r.body)
	return r, nil
}

// must sends one request through s's client and fails the test on a transport error.
func must(t *testing.T, s *payretrytest.Server, method, url string, body any, h headers) reply {
	t.Helper()
	r, err := do(context.Background(), s.Client(), method, url, body, h)
	require.NoError(t, err)
	return r
}

// pay is a payment body.
func pay(ref string) map[string]any {
	return map[string]any{"reference": ref, "amount": 1000, "currency": "EUR"}
}

// newUUID returns a random version 4 UUID.
func newUUID(t testing.TB) string {
	var b [16]byte
	_, err := rand.Read(b[:])
	require.NoError(t, err)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// freshClient opens a new connection per request, so that Go's transport never
// retries a reset on its own (it does so on reused connections for requests
// with an Idempotency-Key).
func freshClient(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
}

// keyed returns the request headers and body that carry key on provider p
// (for KeyStone the key goes into the body), plus Verto's correlation id.
func keyed(p payretrytest.Provider, ref, key string) (map[string]any, headers) {
	body, h := pay(ref), headers{}
	if p == payretrytest.Verto {
		h["Vfx-Correlation-Id"] = "corr-" + ref
	}
	switch {
	case key == "":
	case p == payretrytest.KeyStone:
		body["idempotency_key"] = key
	default:
		h["Idempotency-Key"] = key
	}
	return body, h
}

var providers = []payretrytest.Provider{payretrytest.ORZCash, payretrytest.Verto, payretrytest.KeyStone, payretrytest.SmartRetry}
