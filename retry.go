package payretry

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
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
// key it carried; its context has the values, deadline and cancellation of
// the caller's (for a write, in a wrapper that holds an inert ClientTrace).
// When no response was obtained, RoundTrip returns nil and an [*Error] whose
// OutcomeUnknown says whether a write may have reached the provider.
//
// The caller's request is never modified. A Transport is safe for concurrent
// use by many goroutines; create it with [NewTransport].
type Transport struct {
	base   http.RoundTripper
	p      Policy
	rules  [numClasses]Rule
	scopes []string // limiter scope of each of p.Limits
	// limitSets[mask] is the set of p.Limits whose bits are in mask, made
	// on first use; nil when the policy has too many limits to keep them.
	limitSets []atomic.Pointer[[]Limit]
	budget    *retryBudget
	local     *localLimiter // p.Limiter when it is the in-process one

	// Seams for tests; never nil. elapsed is the time since origin, read
	// from the monotonic clock alone where now reads the wall clock too:
	// it must agree with now.Sub(origin).
	now     func() time.Time
	elapsed func() time.Duration
	sleep   func(ctx context.Context, d time.Duration) error
	rand    func() float64 // in [0, 1)
}

// origin is the instant that Transport.elapsed counts from.
var origin = time.Now()

func sinceOrigin() time.Duration { return time.Since(origin) }

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
	t := &Transport{base: base, p: p, now: time.Now, elapsed: sinceOrigin, sleep: sleepCtx, rand: rand.Float64,
		budget: newRetryBudget(p.RetryBudgetRatio, p.RetryBudgetBurst)}
	t.local, _ = p.Limiter.(*localLimiter)
	for c, r := range p.Rules {
		t.rules[c] = r
	}
	for _, l := range p.Limits {
		t.scopes = append(t.scopes, p.Name+"/"+l.Name)
	}
	if n := len(p.Limits); n > 0 && n <= maxCachedLimits {
		t.limitSets = make([]atomic.Pointer[[]Limit], 1<<n)
	}
	return t, nil
}

// Policy returns a copy of the transport's policy, defaults applied; changing
// it does not change the Transport.
func (t *Transport) Policy() Policy { return t.p.clone() }

// call is the state of one logical call.
type call struct {
	t     *Transport
	req   *http.Request // the caller's; never modified
	ctx   context.Context
	start time.Duration // t.elapsed() when the call began; see sinceStart
	write bool          // not a safe method: its outcome matters

	header http.Header // header of the attempts, nil = req.Header

	// body
	hasBody    bool
	buf        []byte // whole body in memory (buffered, or with a key field)
	inMemory   bool
	replayable bool
	first      io.ReadCloser // body of the first attempt when not req.Body

	scope  string      // limiter scope
	state  *scopeState // its state in the in-process limiter; set by throttle
	limits []Limit     // client-side limits that apply

	key        string // key carried; "" if none
	keyPinned  bool   // an attempt had an unknown outcome: the key must not change
	unknown    bool   // a write may have reached the provider
	attempts   int
	refreshed  bool
	paid       bool          // this attempt is a retry paid from the budget
	hold       time.Duration // how long the limiter held this attempt
	holdSource WaitSource
	waited     bool // time passed before the first attempt: a limiter's hold, a body read
	rekeyNext  bool // the next attempt, if made, carries a new key

	tracer *tracer                // what the wire saw; writes only
	trace  *httptrace.ClientTrace // the call's, reporting to tracer

	bo *backoff.ExponentialBackOff
}

// release gives the call's tracer back, its trace unhooked first, so that a
// base that kept the traced context reaches no other call's tracer through
// it.
func (c *call) release() {
	c.trace.GetConn, c.trace.GotConn = ignoreGetConn, ignoreGotConn
	tracers.Put(c.tracer)
}

// RoundTrip sends req, retrying as the policy allows. See [Transport].
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	c := &call{t: t, req: req, ctx: req.Context(), write: !safeMethod(req.Method)} // on the stack
	if err := c.ctx.Err(); err != nil {
		closeBody(req)
		return nil, c.fail(ClassCanceled, err)
	}
	c.start = t.elapsed() // the monotonic clock alone: the wall is read when something needs it
	if err := c.prepareBody(); err != nil {
		return nil, c.fail(ClassOther, err)
	}
	c.prepareHeaders()
	c.scope, c.limits = t.scopeFor(req)
	if c.write {
		// What happened on the wire tells a request that never left from
		// one whose outcome is unknown (see tracer).
		c.tracer = tracers.Get().(*tracer)
		c.ctx, c.trace = c.tracer.attach(c.ctx)
		defer c.release()
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
		if c.tracer != nil {
			c.tracer.flags.Store(0)
		}
		var sent time.Time
		if t.p.OnAttempt != nil {
			sent = t.now()
		}
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
		if class == ClassSuccess {
			if c.attempts > 1 && c.paid {
				t.budget.refund()
			}
			if t.p.OnAttempt == nil {
				return c.respond(resp, class, cancel), nil // nothing to report
			}
		}
		var code, msg string
		if resp != nil && class != ClassSuccess {
			code, msg = decodeError(peekBody(resp))
		}
		a := Attempt{
			Provider: t.p.Name, Number: c.attempts, Method: req.Method, Class: class,
			Code: code, Err: err, IdempotencyKey: c.key, Start: sent, Hold: c.hold, HoldSource: c.holdSource,
			Request: areq,
		}
		if !sent.IsZero() {
			a.Duration = t.now().Sub(sent)
		}
		if resp != nil {
			a.StatusCode = resp.StatusCode
		}
		if class != ClassSuccess {
			a.Retry, a.Reason = c.mayRetry(class, resp, code, msg)
			if a.Retry {
				a.Wait, a.WaitSource, a.Reason = c.waitFor(class, resp)
				a.Retry = a.Reason == nil
			}
			if a.Retry && class == ClassUnauthorized {
				if rerr := c.refreshAuth(); rerr != nil {
					a.Retry, a.Reason = false, rerr
				}
			}
		}
		a.OutcomeUnknown = class != ClassSuccess && c.write && (c.unknown || resp != nil && c.t.rules[class].OutcomeUnknown && c.key != "")
		c.report(a)
		if !a.Retry {
			if resp != nil {
				return c.respond(resp, class, cancel), nil
			}
			if cancel != nil {
				cancel(nil)
			}
			switch a.Reason {
			case ErrBodyNotReplayable:
				err = joinBodyErr(err)
			case ErrRetryBudget:
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

// sinceStart returns the time from the call's start to now, a time read
// from t.now.
func (c *call) sinceStart(now time.Time) time.Duration {
	return now.Sub(origin) - c.start
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
		timeout := p.MaxElapsedTime
		if c.attempts > 1 || c.waited {
			timeout -= c.t.elapsed() - c.start
		}
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
	if resp.Request == nil {
		return resp
	}
	if class == ClassSuccess {
		_, traced := resp.Request.Context().(*traceCtx)
		if cancel != nil || c.write && !traced {
			// The request was sent with the attempt's context, which ends
			// with the body, or with the caller's trace composed with
			// payretry's, whose hooks release turns off. A traceCtx is
			// kept: it is the caller's context but for an inert trace.
			resp.Request = resp.Request.WithContext(c.req.Context())
		}
		return resp
	}
	{
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
		resp.Request = resp.Request.WithContext(context.WithValue(c.req.Context(), outcomeKey{}, o))
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

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}
