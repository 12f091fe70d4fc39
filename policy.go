package payretry

import (
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
	// Account names the merchant account (or API key) the policy is used
	// with, when a service has several at one provider: keys derived from
	// an operation id (see WithOperation) are namespaced by Name and
	// Account, so that two accounts never share a key. "" is one account.
	Account string

	// MaxAttempts is the number of attempts in total, the first included.
	// 0 means 4; 1 means no retries. A stored failure that the provider
	// marks as replayed (an earlier call's answer, walked through when an
	// operation resumes) does not count, at most MaxAttempts times.
	MaxAttempts int
	// InitialInterval is the first backoff interval (default 500ms).
	InitialInterval time.Duration
	// MaxInterval caps the backoff interval before jitter (default 30s).
	MaxInterval time.Duration
	// Multiplier grows the interval after each retry (default 2; at least 1).
	Multiplier float64
	// RandomizationFactor is the jitter: each wait is drawn uniformly from
	// interval ± interval×RandomizationFactor. 0 means 0.5; a negative value
	// turns jitter off; at most 1.
	RandomizationFactor float64
	// JitterUpOnly draws each wait from [interval, interval ×
	// (1+RandomizationFactor)] instead, so that no wait is shorter than the
	// interval (SmartRetry adds 0 to 10 % to each delay).
	JitterUpOnly bool
	// MaxElapsedTime bounds the whole logical call, all attempts and waits
	// (default 1m). No wait starts that would end past it; a retry still
	// running when it ends is cut off as a time-out, and so is the first
	// attempt when AttemptTimeout is set (otherwise the first attempt is
	// bounded by the request's context, which costs nothing per call).
	MaxElapsedTime time.Duration
	// AttemptTimeout bounds one attempt until its response headers (and the
	// first 64 KiB of an error body) arrive; 0 means none (the presets set
	// 20s). The returned body is not subject to it.
	AttemptTimeout time.Duration
	// MaxRetryAfter is the longest server-requested wait (Retry-After) the
	// transport honours (default 1m). A longer one is neither waited out nor
	// shortened: the response is returned at once.
	MaxRetryAfter time.Duration

	// Rules says what to do after an attempt of each class. nil means
	// [DefaultRules]; when set, a class missing from the map is not retried.
	// Whatever the rules say, a write (any method but GET, HEAD, OPTIONS and
	// TRACE) that carries no idempotency key is retried only when the request
	// provably never left ([ClassNetwork]) or after an auth refresh, and a
	// compliance review or request for information is never retried.
	Rules map[Class]Rule
	// Classify maps the outcome of one attempt to its class. nil means the
	// package-level [Classify]. When resp is not a 2xx, resp.Body may be read
	// freely: it is a copy of the first 64 KiB, and the caller's stays whole;
	// a 2xx body must not be read. For errors, the transport classes the
	// caller's own cancellation as ClassCanceled whatever Classify says, and
	// corrects Network and Timeout with what it saw on the wire.
	Classify func(resp *http.Response, err error) Class

	// Stored, if set, reports whether a response is the provider's own
	// answer, which it keeps under the request's key, rather than one from
	// a gateway, CDN or proxy in front of it that stored nothing. A rule's
	// NewKey applies only to the provider's own answer; any other 5xx
	// leaves a write's outcome unknown and keeps the key. nil means every
	// response is the provider's own. ORZCash sets it to its error format.
	Stored func(resp *http.Response) bool

	// IdempotencyHeader names the request header that carries the
	// idempotency key, such as "Idempotency-Key". Set it or
	// IdempotencyField, not both; with neither, keys are not managed (a key
	// the caller put in an Idempotency-Key header is still respected).
	IdempotencyHeader string
	// IdempotencyField names a top-level field of a JSON object body that
	// carries the key (KeyStone's "idempotency_key"). A body that is not a
	// JSON object, or larger than MaxBufferedBody, gets no key.
	IdempotencyField string
	// KeyMethods are the methods that get a key when the caller set none.
	// nil means POST only.
	KeyMethods []string
	// CorrelationHeader, if set, names a header given one id per logical
	// call, kept on every attempt (Verto's "Vfx-Correlation-Id"): random,
	// or derived from the operation id (see WithOperation). A value the
	// caller set is kept.
	CorrelationHeader string

	// RefreshAuth is called at most once per logical call, after a 401, with
	// the request of the retry: it may change its headers (a new bearer
	// token); the change holds for the rest of the call. An error returns the
	// 401 response. nil means a 401 is returned as it is.
	RefreshAuth func(req *http.Request) error

	// MaxBufferedBody bounds the buffer used to replay a request body that
	// has no GetBody (default 1 MiB); a negative value disables buffering.
	// A larger body is sent once and never retried.
	MaxBufferedBody int64

	// Limits are client-side limits per endpoint class, enforced with token
	// buckets before a request is sent (SmartRetry declares its documented
	// table). nil means none; at most 64.
	Limits []Limit
	// Limiter holds the pacing state: holds from the provider's rate-limit
	// signals, the Limits' buckets, the adaptive rate and outage detection.
	// nil means a new in-process [NewLimiter] for this Transport.
	Limiter Limiter
	// RetryBudgetRatio is the retry budget: each first attempt earns this
	// many retry tokens, up to RetryBudgetBurst, and each retry costs one
	// (refunded when the retry succeeds), so that retries stay about this
	// fraction of traffic when a provider fails. A retry that waits for an
	// outage probe costs nothing. 0 means 0.2; a negative value turns the
	// budget off.
	RetryBudgetRatio float64
	// RetryBudgetBurst is the budget's depth and starting balance (default 10).
	RetryBudgetBurst int
	// BreakerCoolDown, if set, turns on the circuit breaker: while a
	// provider is down (12 of its last 20 requests failed: see Pacing),
	// requests fail at once with
	// [ErrCircuitOpen] instead of waiting for a probe, and one probe goes
	// through after each cool-down. 0 means requests wait (within their
	// deadline) while a probe every 100ms finds out when the provider is back;
	// the probe goes to the waiting call with the most attempts left, as far
	// as the calls' MaxElapsedTime and deadlines allow.
	BreakerCoolDown time.Duration

	// OnAttempt, if set, is called after every attempt with what happened
	// and what comes next. It runs on the caller's goroutine and must not
	// block.
	OnAttempt func(Attempt)
	// Logger, if set, receives a line for each retry and each failed call.
	// Lines carry no header values, query strings or bodies.
	Logger *slog.Logger
}

// Rule is what a Policy does after an attempt of one class.
type Rule struct {
	// Retry allows a retry after this class.
	Retry bool
	// Statuses, if not empty, limits Retry to these status codes
	// (SmartRetry retries 500, 502, 503 and 504 but not other 5xx).
	Statuses []int
	// NewKey makes the retry carry a new idempotency key, for providers that
	// store and replay every response under a key, failures included
	// (ORZCash). It applies only after a definitive response and never once
	// an attempt of the call had an unknown outcome, because a new key
	// could then execute the payment twice.
	NewKey bool
	// MinWait and MaxWait clamp the backoff wait before the retry (Verto
	// asks for 5-10 s after a 5xx); 0 means no bound. A longer Retry-After
	// wins over MaxWait; a shorter one does not shorten MinWait.
	MinWait, MaxWait time.Duration
	// OutcomeUnknown marks a response of this class to a request that
	// carried a key as not settling the outcome (SmartRetry: a 409 with a
	// key often means the original succeeded): it is returned, and
	// CheckResponse reports OutcomeUnknown.
	OutcomeUnknown bool
}

// DefaultRules returns the generic rules: retry 429, 5xx,
// time-outs (with a key, or for safe methods) and requests that never left,
// and a 401 once after Policy.RefreshAuth; never retry other 4xx.
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
	maxLimits              = 64 // a bit each in a mask
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
	}
	if len(p.Limits) > maxLimits {
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
	if p.IdempotencyHeader != "" {
		p.IdempotencyHeader = http.CanonicalHeaderKey(p.IdempotencyHeader)
	}
	if p.CorrelationHeader != "" {
		p.CorrelationHeader = http.CanonicalHeaderKey(p.CorrelationHeader)
	}
	if p.MaxAttempts == 0 {
		p.MaxAttempts = defaultMaxAttempts
	}
	if p.InitialInterval == 0 {
		p.InitialInterval = defaultInitial
	}
	if p.MaxInterval == 0 {
		p.MaxInterval = max(defaultMaxInterval, p.InitialInterval)
	}
	if p.InitialInterval > p.MaxInterval {
		return bad("InitialInterval", "is longer than MaxInterval")
	}
	if p.Multiplier == 0 {
		p.Multiplier = defaultMultiplier
	}
	switch {
	case p.RandomizationFactor == 0:
		p.RandomizationFactor = defaultRandomization
	case p.RandomizationFactor < 0:
		p.RandomizationFactor = 0
	}
	if p.MaxElapsedTime == 0 {
		p.MaxElapsedTime = defaultMaxElapsed
	}
	if p.MaxRetryAfter == 0 {
		p.MaxRetryAfter = defaultMaxRetryAfter
	}
	if p.MaxBufferedBody == 0 {
		p.MaxBufferedBody = defaultMaxBufferedBody
	}
	if p.RetryBudgetRatio == 0 {
		p.RetryBudgetRatio = defaultBudgetRatio
	}
	if p.RetryBudgetBurst == 0 {
		p.RetryBudgetBurst = defaultBudgetBurst
	}
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
	if p.Limits != nil {
		p.Limits = slices.Clone(p.Limits)
		for i := range p.Limits {
			p.Limits[i].Methods = slices.Clone(p.Limits[i].Methods)
			p.Limits[i].Paths = slices.Clone(p.Limits[i].Paths)
		}
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
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}
