package demo

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/payretry/payretry"
)

// Lookup asks a provider's status endpoint whether a payment executed: it sends
// a GET to statusURL through client, with header's fields added when header
// is not nil. It reports true for a 200 and false for a 404, the only answer
// that means "not executed". Any other status is an error, the
// *payretry.Error of [payretry.CheckResponse] for a non-2xx; no answer at all
// is client's error. ctx bounds the lookup, retries included.
func Lookup(ctx context.Context, client *http.Client, statusURL string, header http.Header) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, statusURL, nil)
	if err != nil {
		return false, err
	}
	for name, values := range header {
		req.Header[name] = append(req.Header[name], values...)
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, err
	}
	defer func() {
		_, _ = io.Copy(io.Discard, resp.Body) // CheckResponse may have replaced it
		resp.Body.Close()
	}()
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	}
	if err := payretry.CheckResponse(resp); err != nil {
		return false, err
	}
	return false, fmt.Errorf("demo: status lookup answered %s", resp.Status)
}

// reconcileTimeout bounds Reconcile's lookup. The payment's own context may
// have expired already: a lookup gets a fresh one.
const reconcileTimeout = 5 * time.Second

// Reconcile settles a payment whose outcome is unknown: it looks it up as
// Lookup does, within 5 s, and prints the verdict, "executed: do not pay
// again", "not executed: safe to pay again" or, when the lookup itself
// failed, "keep it for later reconciliation".
func Reconcile(client *http.Client, statusURL string, header http.Header) {
	ctx, cancel := context.WithTimeout(context.Background(), reconcileTimeout)
	defer cancel()
	executed, err := Lookup(ctx, client, statusURL, header)
	switch {
	case err != nil:
		fmt.Printf("  -> lookup failed (%v): keep it for later reconciliation\n", err)
	case executed:
		fmt.Println("  -> reconciled: it executed; do not pay again")
	default:
		fmt.Println("  -> reconciled: not executed; safe to pay again")
	}
}
