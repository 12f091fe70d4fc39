package bench

import (
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"time"
)

// NaiveWait is how long the naive client waits before each retry.
const NaiveWait = 100 * time.Millisecond

// NewNaive returns the retry loop many services write by hand: every
// transport error and every answer that is not 2xx is retried after
// NaiveWait, up to MaxAttempts in all, and each retry carries a fresh
// Idempotency-Key (a random UUID), "so that the provider does not answer
// with the stored failure". After a time-out whose request executed, that
// fresh key pays twice. The first attempt carries the caller's key, if any.
func NewNaive(base http.RoundTripper) http.RoundTripper {
	return naive{base: base}
}

type naive struct{ base http.RoundTripper }

// RoundTrip implements http.RoundTripper.
func (n naive) RoundTrip(req *http.Request) (*http.Response, error) {
	for attempt := 1; ; attempt++ {
		r := req.Clone(req.Context())
		if attempt > 1 {
			if req.GetBody != nil {
				body, err := req.GetBody()
				if err != nil {
					return nil, err
				}
				r.Body = body
			}
			r.Header.Set("Idempotency-Key", newUUID())
		}
		resp, err := n.base.RoundTrip(r)
		last := attempt >= MaxAttempts || (req.Body != nil && req.Body != http.NoBody && req.GetBody == nil)
		if err == nil && resp.StatusCode < 300 || last {
			return resp, err
		}
		if resp != nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		t := time.NewTimer(NaiveWait)
		select {
		case <-req.Context().Done():
			t.Stop()
			return nil, req.Context().Err()
		case <-t.C:
		}
	}
}

// newUUID returns a random version-4 UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
