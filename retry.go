package payretry

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Transport is an [http.RoundTripper] that retries payment calls by the rules
// of its [Policy]: it classifies each outcome, waits with exponential backoff
// and jitter or as long as the provider's Retry-After asks, and carries the
// idempotency key the provider needs on every attempt.
//
// RoundTrip keeps the [http.RoundTripper] contract: whenever the final attempt
// got a response, of any status, it is returned with a nil error and a
// readable body (use [CheckResponse] to turn a non-2xx one into an [*Error]);
// resp.Request is the request of the final attempt, so its header shows the
// key it carried. When no response was obtained, RoundTrip returns nil and an
// [*Error] whose OutcomeUnknown says whether a write may have reached the
// provider.
//
// The caller's request is never modified. A Transport is safe for concurrent
// use by many goroutines; create it with [NewTransport].
type Transport struct {
	base   http.RoundTripper
	p      Policy
	rules  [numClasses]Rule
	scopes []string // limiter scope of each of p.Limits
	budget *retryBudget

	// Seams for tests; never nil.
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error
	rand  func() float64 // in [0, 1)
}

// NewTransport returns a Transport that sends requests through base (nil means
// [http.DefaultTransport]) with the retry rules of p. An invalid policy is an
// error naming the field.
func NewTransport(base http.RoundTripper, p Policy) (*Transport, error) {
	p, err := p.withDefaults()
	if err != nil {
		return nil, err
	}
	if base == nil {
		base = http.DefaultTransport
	}
	t := &Transport{base: base, p: p, now: time.Now, sleep: sleepCtx, rand: rand.Float64,
		budget: newRetryBudget(p.RetryBudgetRatio, p.RetryBudgetBurst)}
	for c, r := range p.Rules {
		t.rules[c] = r
	}
	for _, l := range p.Limits {
		t.scopes = append(t.scopes, p.Name+"/"+l.Name)
	}
	return t, nil
}

// Policy returns a copy of the transport's policy, defaults applied; changing
// it does not change the Transport.
func (t *Transport) Policy() Policy { return t.p.clone() }

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

// WaitSource says where the wait before a retry came from.
type WaitSource int

// Sources of a wait.
const (
	WaitNone       WaitSource = iota // no wait: no retry, or a retry at once
	WaitBackoff                      // exponential backoff with jitter
	WaitRetryAfter                   // the provider's Retry-After
	WaitRateLimit                    // a rate limit: the provider's window, a token bucket, the adaptive rate
	WaitOutage                       // the provider is down: waiting for a probe to succeed
)

// String returns "none", "backoff", "retry-after", "rate-limit" or "outage".
func (s WaitSource) String() string {
	switch s {
	case WaitBackoff:
		return "backoff"
	case WaitRetryAfter:
		return "retry-after"
	case WaitRateLimit:
		return "rate-limit"
	case WaitOutage:
		return "outage"
	}
	return "none"
}

// Attempt describes one attempt of a logical call, for Policy.OnAttempt.
type Attempt struct {
	Provider       string // Policy.Name
	Number         int    // 1 for the first attempt
	Method         string
	Class          Class
	StatusCode     int    // 0 when no response was received
	Code           string // provider's error code from the body, if any
	Err            error  // transport error, when no response was received
	IdempotencyKey string // key this attempt carried ("" if none)
	Retry          bool   // another attempt follows
	Wait           time.Duration
	WaitSource     WaitSource
	Reason         string // why no attempt follows, when Retry is false and the call failed
}

// Reasons, in Attempt.Reason, that also shape the returned error.
const (
	reasonBudget = "retry budget spent"
	reasonBody   = "body not replayable"
)

const (
	traceGetConn uint32 = 1 << iota // the base asked for a connection
	traceGotConn                    // ... and obtained one
)

// tracer records what the base transport did on the wire for the attempt
// under way. A request is proved never to have left only when the base
// reported asking for a connection (so it reports through httptrace at all)
// and never obtained one: once a connection is obtained the request may be on
// its way, even before WroteHeaders fires (HTTP/2 flushes the HEADERS frame
// first). Tracers are not pooled: the context of the returned request keeps
// pointing at its hooks.
type tracer struct {
	flags atomic.Uint32
	trace httptrace.ClientTrace
}

func (tr *tracer) init() {
	tr.trace.GetConn = func(string) { tr.flags.Or(traceGetConn) }
	tr.trace.GotConn = func(httptrace.GotConnInfo) { tr.flags.Or(traceGotConn) }
}

// call is the state of one logical call.
type call struct {
	t     *Transport
	req   *http.Request // the caller's; never modified
	ctx   context.Context
	start time.Time
	write bool // not a safe method: its outcome matters

	header http.Header // header of the attempts, nil = req.Header

	// body
	hasBody    bool
	buf        []byte // whole body in memory (buffered, or with a key field)
	inMemory   bool
	replayable bool
	first      io.ReadCloser // body of the first attempt when not req.Body

	scope  string  // limiter scope
	limits []Limit // client-side limits that apply

	key       string // key carried; "" if none
	keyPinned bool   // an attempt had an unknown outcome: the key must not change
	unknown   bool   // a write may have reached the provider
	attempts  int
	refreshed bool
	paid      bool // this attempt is a retry paid from the budget
	rekeyNext bool // the next attempt, if made, carries a new key

	tracer tracer    // writes only
	vals   [2]string // backing of the header values the call adds

	bo *backoff.ExponentialBackOff
}

var calls = sync.Pool{New: func() any { return new(call) }}

// release returns the call to the pool unless the request it built still
// refers to it: the values of the headers it added live in c.vals.
func (c *call) release() {
	if c.header == nil {
		*c = call{}
		calls.Put(c)
	}
}

// RoundTrip sends req, retrying as the policy allows. See [Transport].
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	var c *call
	if write := !safeMethod(req.Method); write {
		// A write usually gets a header, whose values live in the call: it
		// cannot go back to the pool, so do not take it from there.
		c = &call{t: t, req: req, ctx: req.Context(), write: true}
	} else {
		c = calls.Get().(*call)
		*c = call{t: t, req: req, ctx: req.Context()}
		defer c.release()
	}
	if err := c.ctx.Err(); err != nil {
		closeBody(req)
		return nil, c.fail(ClassCanceled, err)
	}
	c.start = t.now()
	if err := c.prepareBody(); err != nil {
		return nil, c.fail(ClassOther, err)
	}
	c.prepareHeaders()
	c.scope, c.limits = t.scopeFor(req)
	if c.write {
		// What happened on the wire tells a request that never left from
		// one whose outcome is unknown. An *http.Transport always reports
		// writing the headers; another base proves it reports anything
		// when it asks for a connection.
		c.tracer.init()
		c.ctx = httptrace.WithClientTrace(c.ctx, &c.tracer.trace)
	}
	// prev is the last response, kept until the next attempt is sent: it is
	// the answer if that attempt is not made.
	var (
		prev       *http.Response
		prevClass  Class
		prevErr    error
		prevCancel context.CancelCauseFunc
	)
	for {
		outage, herr := c.throttle()
		c.paid = false
		if herr == nil && c.attempts > 0 && !outage {
			if c.paid = t.budget.spend(); !c.paid {
				herr = c.fail(prevClass, budgetErr(prevErr))
			}
		}
		if herr != nil {
			if prev != nil {
				return c.respond(prev, prevClass, prevCancel), nil
			}
			if c.attempts == 0 {
				closeBody(req)
			}
			return nil, herr
		}
		oldKey, oldHeader, oldBuf := c.key, c.header, c.buf
		if c.rekeyNext {
			// Only now is the retry certain: until here prev, with its key,
			// may still be the answer.
			c.rekey()
			c.rekeyNext = false
		}
		c.attempts++
		areq, stop, cancel, err := c.newRequest()
		if err != nil {
			c.key, c.header, c.buf = oldKey, oldHeader, oldBuf // prev's key is the one to report
			c.attempts--
			if c.paid {
				t.budget.refund()
			}
			if prev != nil {
				return c.respond(prev, prevClass, prevCancel), nil
			}
			return nil, c.fail(ClassOther, err)
		}
		discard(prev)
		if prevCancel != nil {
			prevCancel(nil)
		}
		prev, prevCancel = nil, nil
		if c.attempts == 1 {
			t.budget.earn()
		}
		c.tracer.flags.Store(0)
		resp, err := t.base.RoundTrip(areq)
		if err != nil && resp != nil {
			resp.Body.Close()
			resp = nil
		}
		if resp != nil {
			if resp.Request == nil {
				resp.Request = areq // the contract: the request of the final attempt
			}
			if resp.StatusCode < 200 || resp.StatusCode > 299 {
				peekBody(resp) // within the attempt's time: it bounds the error body too
			}
		}
		timedOut := stop != nil && !stop()
		if timedOut && resp != nil {
			if pb, ok := resp.Body.(*peekedBody); !ok || pb.rest != nil {
				// The time ran out as the answer came: its body is cut
				// off. Count the attempt as timed out (the same key
				// replays the answer).
				discard(resp)
				resp, err = nil, ErrAttemptTimeout
			}
		}
		class, leftUnknown := c.classify(resp, err, timedOut)
		if leftUnknown {
			c.unknown = true
			c.keyPinned = true
		}
		if c.write && class == ClassServerError && !t.rules[class].NewKey {
			// A 5xx does not say the write did not execute (seed
			// 002_3e18af4f20d976a0.txt: "If you experience a 503 ... you
			// might double-pay"), except from a provider that stores it
			// as the key's definitive answer and asks for a new key.
			c.unknown = true
		}
		if err != nil && class == ClassTimeout && timedOut {
			err = ErrAttemptTimeout
		}
		c.observe(resp, class)
		if class == ClassSuccess && c.attempts > 1 && c.paid {
			t.budget.refund()
		}
		var code, msg string
		if resp != nil && class != ClassSuccess {
			code, msg = decodeError(peekBody(resp))
		}
		a := Attempt{
			Provider: t.p.Name, Number: c.attempts, Method: req.Method, Class: class,
			Code: code, Err: err, IdempotencyKey: c.key,
		}
		if resp != nil {
			a.StatusCode = resp.StatusCode
		}
		if class != ClassSuccess {
			a.Retry, a.Reason = c.mayRetry(class, resp, code, msg)
			if a.Retry {
				a.Wait, a.WaitSource, a.Reason = c.waitFor(class, resp)
				a.Retry = a.Reason == ""
			}
			if a.Retry && class == ClassUnauthorized {
				if rerr := c.refreshAuth(); rerr != nil {
					a.Retry, a.Reason = false, "auth refresh failed"
				}
			}
		}
		c.report(a)
		if !a.Retry {
			if resp != nil {
				return c.respond(resp, class, cancel), nil
			}
			if cancel != nil {
				cancel(nil)
			}
			switch a.Reason {
			case reasonBody:
				err = joinBodyErr(err)
			case reasonBudget:
				err = budgetErr(err)
			}
			return nil, c.fail(class, err)
		}
		if werr := t.sleep(req.Context(), a.Wait); werr != nil {
			// The caller gave up during the wait: the last response, if
			// any, is the answer.
			if resp != nil {
				return c.respond(resp, class, cancel), nil
			}
			if cancel != nil {
				cancel(nil)
			}
			return nil, c.fail(ClassCanceled, werr)
		}
		if resp == nil && cancel != nil {
			cancel(nil)
			cancel = nil
		}
		prev, prevClass, prevErr, prevCancel = resp, class, err, cancel
		c.rekeyNext = resp != nil && t.rules[class].NewKey && !c.keyPinned && c.key != ""
	}
}

// scopeFor returns the limiter scope of a request and the client-side limits
// that apply to it.
func (t *Transport) scopeFor(r *http.Request) (string, []Limit) {
	if len(t.p.Limits) == 0 {
		return t.p.Name, nil
	}
	scope := t.p.Name
	var limits []Limit
	for i := range t.p.Limits {
		l := &t.p.Limits[i]
		if !l.matches(r) {
			continue
		}
		limits = append(limits, *l)
		if scope == t.p.Name && l.specific() {
			scope = t.scopes[i]
		}
	}
	return scope, limits
}

// throttle waits until the limiter lets the next attempt go. outage reports
// that it waited for an outage probe (or is the probe), so that a retry costs
// no budget. The error, an *Error, says why no attempt can be made.
func (c *call) throttle() (outage bool, err error) {
	t := c.t
	ctx := c.req.Context()
	now := c.start
	if c.attempts > 0 {
		now = t.now()
	}
	for {
		d, src, lerr := t.p.Limiter.Take(ctx, c.scope, c.limits, now)
		if lerr != nil {
			// A shared limiter that fails must not stop payments: send
			// unpaced, and say so.
			c.logLimiter(lerr)
			return outage, nil
		}
		if src == WaitOutage {
			outage = true
		}
		if d <= 0 {
			return outage, nil
		}
		if src == WaitOutage && t.p.BreakerCoolDown > 0 {
			return outage, c.fail(ClassServerError, ErrCircuitOpen)
		}
		if c.tooLate(now, d) != "" {
			if src == WaitOutage {
				return outage, c.fail(ClassServerError, ErrUnavailable)
			}
			e := c.fail(ClassRateLimited, ErrThrottled)
			e.RetryAt = now.Add(d)
			return outage, e
		}
		if serr := t.sleep(ctx, d); serr != nil {
			return outage, c.fail(ClassCanceled, serr)
		}
		now = t.now()
	}
}

// tooLate returns why a wait of d from now cannot be made, or "".
func (c *call) tooLate(now time.Time, d time.Duration) string {
	if now.Add(d).After(c.start.Add(c.t.p.MaxElapsedTime)) {
		return "wait would pass MaxElapsedTime"
	}
	if dl, ok := c.req.Context().Deadline(); ok && time.Until(dl) < d {
		return "wait would pass the context deadline"
	}
	return ""
}

// observe tells the limiter what an attempt said about the provider.
func (c *call) observe(resp *http.Response, class Class) {
	if class == ClassCanceled {
		return // says nothing about the provider
	}
	sig := Signal{Limit: -1, Remaining: -1}
	var now time.Time
	if class == ClassSuccess && c.attempts == 1 && !hasRateFields(resp.Header) {
		now = c.start // nothing time-related to read: spare a clock read
	} else {
		now = c.t.now()
		if resp != nil {
			sig = ParseSignal(resp.Header, now)
			if resp.StatusCode < 400 {
				// RFC 9110 §10.2.3: with a 3xx, Retry-After is the delay
				// before following the redirect; with a 2xx it is a
				// polling hint. Neither says the quota is spent.
				sig.RetryAt = time.Time{}
			}
		}
	}
	switch class {
	case ClassRateLimited:
		sig.Throttled = true
	case ClassServerError, ClassTimeout, ClassNetwork:
		sig.Failed = true
		sig.CoolDown = c.t.p.BreakerCoolDown
	default:
		sig.OK = true
	}
	if err := c.t.p.Limiter.Observe(c.req.Context(), c.scope, now, sig); err != nil {
		c.logLimiter(err)
	}
}

func (c *call) logLimiter(err error) {
	if l := c.t.p.Logger; l != nil {
		l.LogAttrs(c.req.Context(), slog.LevelWarn, "payretry: limiter failed; sending unpaced",
			slog.String("provider", c.t.p.Name), slog.String("error", err.Error()))
	}
}

// classify returns the class of an attempt, corrected with what the trace saw
// on the wire, and whether a write may have reached the provider in it.
func (c *call) classify(resp *http.Response, err error, timedOut bool) (Class, bool) {
	if err == nil {
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			peekBody(resp) // make the body re-readable for the classifier
		}
		class := c.t.p.Classify(resp, nil)
		switch {
		case class < 0 || int(class) >= numClasses || class == ClassNetwork || class == ClassCanceled:
			// A response was received: it left, and it was not canceled.
			class = ClassOther
		}
		// A response classed as a time-out (a gateway's 504) leaves the
		// outcome of a write unknown.
		return class, class == ClassTimeout && c.write
	}
	var class Class
	switch {
	case c.req.Context().Err() != nil:
		class = ClassCanceled
	case timedOut:
		class = ClassTimeout
	default:
		class = c.t.p.Classify(nil, err)
		if class != ClassTimeout && class != ClassNetwork && class != ClassCanceled {
			class = classifyErr(err) // an error is one of these three
		}
	}
	if !c.write {
		return class, false
	}
	flags := c.tracer.flags.Load()
	neverLeft := flags&traceGetConn != 0 && flags&traceGotConn == 0
	switch {
	case class == ClassNetwork && flags&traceGotConn != 0:
		class = ClassTimeout
	case class == ClassTimeout && neverLeft:
		class = ClassNetwork
	}
	return class, class != ClassNetwork && !neverLeft
}

// mayRetry applies the policy's rule and the invariants that no rule can
// lift. It returns the reason when no retry may follow.
func (c *call) mayRetry(class Class, resp *http.Response, code, msg string) (bool, string) {
	rule := c.t.rules[class]
	switch {
	case class == ClassCanceled:
		return false, "context done"
	case !rule.Retry:
		return false, "not retryable"
	case class == ClassUnauthorized && (c.t.p.RefreshAuth == nil || c.refreshed):
		return false, "no auth refresh"
	case len(rule.Statuses) > 0 && resp != nil && !slices.Contains(rule.Statuses, resp.StatusCode):
		return false, "status not retryable"
	case c.write && c.key == "" && class != ClassNetwork && class != ClassUnauthorized:
		return false, "write without idempotency key"
	case isCompliance(code, msg):
		return false, "compliance review"
	case c.attempts >= c.t.p.MaxAttempts:
		return false, "retries exhausted"
	case !c.t.budget.has():
		return false, reasonBudget
	case !c.replayable:
		return false, reasonBody
	}
	return true, ""
}

// waitFor returns the wait before the next attempt, or the reason not to
// make it.
func (c *call) waitFor(class Class, resp *http.Response) (time.Duration, WaitSource, string) {
	p := &c.t.p
	if class == ClassUnauthorized {
		return 0, WaitNone, ""
	}
	now := c.t.now()
	var d time.Duration
	src := WaitBackoff
	if resp != nil {
		if ra, ok := retryAfter(resp.Header, now); ok {
			if ra > p.MaxRetryAfter {
				return ra, WaitRetryAfter, "Retry-After exceeds MaxRetryAfter"
			}
			d, src = ra, WaitRetryAfter
		}
	}
	if src == WaitBackoff {
		d = c.backoff()
		rule := c.t.rules[class]
		if rule.MaxWait > 0 {
			d = min(d, rule.MaxWait)
		}
		d = max(d, rule.MinWait)
	}
	if reason := c.tooLate(now, d); reason != "" {
		return d, src, reason
	}
	return d, src, ""
}

// backoff returns the next exponential interval with jitter drawn from the
// transport's random seam.
func (c *call) backoff() time.Duration {
	p := &c.t.p
	if c.bo == nil {
		c.bo = &backoff.ExponentialBackOff{
			InitialInterval: p.InitialInterval,
			Multiplier:      p.Multiplier,
			MaxInterval:     p.MaxInterval,
			Stop:            backoff.Stop,
			Clock:           backoff.SystemClock,
		}
		c.bo.Reset()
	}
	d := c.bo.NextBackOff()
	if f := p.RandomizationFactor; f > 0 {
		delta := f * float64(d)
		d = time.Duration(float64(d) - delta + c.t.rand()*2*delta)
	}
	return d
}

// refreshAuth lets the policy's hook change the headers of the retry after
// a 401; the change holds for the rest of the call.
func (c *call) refreshAuth() error {
	c.refreshed = true
	r := c.req.WithContext(c.req.Context())
	r.Header = c.attemptHeader().Clone()
	r.Body, r.GetBody, r.ContentLength = nil, nil, 0
	if err := c.t.p.RefreshAuth(r); err != nil {
		return err
	}
	c.header = r.Header
	return nil
}

func (c *call) attemptHeader() http.Header {
	if c.header != nil {
		return c.header
	}
	return c.req.Header
}

// rekey gives the next attempt a new key, after a definitive failure stored
// by a provider that replays every response under a key.
func (c *call) rekey() {
	c.key = newKey()
	if f := c.t.p.IdempotencyField; f != "" {
		c.buf = withJSONField(c.buf, f, c.key)
		return
	}
	h := c.attemptHeader().Clone()
	h.Set(c.keyHeader(), c.key)
	c.header = h
}

func (c *call) keyHeader() string {
	if c.t.p.IdempotencyHeader != "" {
		return c.t.p.IdempotencyHeader
	}
	return "Idempotency-Key"
}

// newRequest builds the request of the next attempt. It clones only when
// something differs from the caller's request: a header, the body, or the
// context. stop ends the attempt's timer and reports whether it had not
// fired; cancel ends the attempt's context.
func (c *call) newRequest() (r *http.Request, stop func() bool, cancel context.CancelCauseFunc, err error) {
	ctx := c.ctx
	// An attempt gets a timer only when something bounds it: AttemptTimeout,
	// or, for a retry, what is left of MaxElapsedTime. The first attempt is
	// otherwise bounded by the request's context alone.
	p := &c.t.p
	if p.AttemptTimeout > 0 || c.attempts > 1 {
		timeout := p.MaxElapsedTime - c.t.now().Sub(c.start)
		if at := p.AttemptTimeout; at > 0 && at < timeout {
			timeout = at
		}
		if timeout <= 0 {
			timeout = 1 // already past MaxElapsedTime: time out at once
		}
		actx, acancel := context.WithCancelCause(ctx)
		timer := time.AfterFunc(timeout, func() { acancel(ErrAttemptTimeout) })
		ctx, cancel, stop = actx, acancel, timer.Stop
	}

	if c.attempts == 1 && c.header == nil && !c.inMemory && c.first == nil && ctx == c.req.Context() {
		return c.req, stop, cancel, nil
	}
	r = c.req.WithContext(ctx)
	if c.header != nil {
		r.Header = c.header
	}
	switch {
	case !c.hasBody:
	case c.inMemory:
		buf := c.buf
		r.Body = io.NopCloser(bytes.NewReader(buf))
		r.ContentLength = int64(len(buf))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
	case c.attempts == 1 && c.first != nil:
		r.Body = c.first
	case c.attempts > 1:
		body, gerr := c.req.GetBody()
		if gerr != nil {
			if stop != nil {
				stop()
				cancel(nil)
			}
			return nil, nil, nil, gerr
		}
		r.Body = body
	}
	return r, stop, cancel, nil
}

// respond returns the final response, marked for CheckResponse when it is not
// a success, with a body whose Close ends the attempt's context.
func (c *call) respond(resp *http.Response, class Class, cancel context.CancelCauseFunc) *http.Response {
	if cancel != nil {
		done := func() { cancel(nil) }
		if pb, ok := resp.Body.(*peekedBody); ok {
			if pb.rest == nil {
				done() // the body is in memory
			} else {
				pb.done = done
			}
		} else if resp.Body != nil {
			resp.Body = &cancelBody{ReadCloser: resp.Body, done: done}
		} else {
			done()
		}
	}
	if class != ClassSuccess && resp.Request != nil {
		o := &outcome{
			provider: c.t.p.Name, class: class, attempts: c.attempts, key: c.key,
			// No answer to a later attempt settles an earlier unknown
			// outcome: a replay may fail (a 400 for funds the first attempt
			// spent, a 401 for a token that expired meanwhile) although the
			// first attempt executed.
			unknown: c.unknown,
		}
		if c.t.rules[class].OutcomeUnknown && c.key != "" {
			o.unknown = true
		}
		resp.Request = resp.Request.WithContext(context.WithValue(resp.Request.Context(), outcomeKey{}, o))
	}
	return resp
}

// fail builds the error returned when no response was obtained.
func (c *call) fail(class Class, err error) *Error {
	return &Error{
		Provider:       c.t.p.Name,
		Class:          class,
		Attempts:       c.attempts,
		IdempotencyKey: c.key,
		OutcomeUnknown: c.write && c.unknown,
		Err:            err,
	}
}

// budgetErr is the cause of a call whose retry the budget refused after an
// attempt without a response; errors.Is matches both.
func budgetErr(last error) error {
	if last == nil {
		return ErrRetryBudget
	}
	return fmt.Errorf("%w (last attempt: %w)", ErrRetryBudget, last)
}

func joinBodyErr(err error) error {
	if err == nil {
		return ErrBodyNotReplayable
	}
	return &bodyErr{err}
}

// bodyErr is a transport error that could not be retried because the body
// could not be replayed; errors.Is matches both.
type bodyErr struct{ err error }

func (e *bodyErr) Error() string   { return e.err.Error() + " (request body cannot be replayed)" }
func (e *bodyErr) Unwrap() []error { return []error{e.err, ErrBodyNotReplayable} }

// report calls the attempt hook and logs retries and failed calls.
func (c *call) report(a Attempt) {
	if h := c.t.p.OnAttempt; h != nil {
		h(a)
	}
	l := c.t.p.Logger
	if l == nil || a.Class == ClassSuccess {
		return
	}
	level, msg := slog.LevelInfo, "payretry: retrying"
	if !a.Retry {
		level, msg = slog.LevelWarn, "payretry: call failed"
	}
	attrs := []slog.Attr{
		slog.String("provider", a.Provider),
		slog.Int("attempt", a.Number),
		slog.String("method", a.Method),
		slog.String("host", c.req.URL.Host),
		slog.String("path", c.req.URL.Path),
		slog.String("class", a.Class.String()),
	}
	if a.StatusCode != 0 {
		attrs = append(attrs, slog.Int("status", a.StatusCode))
	}
	if a.Code != "" {
		attrs = append(attrs, slog.String("code", a.Code))
	}
	if a.Err != nil {
		attrs = append(attrs, slog.String("error", a.Err.Error()))
	}
	if a.IdempotencyKey != "" {
		attrs = append(attrs, slog.String("idempotency_key", a.IdempotencyKey))
	}
	if a.Retry {
		attrs = append(attrs, slog.Duration("wait", a.Wait), slog.String("wait_source", a.WaitSource.String()))
	} else {
		attrs = append(attrs, slog.String("reason", a.Reason))
		if c.write && c.unknown {
			attrs = append(attrs, slog.Bool("outcome_unknown", true))
		}
	}
	l.LogAttrs(c.req.Context(), level, msg, attrs...)
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}
