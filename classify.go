package payretry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Class says what the outcome of one attempt means for a payment call.
type Class int

// The classes. A Policy decides, per class, whether and how to retry (see
// [Rule]).
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

// Classify is the default classification by status, or for an error by its
// type (never its text): [ClassNetwork] when the request provably never left,
// [ClassCanceled] for [context.Canceled], otherwise [ClassTimeout]. See the
// README's "Classes" for the table.
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
	case s >= 500 && s <= 599:
		return ClassServerError
	}
	if c, ok := statusClasses[resp.StatusCode]; ok {
		return c
	}
	return ClassOther
}

var statusClasses = map[int]Class{400: ClassBadRequest, 401: ClassUnauthorized, 403: ClassForbidden,
	404: ClassNotFound, 409: ClassConflict, 422: ClassUnprocessable, 429: ClassRateLimited}

func classifyErr(err error) Class {
	switch {
	case neverSent(err):
		return ClassNetwork
	case errors.Is(err, context.Canceled):
		return ClassCanceled
	}
	// Time-outs, resets, EOF and deadlines (a base transport's own time-out
	// matches context.DeadlineExceeded too): the outcome is unknown.
	return ClassTimeout
}

// neverSent reports whether err shows, by its type, that no request was
// written: a failed dial or name lookup, a refused connection, a failed TLS handshake.
func neverSent(err error) bool {
	var (
		op    *net.OpError
		dns   *net.DNSError
		rh    tls.RecordHeaderError
		alert tls.AlertError
	)
	return (errors.As(err, &op) && (op.Op == "dial" || op.Op == "proxyconnect")) || errors.As(err, &dns) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.As(err, &rh) || errors.As(err, &alert) || permanent(err)
}

// permanent reports whether err is a failure that no retry mends within a
// payment's time: a server certificate that fails verification, or a host
// name that does not exist.
func permanent(err error) bool {
	var (
		cv  *tls.CertificateVerificationError
		ua  x509.UnknownAuthorityError
		hn  x509.HostnameError
		ci  x509.CertificateInvalidError
		dns *net.DNSError
	)
	return errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &ci) ||
		errors.As(err, &dns) && dns.IsNotFound
}

// isCompliance reports whether a provider's code or message describes a
// compliance review or a request for information, which is never retried
// (Verto API, Errors and Retries: "Do not retry an open RFI").
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

// replayed reports whether a response is a provider's stored answer for the
// key, replayed (Idempotent-Replayed: true, and its variants).
func replayed(h http.Header) bool {
	for _, name := range [...]string{"Idempotent-Replayed", "Idempotency-Replayed", "X-Idempotency-Replayed"} {
		if v, _ := lookup(h, name); strings.EqualFold(v, "true") {
			return true
		}
	}
	return false
}

// keyInUse reports whether a 409's code or message says that a request with
// the same key is in flight (KeyStone API, HTTP status codes: "409 Conflict:
// Duplicate idempotency key"), not a definitive conflict with the resource's state.
func keyInUse(code, msg string) bool {
	c := strings.ToUpper(code)
	if strings.Contains(c, "IDEMPOTEN") || strings.Contains(c, "IN_PROGRESS") || strings.Contains(c, "DUPLICATE") {
		return true
	}
	m := strings.ToLower(msg)
	return strings.Contains(m, "idempotency key") || strings.Contains(m, "idempotency_key") ||
		strings.Contains(m, "idempotency-key") || strings.Contains(m, "in progress")
}

// classify sets a.o, the outcome of attempt a at now: the policy's class,
// corrected with what the wire saw, and what the answer says.
func (c *call) classify(a *try, timedOut bool, now time.Time) {
	o := &a.o
	if a.resp != nil {
		o.class, o.status, o.sent = c.t.p.Classify(forClassify(a.resp), nil), a.resp.StatusCode, true
		if o.class < 0 || int(o.class) >= numClasses || o.class == ClassNetwork || o.class == ClassCanceled {
			o.class = ClassOther // an answer came: it left, and it was not canceled
		}
		if o.class != ClassSuccess {
			a.code, a.msg = decodeError(peekBody(a.resp))
			o.compliance = isCompliance(a.code, a.msg)
			o.keyInUse = o.class == ClassConflict && keyInUse(a.code, a.msg)
			o.retryAfter, o.hasRetryAfter = retryAfter(a.resp.Header, now)
			o.replayed = replayed(a.resp.Header)
			o.stored = c.t.p.Stored == nil || c.t.p.Stored(forClassify(a.resp))
		}
		return
	}
	if timedOut {
		a.err = ErrAttemptTimeout
	}
	o.cause = a.err
	switch {
	case c.req.Context().Err() != nil:
		o.class = ClassCanceled // the caller's own cancellation or deadline
	case timedOut:
		o.class = ClassTimeout
	default:
		o.class = c.t.p.Classify(nil, a.err)
		if o.class != ClassTimeout && o.class != ClassNetwork {
			o.class = classifyErr(a.err) // an error is one of these two (the caller's context is not done)
			if o.class == ClassCanceled {
				o.class = ClassTimeout // a base's own cancellation: judge by the wire
			}
		}
	}
	o.permanent = permanent(a.err)
	w := c.wire
	switch {
	case w == nil: // a safe method: its outcome does not matter
		o.sent = o.class != ClassNetwork
	case o.class == ClassNetwork && w.got.Load():
		o.class, o.sent = ClassTimeout, true // a connection was obtained: it may have left
	case o.class == ClassTimeout && w.neverLeft():
		o.class = ClassNetwork
	default:
		o.sent = o.class != ClassNetwork && !w.neverLeft()
	}
}
