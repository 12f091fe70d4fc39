// Package bench compares payretry with the retrying HTTP clients people reach
// for first, go-retryablehttp and failsafe-go, on overhead and on three
// scenarios against loopback providers: a rate limit, an outage and stalls
// that invite duplicate charges. See BENCHMARKS.md at the repository root.
//
// It is a module of its own so that the peers never enter payretry's go.mod.
package bench

import (
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/failsafehttp"
	"github.com/failsafe-go/failsafe-go/timeout"
	"github.com/hashicorp/go-retryablehttp"

	"github.com/payretry/payretry"
)

// The common retry contract every retrying client is configured for:
// retry 429, 5xx and transport errors, 4 attempts in all, exponential
// backoff from 50 ms capped at 2 s, with jitter where the library has it.
const (
	MaxAttempts     = 4
	InitialInterval = 50 * time.Millisecond
	MaxInterval     = 2 * time.Second
	// FailsafeJitter is failsafe-go's WithJitterFactor: each delay is drawn
	// from delay ± 25 %. failsafe-go applies it to Retry-After delays too,
	// so a smaller factor is the kinder choice for it under a rate limit.
	FailsafeJitter = 0.25
)

// Client names, in the order tables list them.
const (
	Bare          = "bare"
	Payretry      = "payretry"
	PayretrySmart = "payretry-smartretry"
	Retryablehttp = "retryablehttp"
	Failsafe      = "failsafe"
	// PayretryORZ is payretry's ORZCash() preset (mild faults and overhead).
	PayretryORZ = "payretry-orzcash"
	// PayretryVerto and PayretryKeyStone are payretry's Verto() and
	// KeyStone() presets (overhead only).
	PayretryVerto    = "payretry-verto"
	PayretryKeyStone = "payretry-keystone"
	// Naive is the retry loop many services write by hand (mild faults
	// only): see NewNaive.
	Naive = "naive"
	// RetryablehttpBounded and FailsafeBounded are the peers with the
	// presets' attempt time-out, BoundedAttempt (overhead only): like for
	// like with a preset, which bounds every attempt.
	RetryablehttpBounded = "retryablehttp-20s"
	FailsafeBounded      = "failsafe-20s"
)

// BoundedAttempt is the attempt time-out every payretry preset sets.
const BoundedAttempt = 20 * time.Second

// Peers are the clients most scenarios compare.
var Peers = []string{Bare, Payretry, Retryablehttp, Failsafe}

// Presets are payretry's provider presets, each run as NewClient builds it.
var Presets = []string{PayretryORZ, PayretryVerto, PayretryKeyStone, PayretrySmart}

// OverheadClients are the clients of the overhead benchmarks, in the order
// their tables list them: bare, the generic policy, the presets, the peers.
var OverheadClients = slices.Concat([]string{Bare, Payretry}, Presets,
	[]string{Retryablehttp, Failsafe, RetryablehttpBounded, FailsafeBounded})

// presets makes the policy of each preset client.
var presets = map[string]func() payretry.Policy{
	PayretryORZ:      payretry.ORZCash,
	PayretryVerto:    payretry.Verto,
	PayretryKeyStone: payretry.KeyStone,
	PayretrySmart:    payretry.SmartRetry,
}

// Options shape a client for one scenario.
type Options struct {
	// AttemptTimeout bounds one attempt; 0 means none. Each library gets
	// its own documented way (see NewClient).
	AttemptTimeout time.Duration
	// OnAttempt, if set, is payretry's attempt hook.
	OnAttempt func(payretry.Attempt)
	// NoClientLimits sets a preset's client-side Limits to nil (only
	// SmartRetry declares any): in an in-memory loop a token bucket at
	// 100/s would measure the bucket, not the layer.
	NoClientLimits bool
}

// PayretryPolicy is payretry configured for the common contract: the
// default rules (429, 5xx, time-outs with a key, requests that never left),
// and an Idempotency-Key header on every POST.
func PayretryPolicy(o Options) payretry.Policy {
	return payretry.Policy{
		Name:              "bench",
		MaxAttempts:       MaxAttempts,
		InitialInterval:   InitialInterval,
		MaxInterval:       MaxInterval,
		IdempotencyHeader: "Idempotency-Key",
		AttemptTimeout:    o.AttemptTimeout,
		OnAttempt:         o.OnAttempt,
	}
}

// NewClient returns the round tripper of the named client over base, and
// the *http.Client a caller uses with it. Every call builds fresh state
// (payretry's limiter and budget, failsafe's policy), so runs are
// independent.
//
// How each bounds one attempt when o.AttemptTimeout is set:
//   - bare: http.Client.Timeout on the caller's client (one attempt only).
//   - payretry: Policy.AttemptTimeout.
//   - retryablehttp: Timeout of the *http.Client it sends each attempt with
//     (Client.HTTPClient), which its docs expose for that.
//   - failsafe: a timeout.Timeout policy composed inside the retry policy,
//     failsafe-go's per-attempt time limit.
//   - the presets (payretry-orzcash, -verto, -keystone, -smartretry):
//     Policy.AttemptTimeout; unset, the preset's own (20 s), as users run it.
//   - naive: not at all; only the caller's context bounds it.
func NewClient(name string, base http.RoundTripper, o Options) (http.RoundTripper, *http.Client, error) {
	switch name {
	case Bare:
		return base, &http.Client{Transport: base, Timeout: o.AttemptTimeout}, nil
	case Payretry:
		t, err := payretry.NewTransport(base, PayretryPolicy(o))
		if err != nil {
			return nil, nil, err
		}
		return t, &http.Client{Transport: t}, nil
	case PayretryORZ, PayretryVerto, PayretryKeyStone, PayretrySmart:
		p := presets[name]()
		if o.AttemptTimeout > 0 {
			p.AttemptTimeout = o.AttemptTimeout
		}
		if o.NoClientLimits {
			p.Limits = nil
		}
		p.OnAttempt = o.OnAttempt
		t, err := payretry.NewTransport(base, p)
		if err != nil {
			return nil, nil, err
		}
		return t, &http.Client{Transport: t}, nil
	case Naive:
		rt := NewNaive(base)
		return rt, &http.Client{Transport: rt}, nil
	case Retryablehttp, RetryablehttpBounded:
		if name == RetryablehttpBounded {
			o.AttemptTimeout = BoundedAttempt
		}
		rt := &retryablehttp.RoundTripper{Client: NewRetryablehttp(base, o)}
		return rt, &http.Client{Transport: rt}, nil
	case Failsafe, FailsafeBounded:
		if name == FailsafeBounded {
			o.AttemptTimeout = BoundedAttempt
		}
		rt := NewFailsafe(base, o)
		return rt, &http.Client{Transport: rt}, nil
	}
	return nil, nil, fmt.Errorf("bench: unknown client %q", name)
}

// NewRetryablehttp is go-retryablehttp configured for the common contract:
// RetryMax 3 (4 attempts), RetryWaitMin 50 ms, RetryWaitMax 2 s,
// DefaultBackoff (exponential, honours Retry-After on 429 and 503, no
// jitter) and DefaultRetryPolicy (errors, 429, 5xx but 501). Logger is nil:
// the default logger writes a line per request to stderr.
func NewRetryablehttp(base http.RoundTripper, o Options) *retryablehttp.Client {
	return &retryablehttp.Client{
		HTTPClient:   &http.Client{Transport: base, Timeout: o.AttemptTimeout},
		RetryWaitMin: InitialInterval,
		RetryWaitMax: MaxInterval,
		RetryMax:     MaxAttempts - 1,
		CheckRetry:   retryablehttp.DefaultRetryPolicy,
		Backoff:      retryablehttp.DefaultBackoff,
	}
}

// NewFailsafe is failsafe-go's HTTP round tripper with the retry policy its
// HTTP docs recommend, failsafehttp.NewRetryPolicyBuilder (errors, 429, 5xx
// but 501, delays from Retry-After on 429 and 503), with 4 attempts,
// backoff 50 ms to 2 s and FailsafeJitter; plus a timeout.Timeout inside the
// retry policy when o.AttemptTimeout is set.
func NewFailsafe(base http.RoundTripper, o Options) http.RoundTripper {
	rp := failsafehttp.NewRetryPolicyBuilder().
		WithMaxAttempts(MaxAttempts).
		WithBackoff(InitialInterval, MaxInterval).
		WithJitterFactor(FailsafeJitter).
		Build()
	policies := []failsafe.Policy[*http.Response]{rp}
	if o.AttemptTimeout > 0 {
		policies = append(policies, timeout.New[*http.Response](o.AttemptTimeout))
	}
	return failsafehttp.NewRoundTripper(base, policies...)
}

// NewBaseTransport is the loopback transport under every client: a plain
// http.Transport with enough idle connections for the scenarios' workers.
func NewBaseTransport() *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		MaxIdleConns:        512,
		MaxIdleConnsPerHost: 512,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}
}
