package payretry

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"time"
)

// Transport is an [http.RoundTripper] that retries payment calls by the rules
// of its [Policy]: it classifies each outcome, waits with exponential backoff
// and jitter or as long as the provider's Retry-After asks, and carries the
// idempotency key the provider needs on every attempt.
//
// RoundTrip keeps the [http.RoundTripper] contract: whenever the final attempt
// got a response, of any status, it is returned with a nil error and a
// readable body (use [CheckResponse] to turn a non-2xx one into an [*Error]);
// resp.Request is the request of the final attempt (the caller's own when it
// went as it was), so its header shows the key it carried; its context derives
// from the caller's. When no response was obtained, RoundTrip returns nil and an
// [*Error] whose OutcomeUnknown says whether a write may have reached the
// provider.
//
// The caller's request is never modified. A Transport is safe for concurrent
// use by many goroutines; create it with [NewTransport].
type Transport struct {
	base     http.RoundTripper
	p        Policy
	rules    [numClasses]Rule
	scopes   []string // limiter scope of each of p.Limits
	budget   *retryBudget
	timeouts timeouts

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

// RoundTrip sends req, retrying as the policy allows. See [Transport].
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	var c call
	if err := c.begin(t, req); err != nil {
		return nil, err
	}
	var last *try // the latest answered attempt: the answer if no attempt follows
	now := c.start
	for {
		var err error
		if now, err = c.throttle(now); err != nil {
			return c.stop(last, err)
		}
		a, err := c.send(last, now)
		if err != nil {
			return c.stop(last, err)
		}
		d := c.decide(a)
		c.observe(a)
		c.report(a, d)
		if !d.retry {
			return c.finish(a, d)
		}
		if err := t.sleep(req.Context(), d.wait); err != nil {
			return c.stop(a.answered(), err) // the caller gave up during the wait
		}
		last = c.next(a, d)
		now = t.now()
	}
}

// call is the state of one logical call.
type call struct {
	t      *Transport
	req    *http.Request   // the caller's; never modified
	ctx    context.Context // the caller's, traced for a write
	op     string          // the operation id, "" if none
	start  time.Time
	st     state
	body   body
	k      keys
	rewind bool   // the base may get a GetBody (not for a write without a key)
	sends  int    // attempts sent; st.attempts does not count replays
	rekey  bool   // the next attempt carries a new key
	sent   string // the key of the last attempt sent
	wire   *wire  // what the wire saw; writes only

	scope     string
	limits    []Limit // client-side limits that apply
	paid      bool    // the attempt under way is a retry paid from the budget
	free      bool    // the next attempt walks past a replayed answer: it costs no budget
	throttled string  // the key of the call's last 429, see observe
	hold      time.Duration
	held      WaitSource // why the attempt under way was held
	tries     [2]try     // the attempt under way and the last answered one
}

// try is one attempt.
type try struct {
	n         int
	req       *http.Request
	resp      *http.Response
	err       error // when no response was received
	o         outcome
	code, msg string // the provider's error code and message
	key       string
	start     time.Time
	took      time.Duration
	cancel    context.CancelCauseFunc // ends the attempt's context; nil when it has none
}

// begin prepares the call: its body, its key and correlation id, its limiter
// scope.
func (c *call) begin(t *Transport, req *http.Request) error {
	*c = call{t: t, req: req, ctx: req.Context(), st: state{write: !safeMethod(req.Method)}}
	op, hasOp := operation(c.ctx)
	var err error
	switch {
	case c.ctx.Err() != nil:
		err = c.fail(ClassCanceled, c.ctx.Err())
	case hasOp && op == "":
		err = c.fail(ClassOther, ErrEmptyOperation)
	}
	if err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return err
	}
	c.start, c.op = t.now(), op
	p := &t.p
	keyInBody := p.IdempotencyField != "" && c.st.write && slices.Contains(p.KeyMethods, req.Method)
	if c.body, err = newBody(req, p.MaxBufferedBody, keyInBody); err != nil {
		return c.fail(ClassOther, err)
	}
	c.k = t.chooseKeys(req, &c.body, op)
	c.sent = c.k.key
	c.st.keyed, c.st.replayable = c.k.key != "", c.body.replayable
	c.rewind = !c.st.write || c.st.keyed
	c.scope, c.limits = t.scopeFor(req)
	if c.st.write {
		c.wire = &wire{}
		c.ctx = c.wire.trace(c.ctx)
	}
	return nil
}

// send builds and sends the next attempt at now. last, the previous answer,
// is discarded once the attempt is certain to go.
func (c *call) send(last *try, now time.Time) (*try, error) {
	t := c.t
	a := &c.tries[c.sends%2]
	*a = try{n: c.sends + 1, start: now}
	if c.rekey {
		t.rekey(c.req, &c.k, &c.body)
		c.rekey = false
	}
	ctx, timer := c.ctx, uint64(0)
	if d := c.attemptTimeout(a); d > 0 {
		ctx, a.cancel = context.WithCancelCause(ctx)
		timer = t.timeouts.add(d, a.cancel)
	}
	a.req = c.req
	if ctx != c.req.Context() || !c.asIs() || a.n > 1 { // a write's context is traced: always its own request
		a.req = c.req.WithContext(ctx)
		if c.k.header != nil {
			a.req.Header = c.k.header
		}
		if err := c.body.set(a.req, a.n, c.rewind); err != nil {
			t.timeouts.remove(timer)
			a.end()
			return nil, err
		}
	}
	last.discard()
	c.sends, a.key, c.sent = a.n, c.k.key, c.k.key
	c.st.attempts++
	if a.n == 1 {
		t.budget.earn()
	}
	if c.wire != nil {
		c.wire.reset()
	}
	a.resp, a.err = t.base.RoundTrip(a.req)
	if a.err != nil && a.resp != nil {
		a.resp.Body.Close()
		a.resp = nil
	}
	if a.resp != nil {
		if a.resp.Request == nil {
			a.resp.Request = a.req
		}
		if !success(a.resp.StatusCode) {
			peekBody(a.resp) // within the attempt's time: it bounds the error body too
		}
	}
	timedOut := !t.timeouts.remove(timer)
	if !timedOut && c.ctx.Done() == nil {
		a.cancel = nil // nothing above it can end: ending it would release nothing
	}
	if timedOut && a.resp != nil && !bodyInMemory(a.resp) {
		// The time ran out as the answer came: its body is cut off. The
		// attempt timed out (the same key replays the answer).
		discard(a.resp)
		a.resp, a.err = nil, ErrAttemptTimeout
	}
	end := t.now()
	a.took = end.Sub(a.start)
	c.classify(a, timedOut, end)
	return a, nil
}

// attemptTimeout returns what bounds attempt a: AttemptTimeout, and for a
// retry what is left of MaxElapsedTime; 0 when nothing does, or when the
// caller's deadline comes first anyway.
func (c *call) attemptTimeout(a *try) time.Duration {
	p := &c.t.p
	if p.AttemptTimeout == 0 && a.n == 1 {
		return 0
	}
	d := p.MaxElapsedTime - a.start.Sub(c.start)
	if p.AttemptTimeout > 0 {
		d = min(d, p.AttemptTimeout)
	}
	if dl, ok := c.req.Context().Deadline(); ok && time.Until(dl) <= d {
		return 0
	}
	return max(d, 1) // already past MaxElapsedTime: time out at once
}

// decide applies the policy to attempt a (see Transport.decide).
func (c *call) decide(a *try) decision {
	if a.o.class == ClassSuccess {
		if c.paid {
			c.t.budget.refund() // a retry that works adds no load worth bounding
		}
		return decision{}
	}
	d := c.t.decide(c.st, a.o, bounds{
		left:    c.left(c.t.now()),
		backoff: c.t.p.backoff(c.st.backoffs+1, c.t.rand()),
		budget:  c.t.budget.has(),
	})
	if d.refresh {
		if err := c.refreshAuth(); err != nil {
			d.retry, d.reason = false, err
		}
	}
	c.st.unknown = d.unknown
	return d
}

// left returns the time left at now until MaxElapsedTime or the caller's
// deadline, whichever is sooner.
func (c *call) left(now time.Time) time.Duration {
	left := c.t.p.MaxElapsedTime - now.Sub(c.start)
	if dl, ok := c.req.Context().Deadline(); ok {
		left = min(left, time.Until(dl))
	}
	return left
}

// refreshAuth lets the policy's hook change the headers of the retry after
// a 401, on a copy of the request; the change holds for the rest of the call.
func (c *call) refreshAuth() error {
	c.st.refreshed = true
	r := c.req.Clone(c.req.Context())
	if c.k.header != nil {
		r.Header = c.k.header.Clone()
	}
	r.Body, r.GetBody, r.ContentLength = nil, nil, 0
	corr, corrName := "", c.t.p.CorrelationHeader
	if corrName != "" {
		corr, _ = lookup(r.Header, corrName)
	}
	if err := c.t.p.RefreshAuth(r); err != nil {
		return err
	}
	// The hook renews credentials: the key and the correlation id stay.
	if r.Header == nil {
		r.Header = http.Header{}
	}
	for _, kv := range [...][2]string{{c.k.name, c.k.key}, {corrName, corr}} {
		name, v := kv[0], kv[1]
		if name == "" || v == "" {
			continue
		}
		if _, spelled := lookup(r.Header, name); spelled != "" {
			delete(r.Header, spelled)
		}
		r.Header[name] = []string{v}
	}
	c.k.header = r.Header
	return nil
}

// next records decision d after attempt a, before the retry, and returns a
// when it holds a response: it stays the answer until the retry is sent.
func (c *call) next(a *try, d decision) *try {
	if d.source == WaitBackoff {
		c.st.backoffs++
	}
	if d.history {
		c.st.attempts--
		c.st.replays++
		c.free = true
	}
	c.rekey = d.newKey
	return a.answered()
}

// finish ends the call with attempt a.
func (c *call) finish(a *try, d decision) (*http.Response, error) {
	if a.resp != nil {
		return c.respond(a), nil
	}
	a.end()
	err := a.err
	if d.reason == ErrBodyNotReplayable || d.reason == ErrRetryBudget {
		err = fmt.Errorf("%w (last attempt: %w)", d.reason, a.err)
	}
	return nil, c.fail(a.o.class, err)
}

// stop ends the call when no further attempt can be made: last, the latest
// answer, is returned if there is one; otherwise err, an *Error or a cause.
func (c *call) stop(last *try, err error) (*http.Response, error) {
	if last != nil {
		return c.respond(last), nil
	}
	if c.sends == 0 {
		c.body.close()
	}
	var e *Error
	if errors.As(err, &e) {
		return nil, e
	}
	class := ClassOther
	if c.req.Context().Err() != nil {
		class = ClassCanceled
	}
	return nil, c.fail(class, err)
}

// respond returns a's response as the call's answer, with a body whose Close
// ends the attempt's context. Its request carries the caller's context
// rather than the attempt's, so that it can carry a follow-up request; a
// failure's also carries the call's outcome, for CheckResponse.
func (c *call) respond(a *try) *http.Response {
	resp := a.resp
	if a.cancel != nil {
		onClose(resp, a.cancel)
	}
	switch {
	case a.o.class != ClassSuccess:
		info := &callOutcome{provider: c.t.p.Name, class: a.o.class, attempts: c.sends, key: a.key,
			operation: c.op, unknown: c.st.write && c.st.unknown}
		resp.Request = resp.Request.WithContext(context.WithValue(c.req.Context(), outcomeKey{}, info))
	case resp.Request.Context() == c.req.Context():
	case c.asIs():
		resp.Request = c.req // the attempt's request was the caller's but for its context
	default:
		resp.Request = resp.Request.WithContext(c.req.Context())
	}
	return resp
}

// asIs reports whether the attempts carry the caller's own header and body.
func (c *call) asIs() bool { return c.k.header == nil && !c.body.inMemory && c.body.first == nil }

// fail builds the error returned when no response was obtained.
func (c *call) fail(class Class, err error) *Error {
	return &Error{
		Provider:       c.t.p.Name,
		Class:          class,
		Attempts:       c.sends,
		IdempotencyKey: c.sent,
		Operation:      c.op,
		OutcomeUnknown: c.st.write && c.st.unknown,
		Err:            err,
	}
}

// answered returns a when it holds a response, or ends it and returns nil.
func (a *try) answered() *try {
	if a.resp != nil {
		return a
	}
	a.end()
	return nil
}

// discard drops an answer that a later attempt replaces.
func (a *try) discard() {
	if a != nil {
		discard(a.resp)
		a.end()
	}
}

// end ends the attempt's context.
func (a *try) end() {
	if a.cancel != nil {
		a.cancel(nil)
	}
}

func success(status int) bool { return status >= 200 && status <= 299 }

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
