package payretry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// Class says what the outcome of one attempt means for a payment call.
type Class int

// The classes of DESIGN.md §2. A Policy decides, per class, whether and how to
// retry (see [Rule]).
const (
	ClassSuccess       Class = iota // 2xx
	ClassBadRequest                 // 400: fix the request
	ClassUnauthorized               // 401: credentials rejected; retried once after Policy.RefreshAuth
	ClassForbidden                  // 403: not allowed (also compliance holds)
	ClassNotFound                   // 404
	ClassConflict                   // 409: state conflict or key in use
	ClassUnprocessable              // 422: business rule violated, or a key reused with another payload
	ClassRateLimited                // 429
	ClassServerError                // 5xx
	ClassTimeout                    // no answer after the request was written: outcome unknown
	ClassNetwork                    // the request provably never left (dial, DNS, TLS handshake, refused)
	ClassCanceled                   // the caller's context was canceled or its deadline passed
	ClassOther                      // anything else: 1xx, 3xx, other 4xx
)

var classNames = [...]string{
	ClassSuccess:       "success",
	ClassBadRequest:    "bad request",
	ClassUnauthorized:  "unauthorized",
	ClassForbidden:     "forbidden",
	ClassNotFound:      "not found",
	ClassConflict:      "conflict",
	ClassUnprocessable: "unprocessable",
	ClassRateLimited:   "rate limited",
	ClassServerError:   "server error",
	ClassTimeout:       "timeout",
	ClassNetwork:       "network",
	ClassCanceled:      "canceled",
	ClassOther:         "other",
}

// String returns the class's lower-case name, such as "rate limited".
func (c Class) String() string {
	if c >= 0 && int(c) < len(classNames) {
		return classNames[c]
	}
	return "class(" + strconv.Itoa(int(c)) + ")"
}

// Classify is the status- and transport-level default classification, before
// any provider rule: 2xx is success, 400/401/403/404/409/422/429 and 5xx have
// classes of their own, other statuses are [ClassOther].
//
// For an error it tells the request that provably never left ([ClassNetwork]:
// dial, DNS, TLS handshake, connection refused) from one whose outcome is
// unknown ([ClassTimeout]: time-outs, resets and EOF, which may come after the
// provider received the request). The caller's own cancellation or deadline is
// [ClassCanceled]. It decides from error types, never from error text; the
// Transport then corrects the class with what it saw on the wire (see
// [Transport]).
func Classify(resp *http.Response, err error) Class {
	if err != nil {
		return classifyErr(err)
	}
	if resp == nil {
		return ClassOther
	}
	switch s := resp.StatusCode; {
	case s >= 200 && s <= 299:
		return ClassSuccess
	case s == http.StatusBadRequest:
		return ClassBadRequest
	case s == http.StatusUnauthorized:
		return ClassUnauthorized
	case s == http.StatusForbidden:
		return ClassForbidden
	case s == http.StatusNotFound:
		return ClassNotFound
	case s == http.StatusConflict:
		return ClassConflict
	case s == http.StatusUnprocessableEntity:
		return ClassUnprocessable
	case s == http.StatusTooManyRequests:
		return ClassRateLimited
	case s >= 500 && s <= 599:
		return ClassServerError
	}
	return ClassOther
}

func classifyErr(err error) Class {
	// Attempt time-outs come first: they also match context.DeadlineExceeded.
	if errors.Is(err, ErrAttemptTimeout) {
		return ClassTimeout
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return ClassCanceled
	}
	if neverSent(err) {
		return ClassNetwork
	}
	return ClassTimeout
}

// neverSent reports whether err shows, by its type, that no request was
// written: a failed dial or name lookup, a refused connection, or a failed TLS
// handshake.
func neverSent(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && (op.Op == "dial" || op.Op == "proxyconnect") {
		return true
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return true
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return true
	}
	var (
		rh    tls.RecordHeaderError
		alert tls.AlertError
		cv    *tls.CertificateVerificationError
		ua    x509.UnknownAuthorityError
		hn    x509.HostnameError
		ci    x509.CertificateInvalidError
	)
	return errors.As(err, &rh) || errors.As(err, &alert) || errors.As(err, &cv) ||
		errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &ci)
}

// isCompliance reports whether a provider's code or message describes a
// compliance review or a request for information, which is never retried
// (seed 002_3e18af4f20d976a0.txt: "Do not retry an open RFI").
func isCompliance(code, msg string) bool {
	for _, tok := range strings.FieldsFunc(strings.ToUpper(code), func(r rune) bool {
		return r == '_' || r == '-' || r == '.' || r == ' ' || r == ':'
	}) {
		if tok == "RFI" || strings.HasPrefix(tok, "COMPLIANCE") {
			return true
		}
	}
	m := strings.ToLower(msg)
	return strings.Contains(m, "request for information") || strings.Contains(m, "compliance review") ||
		strings.Contains(m, "compliance hold")
}

const (
	traceGetConn uint32 = 1 << iota // the base asked for a connection
	traceGotConn                    // ... and obtained one
)

// tracer records what the base transport did on the wire for the attempt
// under way. A request is proved never to have left only when the base
// reported asking for a connection (so it reports through httptrace at all)
// and never obtained one: once a connection is obtained the request may be on
// its way, even before WroteHeaders fires (HTTP/2 flushes the HEADERS frame
// first).
//
// Tracers are pooled, and their hooks are made once. Each call gets a
// ClientTrace of its own that points at them while the call runs; release
// points it at hooks that do nothing, so that the context of the request the
// call returns reaches no tracer, whatever is sent with it later. A base that
// copies the hooks into a trace of its own while the call runs (httptrace
// composes a base's trace with payretry's so) and fires them after its
// RoundTrip returned would still reach a pooled tracer: net/http fires them
// only inside RoundTrip.
type tracer struct {
	flags   atomic.Uint32
	getConn func(string)
	gotConn func(httptrace.GotConnInfo)
}

var tracers = sync.Pool{New: func() any { return newTracer() }}

func ignoreGetConn(string)                {}
func ignoreGotConn(httptrace.GotConnInfo) {}

func newTracer() *tracer {
	tr := &tracer{}
	tr.getConn = func(string) { tr.flags.Or(traceGetConn) }
	tr.gotConn = func(httptrace.GotConnInfo) { tr.flags.Or(traceGotConn) }
	return tr
}

// attach returns ctx with a ClientTrace that reports to tr, and the trace.
func (tr *tracer) attach(ctx context.Context) (context.Context, *httptrace.ClientTrace) {
	if traceKey == nil || httptrace.ContextClientTrace(ctx) != nil {
		// The caller traces the request too: httptrace composes the two.
		trace := &httptrace.ClientTrace{GetConn: tr.getConn, GotConn: tr.gotConn}
		return httptrace.WithClientTrace(ctx, trace), trace
	}
	x := &traceCtx{Context: ctx}
	x.trace.GetConn, x.trace.GotConn = tr.getConn, tr.gotConn
	return x, &x.trace
}

// traceCtx is the caller's context with a ClientTrace, made in one allocation
// where httptrace.WithClientTrace makes two (the trace and its context).
type traceCtx struct {
	context.Context
	trace httptrace.ClientTrace
}

// Value returns the trace for httptrace's key and asks the caller's context
// for any other.
func (x *traceCtx) Value(key any) any {
	if key == traceKey {
		return &x.trace
	}
	return x.Context.Value(key)
}

// traceKey is the key under which net/http/httptrace looks a ClientTrace up.
// The package does not export it, so init learns it by letting
// ContextClientTrace look it up in a probe, then checks it: if the check
// fails, traceKey stays nil and attach falls back to
// httptrace.WithClientTrace.
var traceKey any

func init() {
	p := &keyProbe{Context: context.Background()}
	httptrace.ContextClientTrace(p)
	traceKey = p.key
	x := &traceCtx{Context: context.Background()}
	if traceKey == nil || httptrace.ContextClientTrace(x) != &x.trace {
		traceKey = nil
	}
}

// keyProbe is a context that records the key it is asked for.
type keyProbe struct {
	context.Context
	key any
}

func (p *keyProbe) Value(key any) any {
	p.key = key
	return nil
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
func (c *call) mayRetry(class Class, resp *http.Response, code, msg string) (bool, error) {
	rule := c.t.rules[class]
	switch {
	case class == ClassCanceled:
		return false, c.req.Context().Err()
	case !rule.Retry:
		return false, ErrNotRetryable
	case class == ClassUnauthorized && (c.t.p.RefreshAuth == nil || c.refreshed):
		return false, ErrNotRetryable
	case len(rule.Statuses) > 0 && resp != nil && !slices.Contains(rule.Statuses, resp.StatusCode):
		return false, ErrNotRetryable
	case c.write && c.key == "" && class != ClassNetwork && class != ClassUnauthorized:
		return false, ErrUnsafeRetry
	case isCompliance(code, msg):
		return false, ErrCompliance
	case c.attempts >= c.t.p.MaxAttempts:
		return false, ErrRetriesExhausted
	case !c.t.budget.has():
		return false, ErrRetryBudget
	case !c.replayable:
		return false, ErrBodyNotReplayable
	}
	return true, nil
}
