package payretrytest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Options configures a Server. The zero value is a healthy server on the real
// clock, without authentication, with SmartRetry's documented rate limits and
// no rate limit on the other providers.
type Options struct {
	// Plan injects faults; the zero value injects none.
	Plan FaultPlan
	// Clock returns the current time; nil means time.Now. It drives the 24 h
	// expiry of stored idempotent responses, the Outages windows, the
	// one-second rate-limit windows and Payment.At. Stalls and Latency wait
	// on the real clock.
	Clock func() time.Time
	// Limits overrides SmartRetry's per-endpoint-type rate limits.
	Limits Limits
	// RateLimit, when positive, limits every provider to RateLimit requests
	// per API key (x-api-key, else Authorization) per fixed one-second window,
	// all endpoints combined, with X-RateLimit-* headers on every response and
	// a 429 with Retry-After in the provider's format beyond it. On SmartRetry
	// it replaces Limits.All.
	RateLimit int
	// RequireAuth makes every request need a credential: the x-api-key header
	// on SmartRetry, "Authorization: Bearer <token>" on the others. A missing
	// credential, the token "expired", or a token other than Token when Token
	// is set is answered 401 in the provider's format.
	RequireAuth bool
	// Token is the one credential accepted when RequireAuth is set; "" accepts
	// any credential but "expired".
	Token string
}

// Server is a loopback HTTP server that behaves like one payment provider:
// its payment endpoint, status lookup, idempotency, error formats and rate
// limits follow the provider's document, and Options.Plan injects faults. The
// embedded httptest.Server gives URL, Client and CloseClientConnections.
//
// A Server keeps a ledger of the payments it executed, so that a test can
// count double payments. Its methods are safe for concurrent use, also while
// requests are being served.
type Server struct {
	*httptest.Server

	p       Provider
	plan    FaultPlan
	now     func() time.Time
	start   time.Time
	auth    bool
	token   string
	closing chan struct{}
	once    sync.Once

	mu       sync.Mutex
	limiter  *limiter
	keys     map[string]*keyEntry
	ledger   []Payment
	executed map[string]int       // reference -> executions
	attempts map[string][]Attempt // reference -> payment requests
	calls    int                  // requests received, numbering Vfx-Api-Call-Id
	active   int
	stats    Stats
}

// NewServer starts and returns a Server on a loopback address that simulates
// p. The caller should call Close when finished. Like httptest.NewServer, it
// panics when it cannot start: for an unknown provider or an invalid
// Options.Plan (a fraction outside [0, 1], fractions summing to more than 1, a
// negative duration, a window or phase ending before it starts).
func NewServer(p Provider, opts Options) *Server {
	if !p.valid() {
		panic(fmt.Sprintf("payretrytest: unknown provider %q", string(p)))
	}
	if err := opts.Plan.validate(); err != nil {
		panic("payretrytest: " + err.Error())
	}
	s := &Server{
		p:        p,
		plan:     opts.Plan,
		now:      opts.Clock,
		auth:     opts.RequireAuth,
		token:    opts.Token,
		closing:  make(chan struct{}),
		limiter:  newLimiter(p, opts),
		keys:     make(map[string]*keyEntry),
		executed: make(map[string]int),
		attempts: make(map[string][]Attempt),
		stats:    Stats{ByStatus: make(map[int]int), Faults: make(map[Fault]int)},
	}
	s.plan.Outages = append([]Window(nil), opts.Plan.Outages...)
	s.plan.Phases = append([]Phase(nil), opts.Plan.Phases...)
	if s.now == nil {
		s.now = time.Now
	}
	s.start = s.now()
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// Close releases stalled and delayed handlers, then shuts the server down and
// blocks until all outstanding requests have completed.
func (s *Server) Close() {
	s.once.Do(func() { close(s.closing) })
	s.Server.Close()
}

// PaymentURL returns the URL of the server's payment-creating endpoint.
func (s *Server) PaymentURL() string { return s.URL + PaymentPath(s.p) }

// StatusURL returns the URL of the server's status lookup for a reference.
func (s *Server) StatusURL(reference string) string { return s.URL + StatusPath(s.p, reference) }

// exchange is one request in progress.
type exchange struct {
	r       *http.Request
	path    string // escaped
	call    int    // 1-based arrival number
	payment bool   // a POST to the payment endpoint
	pay     paymentRequest
	key     string // idempotency key, "" if none
	n       int    // index in s.attempts[pay.reference], -1 if not recorded
	status  int    // status written, 0 for a reset

	finished bool // recorded by finish; guarded by Server.mu
}

// serve is the server's handler: the provider's edge (call id, rate limit,
// outage, authentication, mandatory headers), then routing.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	ex := s.open(r)
	defer s.finish(ex)
	if s.edgeStores(ex) {
		if stored, ok := s.storedFor(ex.key, ex.pay.fingerprint()); ok {
			s.send(w, ex, s.replay(stored))
			return
		}
	}

	if s.p == Verto {
		// Verto API, Errors and Retries: "Vfx-Api-Call-Id (Response): Verto's internal ID for this
		// specific request."
		w.Header().Set("Vfx-Api-Call-Id", fmt.Sprintf("vac_%08d", ex.call))
	}
	if s.limiter != nil {
		now := s.now()
		s.mu.Lock()
		q := s.limiter.take(apiKeyOf(r), classOf(s.p, ex.path), now)
		s.mu.Unlock()
		q.setHeaders(w.Header())
		if !q.ok {
			resp := s.p.errorResponse(http.StatusTooManyRequests, codeRateLimited, msgRateLimited)
			resp.header.Set("Retry-After", q.retryAfter(now))
			s.edge(w, ex, resp)
			return
		}
	}
	if s.plan.inOutage(s.now().Sub(s.start)) {
		s.noteFault(ex, FaultOutage)
		resp := s.p.errorResponse(http.StatusServiceUnavailable, codeUnavailable, "Service temporarily unavailable")
		resp.header.Set("Retry-After", "1")
		s.edge(w, ex, resp)
		return
	}
	if !s.authorized(r) {
		s.edge(w, ex, s.unauthorized())
		return
	}
	// Verto API, Errors and Retries: "Vfx-Correlation-Id (Request): Mandatory."
	if s.p == Verto && r.Header.Get("Vfx-Correlation-Id") == "" {
		s.send(w, ex, s.p.errorResponse(http.StatusBadRequest, codeValidation, "Vfx-Correlation-Id header is required"))
		return
	}
	s.route(w, ex)
}

// edgeStores reports whether the provider stores its edge's answer to ex
// under ex's key. ORZCash Access API, 4.3 Idempotency: "For any request with
// the Idempotency-Key header, we will store the response and re-send it for
// every request for the same idempotency key for 24H": every response, the
// edge's (429, 503, 401) included, and a stored key is answered before the
// edge. The other providers' edges come before their idempotency stores.
func (s *Server) edgeStores(ex *exchange) bool {
	return s.p == ORZCash && ex.payment && isUUID(ex.key)
}

// edge answers a request at the provider's edge, storing the answer under
// the request's key where the provider does.
func (s *Server) edge(w http.ResponseWriter, ex *exchange, resp response) {
	if s.edgeStores(ex) {
		s.keep(ex.key, ex.pay.fingerprint(), resp)
	}
	s.send(w, ex, resp)
}

// route dispatches a request that passed the edge.
func (s *Server) route(w http.ResponseWriter, ex *exchange) {
	path, method := ex.path, ex.r.Method
	switch {
	case path == PaymentPath(s.p):
		if method != http.MethodPost {
			s.send(w, ex, s.methodNotAllowed(http.MethodPost))
			return
		}
		s.createPayment(w, ex)
		return
	case strings.HasPrefix(path, statusPrefix(s.p)):
		segs := segments(strings.TrimPrefix(path, statusPrefix(s.p)))
		switch {
		case len(segs) == 1 && segs[0] != "":
			if method != http.MethodGet {
				s.send(w, ex, s.methodNotAllowed(http.MethodGet))
				return
			}
			s.lookup(w, ex, segs[0])
			return
		case len(segs) == 2 && s.p == KeyStone:
			s.settlementAction(w, ex, segs[0], segs[1])
			return
		}
	case s.p == SmartRetry && (path == "/v1/payments/capture" || path == "/v1/payments/refund" || path == "/v1/payments/void"):
		if method != http.MethodPost {
			s.send(w, ex, s.methodNotAllowed(http.MethodPost))
			return
		}
		s.paymentAction(w, ex, strings.TrimPrefix(path, "/v1/payments/"))
		return
	case s.p == SmartRetry && strings.HasPrefix(path, "/v1/recurring/"):
		// A stub with its own rate-limit class (SmartRetry docs, Rate limits: "Recurring operations").
		s.send(w, ex, jsonResponse(http.StatusOK, "application/json", map[string]string{"status": "active"}))
		return
	}
	s.send(w, ex, s.p.errorResponse(http.StatusNotFound, codeNotFound, "Not Found"))
}

// segments splits an escaped path tail at "/" and unescapes each segment; a
// segment that does not unescape is kept as it is.
func segments(tail string) []string {
	segs := strings.Split(tail, "/")
	for i, seg := range segs {
		if u, err := url.PathUnescape(seg); err == nil {
			segs[i] = u
		}
	}
	return segs
}

func (s *Server) methodNotAllowed(allow string) response {
	resp := s.p.errorResponse(http.StatusMethodNotAllowed, codeMethodNotAllowed, "Method Not Allowed")
	resp.header.Set("Allow", allow)
	return resp
}

// authorized reports whether r carries an accepted credential.
func (s *Server) authorized(r *http.Request) bool {
	if !s.auth {
		return true
	}
	var tok string
	if s.p == SmartRetry {
		tok = r.Header.Get("X-Api-Key")
	} else if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		tok = strings.TrimSpace(v)
	}
	return tok != "" && tok != "expired" && (s.token == "" || tok == s.token)
}

func (s *Server) unauthorized() response {
	switch s.p {
	case KeyStone:
		// KeyStone API, HTTP status codes: "401 Unauthorized: Invalid or expired JWT".
		return s.p.errorResponse(http.StatusUnauthorized, codeUnauthorized, "Invalid or expired JWT")
	case SmartRetry:
		// SmartRetry docs, Rate limits: "401 No: Check API key".
		return s.p.errorResponse(http.StatusUnauthorized, codeInvalidAPIKey, "Missing or invalid API key")
	}
	return s.p.errorResponse(http.StatusUnauthorized, codeUnauthorized, "Invalid or expired access token")
}

// send writes resp and records its status.
func (s *Server) send(w http.ResponseWriter, ex *exchange, resp response) {
	h := w.Header()
	for k, v := range resp.header {
		h[k] = v
	}
	w.WriteHeader(resp.status)
	_, _ = w.Write(resp.body)
	ex.status = resp.status
}

// reset writes a partial status line and resets the connection, so that the
// client gets a transport error after the server did its work.
func (s *Server) reset(w http.ResponseWriter, ex *exchange) {
	s.abort(w, ex, "HTTP/1.1 201 Cre")
}

// abort writes partial, which may be empty, and resets the connection.
func (s *Server) abort(w http.ResponseWriter, ex *exchange, partial string) {
	ex.status = 0
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Not hijackable (HTTP/2): abort the response, which resets the stream.
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // close sends RST instead of FIN
	}
	// Record the exchange before the client can see the reset, so that
	// Stats agrees with what the client saw the moment it sees it.
	s.finish(ex)
	if partial != "" {
		_, _ = buf.WriteString(partial)
		_ = buf.Flush()
	}
	_ = conn.Close()
}

// hold waits for d on the real clock, or until the client goes away or the
// server closes. It reports whether the full duration passed.
func (s *Server) hold(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
	case <-s.closing:
	}
	return false
}
