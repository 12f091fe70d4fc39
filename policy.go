package payretry

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Policy is the retry contract of one payment provider: which outcomes are
// retried, how long to wait, and where the idempotency key goes. The presets
// [ORZCash], [Verto], [KeyStone] and [SmartRetry] follow the providers' own
// documents; start from one and change fields, or write your own.
//
// The zero value of every field means its documented default, so Policy{} is a
// valid generic policy (without idempotency keys). [NewTransport] validates a
// Policy and copies it; changing it afterwards has no effect on the Transport.
type Policy struct {
	// Name is the provider's name, shown in errors and logs.
	Name string
	// Account names the merchant account (or API key) when a service has
	// several at one provider; derived keys are namespaced by Name and Account.
	Account string

	// MaxAttempts is the number of attempts, the first included (default 4;
	// 1 means no retries). A failure the provider marks as replayed does not count.
	MaxAttempts int
	// InitialInterval is the first backoff interval (default 500ms).
	InitialInterval time.Duration
	// MaxInterval caps the backoff interval before jitter (default 30s).
	MaxInterval time.Duration
	// Multiplier grows the interval after each retry (default 2; 1 to 1000).
	Multiplier float64
	// RandomizationFactor is the jitter: each wait is drawn from interval ±
	// interval×RandomizationFactor. 0 means 0.5, a negative value none; at most 1.
	RandomizationFactor float64
	// JitterUpOnly draws each wait from [interval, interval×(1+RandomizationFactor)]
	// instead, so that no wait is shorter than the interval (SmartRetry).
	JitterUpOnly bool
	// MaxElapsedTime bounds the whole logical call, attempts and waits
	// (default 1m); see the README, "Writing a policy".
	MaxElapsedTime time.Duration
	// AttemptTimeout bounds one attempt until its response headers (and the
	// first 64 KiB of an error body); 0 means none. The presets set 20s.
	AttemptTimeout time.Duration
	// MaxRetryAfter is the longest Retry-After the transport waits out (default
	// 1m); a response asking for longer is returned at once.
	MaxRetryAfter time.Duration

	// Rules says what to do after an attempt of each class. nil means
	// [DefaultRules]; when set, a class missing from the map is not retried.
	// No rule lifts the guarantees in the README, "What payretry guarantees".
	Rules map[Class]Rule
	// Classify maps the outcome of one attempt to its class; nil means the
	// package-level [Classify]. A non-2xx resp.Body is a copy of its first
	// 64 KiB and may be read; a 2xx body must not be.
	Classify func(resp *http.Response, err error) Class
	// Stored, if set, reports whether a response is the provider's own
	// answer, stored under the key, rather than a gateway's; only then does
	// a rule's NewKey apply. nil means every response is the provider's own.
	Stored func(resp *http.Response) bool

	// IdempotencyHeader names the request header that carries the key, such
	// as "Idempotency-Key". Set it or IdempotencyField, not both; with
	// neither, keys are not managed (a caller's Idempotency-Key is respected).
	IdempotencyHeader string
	// IdempotencyField names a top-level field of a JSON object body that
	// carries the key (KeyStone's "idempotency_key"). A body that is not a
	// JSON object, or larger than MaxBufferedBody, gets no key.
	IdempotencyField string
	// KeyMethods are the methods that get a key when the caller set none
	// (default POST only).
	KeyMethods []string
	// CorrelationHeader, if set, names a header given one id per logical
	// call, kept on every attempt (Verto's "Vfx-Correlation-Id").
	CorrelationHeader string

	// RefreshAuth, if set, is called at most once per logical call, after a
	// 401, with the retry's request, whose headers it may change (a new
	// token). An error returns the 401; nil returns every 401 as it is.
	RefreshAuth func(req *http.Request) error

	// MaxBufferedBody bounds the buffer that replays a body without GetBody
	// (default 1 MiB; negative: none). A larger body is sent once, never retried.
	MaxBufferedBody int64

	// Limits are client-side token-bucket limits per endpoint class, enforced
	// before a request is sent (at most 64; nil means none).
	Limits []Limit
	// Limiter holds the pacing state (see the README, "Pacing and overload");
	// nil means a new in-process [NewLimiter] for this Transport.
	Limiter Limiter
	// RetryBudgetRatio is the retry tokens each first attempt earns; a retry
	// costs one, refunded when it succeeds. 0 means 0.2; negative turns it off.
	RetryBudgetRatio float64
	// RetryBudgetBurst is the budget's depth and starting balance (default 10).
	RetryBudgetBurst int
	// BreakerCoolDown, if set, makes requests to a provider that is down fail
	// at once with [ErrCircuitOpen], one probe going through per cool-down.
	// 0 means requests wait, within their bounds, for a probe every 100ms.
	BreakerCoolDown time.Duration

	// OnAttempt, if set, is called after every attempt, on the caller's
	// goroutine; it must not block.
	OnAttempt func(Attempt)
	// Logger, if set, gets a line per retry and per failed call, without
	// header values, query strings or bodies.
	Logger *slog.Logger
}

// Rule is what a Policy does after an attempt of one class.
type Rule struct {
	// Retry allows a retry after this class.
	Retry bool
	// Statuses, if not empty, limits Retry to these status codes.
	Statuses []int
	// NewKey gives the retry a new idempotency key, for providers that replay
	// stored failures (ORZCash); never once the call had an unknown outcome,
	// since a new key could then execute the payment twice.
	NewKey bool
	// MinWait and MaxWait clamp the backoff wait before the retry; 0 means no
	// bound. A longer Retry-After wins over MaxWait.
	MinWait, MaxWait time.Duration
	// OutcomeUnknown marks a response of this class to a keyed request as not
	// settling the outcome: it is returned, and CheckResponse says so.
	OutcomeUnknown bool
}

// DefaultRules returns the generic rules: retry 429, 5xx, time-outs (with a
// key, or for safe methods) and requests that never left, and a 401 once
// after Policy.RefreshAuth; never retry other 4xx.
func DefaultRules() map[Class]Rule {
	return map[Class]Rule{
		ClassUnauthorized: {Retry: true},
		ClassRateLimited:  {Retry: true},
		ClassServerError:  {Retry: true},
		ClassTimeout:      {Retry: true},
		ClassNetwork:      {Retry: true},
	}
}

const (
	defaultMaxAttempts     = 4
	defaultInitial         = 500 * time.Millisecond
	defaultMaxInterval     = 30 * time.Second
	defaultMultiplier      = 2
	defaultRandomization   = 0.5
	defaultMaxElapsed      = time.Minute
	defaultMaxRetryAfter   = time.Minute
	defaultMaxBufferedBody = 1 << 20
	defaultBudgetRatio     = 0.2
	defaultBudgetBurst     = 10
	numClasses             = int(ClassOther) + 1
	maxLimits              = 64 // far more than any provider documents
)

// withDefaults returns a copy of p with zero fields set to their defaults and
// its maps and slices copied, or an error naming the first invalid field.
func (p Policy) withDefaults() (Policy, error) {
	bad := func(field, why string) (Policy, error) {
		return Policy{}, fmt.Errorf("payretry: invalid policy %q: %s %s", p.Name, field, why)
	}
	switch {
	case p.MaxAttempts < 0:
		return bad("MaxAttempts", "must not be negative")
	case p.InitialInterval < 0:
		return bad("InitialInterval", "must not be negative")
	case p.MaxInterval < 0:
		return bad("MaxInterval", "must not be negative")
	case p.Multiplier != 0 && !(p.Multiplier >= 1 && p.Multiplier <= 1000):
		return bad("Multiplier", "must be between 1 and 1000")
	case p.RandomizationFactor > 1 || p.RandomizationFactor != p.RandomizationFactor:
		return bad("RandomizationFactor", "must be at most 1")
	case p.MaxElapsedTime < 0:
		return bad("MaxElapsedTime", "must not be negative")
	case p.AttemptTimeout < 0:
		return bad("AttemptTimeout", "must not be negative")
	case p.MaxRetryAfter < 0:
		return bad("MaxRetryAfter", "must not be negative")
	case p.IdempotencyHeader != "" && p.IdempotencyField != "":
		return bad("IdempotencyField", "and IdempotencyHeader are both set; choose one")
	case p.IdempotencyHeader != "" && !validToken(p.IdempotencyHeader):
		return bad("IdempotencyHeader", "is not a valid header name")
	case p.CorrelationHeader != "" && !validToken(p.CorrelationHeader):
		return bad("CorrelationHeader", "is not a valid header name")
	case strings.TrimSpace(p.IdempotencyField) != p.IdempotencyField:
		return bad("IdempotencyField", "has surrounding spaces")
	case p.RetryBudgetRatio > 1000 || p.RetryBudgetRatio != p.RetryBudgetRatio:
		return bad("RetryBudgetRatio", "must be at most 1000")
	case p.RetryBudgetBurst < 0:
		return bad("RetryBudgetBurst", "must not be negative")
	case p.BreakerCoolDown < 0:
		return bad("BreakerCoolDown", "must not be negative")
	case len(p.Limits) > maxLimits:
		return bad("Limits", fmt.Sprintf("has %d limits; at most %d", len(p.Limits), maxLimits))
	}
	for i, l := range p.Limits {
		field := fmt.Sprintf("Limits[%d]", i)
		switch {
		case l.Name == "" || strings.ContainsAny(l.Name, "/\x00"):
			return bad(field+".Name", "must be a non-empty name without '/'")
		case l.Rate < 0 || l.Rate != l.Rate || l.Rate > 1e9:
			return bad(field+".Rate", "must be between 0 and 1e9")
		case l.Burst < 0:
			return bad(field+".Burst", "must not be negative")
		}
		for _, m := range l.Methods {
			if !validToken(m) {
				return bad(field+".Methods", fmt.Sprintf("has an invalid method %q", m))
			}
		}
	}
	for _, m := range p.KeyMethods {
		if !validToken(m) {
			return bad("KeyMethods", fmt.Sprintf("has an invalid method %q", m))
		}
	}
	p.IdempotencyHeader = http.CanonicalHeaderKey(p.IdempotencyHeader)
	p.CorrelationHeader = http.CanonicalHeaderKey(p.CorrelationHeader)
	p.MaxAttempts = cmp.Or(p.MaxAttempts, defaultMaxAttempts)
	p.InitialInterval = cmp.Or(p.InitialInterval, defaultInitial)
	p.MaxInterval = cmp.Or(p.MaxInterval, max(defaultMaxInterval, p.InitialInterval))
	if p.InitialInterval > p.MaxInterval {
		return bad("InitialInterval", "is longer than MaxInterval")
	}
	p.Multiplier = cmp.Or(p.Multiplier, defaultMultiplier)
	p.RandomizationFactor = max(cmp.Or(p.RandomizationFactor, defaultRandomization), 0) // negative: no jitter
	p.MaxElapsedTime = cmp.Or(p.MaxElapsedTime, defaultMaxElapsed)
	p.MaxRetryAfter = cmp.Or(p.MaxRetryAfter, defaultMaxRetryAfter)
	p.MaxBufferedBody = cmp.Or(p.MaxBufferedBody, defaultMaxBufferedBody)
	p.RetryBudgetRatio = cmp.Or(p.RetryBudgetRatio, defaultBudgetRatio)
	p.RetryBudgetBurst = cmp.Or(p.RetryBudgetBurst, defaultBudgetBurst)
	if p.Limiter == nil {
		p.Limiter = NewLimiter()
	}
	if p.Classify == nil {
		p.Classify = Classify
	}
	if p.KeyMethods == nil {
		p.KeyMethods = []string{http.MethodPost}
	}
	if p.Rules == nil {
		p.Rules = DefaultRules()
	}
	for c, r := range p.Rules {
		if err := r.check(c); err != nil {
			return bad(fmt.Sprintf("Rules[%v]", c), err.Error())
		}
	}
	return p.clone(), nil
}

// clone returns p with its maps and slices copied, so that no change to one
// reaches the other.
func (p Policy) clone() Policy {
	p.KeyMethods = slices.Clone(p.KeyMethods)
	if p.Rules != nil {
		rules := make(map[Class]Rule, len(p.Rules))
		for c, r := range p.Rules {
			r.Statuses = slices.Clone(r.Statuses)
			rules[c] = r
		}
		p.Rules = rules
	}
	p.Limits = slices.Clone(p.Limits)
	for i := range p.Limits {
		p.Limits[i].Methods = slices.Clone(p.Limits[i].Methods)
		p.Limits[i].Paths = slices.Clone(p.Limits[i].Paths)
	}
	return p
}

func (r Rule) check(c Class) error {
	switch {
	case c < 0 || int(c) >= numClasses:
		return errors.New("names no class")
	case r.Retry && (c == ClassSuccess || c == ClassCanceled):
		return errors.New("cannot retry this class")
	case r.NewKey && (c == ClassTimeout || c == ClassNetwork || c == ClassCanceled):
		return errors.New("NewKey after an unknown outcome could execute a payment twice")
	case r.MinWait < 0 || r.MaxWait < 0:
		return errors.New("waits must not be negative")
	case r.MaxWait != 0 && r.MinWait > r.MaxWait:
		return errors.New("MinWait is longer than MaxWait")
	}
	for _, s := range r.Statuses {
		if s < 100 || s > 599 {
			return fmt.Errorf("Statuses has %d, not an HTTP status", s)
		}
	}
	return nil
}

// validToken reports whether s is an RFC 9110 token (a header name or method).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}
