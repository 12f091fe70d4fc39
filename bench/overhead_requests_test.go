package bench

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/payretry/payretry"
)

// recordRT is the in-memory base that keeps what it was sent.
type recordRT struct {
	header http.Header
	body   []byte
}

func (r *recordRT) RoundTrip(req *http.Request) (*http.Response, error) {
	r.header = req.Header.Clone()
	r.body = nil
	if req.Body != nil {
		r.body, _ = io.ReadAll(req.Body)
		req.Body.Close()
	}
	return cannedRT{}.RoundTrip(req)
}

// The overhead benchmarks measure what they claim: the presets as users run
// them, and with key=caller the same request reaching the provider from
// every client, the one bare sends; with key=none, payretry's clients add
// their ids where their provider reads them and the peers add none.
func TestOverheadRequests(t *testing.T) {
	for _, client := range Presets {
		rt, _, err := NewClient(client, cannedRT{}, Options{NoClientLimits: true})
		if err != nil {
			t.Fatal(err)
		}
		p := rt.(*payretry.Transport).Policy()
		if p.AttemptTimeout != 20*time.Second || p.Limits != nil {
			t.Errorf("%s: AttemptTimeout %v, Limits %v; want the preset's 20s and none", client, p.AttemptTimeout, p.Limits)
		}
	}
	for _, oc := range overheadCases {
		if oc.base != "inmem" {
			continue
		}
		r := newRequest(oc.method, oc.key, "http://provider.invalid"+PaymentPath)
		if r.body != nil && !json.Valid(r.body) {
			t.Fatalf("%+v: body %s", oc, r.body)
		}
		sent := map[string]*recordRT{}
		for _, client := range OverheadClients {
			rec := &recordRT{}
			rt, _, err := NewClient(client, rec, Options{NoClientLimits: true})
			if err != nil {
				t.Fatal(err)
			}
			if err := call(rt, r); err != nil {
				t.Fatalf("%s %+v: %v", client, oc, err)
			}
			sent[client] = rec
		}
		bare := sent[Bare]
		if oc.key == "caller" {
			if got := bare.header.Get("Vfx-Correlation-Id"); got != callerCorrelation {
				t.Errorf("%+v: bare sent correlation id %q", oc, got)
			}
			if r.body != nil && (bare.header.Get("Idempotency-Key") != callerKey || !strings.Contains(string(bare.body), callerKey)) {
				t.Errorf("%+v: bare sent header %v body %s", oc, bare.header, bare.body)
			}
		}
		for _, client := range OverheadClients {
			rec := sent[client]
			peer := slices.Contains([]string{Bare, Retryablehttp, Failsafe, RetryablehttpBounded, FailsafeBounded}, client)
			adds := oc.key == "none" && (client == PayretryVerto || // its correlation id
				oc.method == http.MethodPost && !peer)
			if !adds {
				if !sameHeader(rec.header, bare.header) || string(rec.body) != string(bare.body) {
					t.Errorf("%s %+v: sent header %v body %s; bare sent %v %s", client, oc, rec.header, rec.body, bare.header, bare.body)
				}
				continue
			}
			if client == PayretryVerto && rec.header.Get("Vfx-Correlation-Id") == "" {
				t.Errorf("%s %+v: no correlation id", client, oc)
			}
			if oc.method != http.MethodPost {
				continue
			}
			if client == PayretryKeyStone {
				var m map[string]any
				if json.Unmarshal(rec.body, &m) != nil || m["idempotency_key"] == nil || rec.header.Get("Idempotency-Key") != "" {
					t.Errorf("%s %+v: sent header %v body %s; want the key in the body", client, oc, rec.header, rec.body)
				}
			} else if rec.header.Get("Idempotency-Key") == "" || string(rec.body) != string(bare.body) {
				t.Errorf("%s %+v: sent header %v body %s; want the key in the header", client, oc, rec.header, rec.body)
			}
		}
	}
}

// sameHeader reports whether two headers hold the same fields and values.
func sameHeader(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if strings.Join(v, "\n") != strings.Join(b[k], "\n") {
			return false
		}
	}
	return true
}
