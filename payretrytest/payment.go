package payretrytest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// MaxAmount is the largest amount, in minor units, that a simulated wallet
// pays: a larger amount is declined as insufficient funds, unexecuted.
const MaxAmount = 1_000_000

const maxBody = 1 << 20

// paymentRequest is a parsed payment body:
// {"reference": "...", "amount": 1000, "currency": "EUR"} (+ "idempotency_key" for KeyStone).
type paymentRequest struct {
	reference string
	amount    int64
	currency  string
	key       string // KeyStone's idempotency_key
	raw       []byte
	malformed bool         // not a JSON object
	invalid   []fieldError // field errors of an object
}

// fieldError is one validation error, shaped as in KeyStone's 422 list
// (KeyStone API, HTTP status codes): {"loc": ["body", "amount"], "msg": "Field required", "type": "missing"}.
type fieldError struct {
	Loc  []string `json:"loc"`
	Msg  string   `json:"msg"`
	Type string   `json:"type"`
}

func parsePayment(body io.Reader, keyInBody bool) paymentRequest {
	var p paymentRequest
	raw, err := io.ReadAll(io.LimitReader(body, maxBody+1))
	p.raw = raw
	var fields map[string]json.RawMessage
	if err != nil || len(raw) > maxBody || json.Unmarshal(raw, &fields) != nil || fields == nil {
		p.malformed = true
		return p
	}
	if ref, ok := p.text(fields, "reference", true); ok {
		if ref == "" {
			p.fail("reference", "String should have at least 1 character", "string_too_short")
		}
		p.reference = ref
	}
	switch raw, ok := fields["amount"]; {
	case !ok:
		p.fail("amount", "Field required", "missing")
	case string(raw) == "null" || json.Unmarshal(raw, &p.amount) != nil:
		p.fail("amount", "Input should be a valid integer", "int_type")
	case p.amount <= 0:
		p.fail("amount", "Input should be greater than 0", "greater_than")
	}
	if cur, ok := p.text(fields, "currency", true); ok {
		if !isCurrency(cur) {
			p.fail("currency", "String should match pattern '^[A-Z]{3}$'", "string_pattern_mismatch")
		}
		p.currency = cur
	}
	if keyInBody {
		p.key, _ = p.text(fields, "idempotency_key", false)
	}
	return p
}

// text reads a string field.
func (p *paymentRequest) text(fields map[string]json.RawMessage, name string, required bool) (string, bool) {
	raw, ok := fields[name]
	if !ok {
		if required {
			p.fail(name, "Field required", "missing")
		}
		return "", false
	}
	var v string
	if string(raw) == "null" || json.Unmarshal(raw, &v) != nil {
		p.fail(name, "Input should be a valid string", "string_type")
		return "", false
	}
	return v, true
}

func (p *paymentRequest) fail(field, msg, typ string) {
	p.invalid = append(p.invalid, fieldError{Loc: []string{"body", field}, Msg: msg, Type: typ})
}

// fingerprint identifies the payload, to detect a key reused with another one.
func (p paymentRequest) fingerprint() string {
	if p.malformed || len(p.invalid) > 0 {
		return "raw\x00" + string(p.raw)
	}
	return fmt.Sprintf("%s\x00%d\x00%s", p.reference, p.amount, p.currency)
}

func isCurrency(c string) bool {
	return len(c) == 3 && strings.Trim(c, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") == ""
}

// outcome is how the provider handled a payment request afresh.
type outcome struct {
	resp  response // the provider's answer: what a replay of the key returns
	fault Fault    // the fault drawn, "" if none
}

// createPayment handles a POST to the payment endpoint.
func (s *Server) createPayment(w http.ResponseWriter, ex *exchange) {
	if ex.n >= 0 {
		if ph, ok := s.plan.phaseAt(s.now().Sub(s.start)); ok {
			if ph.Latency > 0 {
				s.noteFault(ex, FaultPhaseLatency)
				s.hold(ex.r.Context(), ph.Latency)
			}
			if s.plan.dropped(ph, ex.pay.reference, ex.n) {
				s.noteFault(ex, FaultDrop)
				s.abort(w, ex, "")
				return
			}
		}
	}
	if ex.n >= 0 && s.plan.delayed(ex.pay.reference, ex.n) {
		s.noteFault(ex, FaultLatency)
		s.hold(ex.r.Context(), s.plan.Latency)
	}
	if ex.key == "" {
		// No key, no deduplication: what a naive client gets.
		s.respond(w, ex, s.process(ex))
		return
	}
	// ORZCash Access API, 4.3 Idempotency: "Idempotency-Key: A UUID key used to serve as request level idempotency".
	if s.p == ORZCash && !isUUID(ex.key) {
		s.send(w, ex, s.p.errorResponse(http.StatusBadRequest, codeInvalidKey, "Idempotency-Key must be a UUID"))
		return
	}
	state, stored, paymentID := s.claim(ex.key, ex.pay.fingerprint())
	switch state {
	case keyReplay:
		// ORZCash Access API, 4.3 Idempotency: "the original response will be returned";
		// Verto API, Errors and Retries: "will return the original success/failure".
		s.send(w, ex, s.replay(stored))
	case keyMismatch:
		s.send(w, ex, s.mismatch())
	case keyInFlight:
		s.send(w, ex, s.conflict(paymentID))
	default:
		s.respond(w, ex, s.process(ex))
	}
}

// process validates and executes a payment request, drawing its fault.
func (s *Server) process(ex *exchange) outcome {
	p := ex.pay
	switch {
	case p.malformed:
		return outcome{resp: s.p.errorResponse(http.StatusBadRequest, codeValidation, msgMalformed)}
	case len(p.invalid) > 0:
		return outcome{resp: s.invalidResponse(p.invalid)}
	}
	if resp, ok := s.decline(p); ok {
		return outcome{resp: resp}
	}
	fault := s.plan.pick(p.reference, ex.n)
	if fault != "" {
		s.noteFault(ex, fault)
	}
	switch fault {
	case FaultFailBefore:
		return outcome{s.serverError(s.plan.status(p.reference, ex.n, 500, 503)), fault}
	case FaultRateLimited:
		resp := s.p.errorResponse(http.StatusTooManyRequests, codeRateLimited, msgRateLimited)
		resp.header.Set("Retry-After", "1")
		return outcome{resp, fault}
	}
	pay := s.execute(ex)
	return outcome{jsonResponse(http.StatusCreated, "application/json", createdView{pay.ID, pay.Reference, "executed"}), fault}
}

// respond answers a request handled afresh, applying the fault's effect on
// the way out, and releases its key.
func (s *Server) respond(w http.ResponseWriter, ex *exchange, out outcome) {
	answer, reset := out.resp, false
	switch out.fault {
	case FaultStall:
		s.hold(ex.r.Context(), s.plan.stallFor())
	case FaultReset:
		reset = true
	case FaultFailAfter:
		if s.p == ORZCash {
			// ORZCash documents that a 5xx is replayed for its key and must be retried with a new
			// key (ORZCash Access API, 3.2 Responses), which is only safe if a 5xx means "not executed".
			// A 5xx after executing would make its documented client pay twice, so the fault is an
			// unknown outcome instead: the client must retry with the same key (ORZCash Access API,
			// 4.3 Idempotency: "If you experience network errors ... use this feature").
			reset = true
		} else {
			answer = s.serverError(s.plan.status(ex.pay.reference, ex.n, 500, 502, 503))
		}
	}
	if ex.key != "" {
		s.release(ex.key, out.resp)
	}
	if reset {
		s.reset(w, ex)
		return
	}
	s.send(w, ex, answer)
}

// serverError is a 500, 502 or 503 in the provider's format; a 503 carries
// Retry-After: 1, and so do the others with FaultPlan.RetryAfter5xx.
func (s *Server) serverError(status int) response {
	var resp response
	switch status {
	case http.StatusBadGateway:
		resp = s.p.errorResponse(status, codeBadGateway, "Bad gateway")
	case http.StatusServiceUnavailable:
		resp = s.p.errorResponse(status, codeUnavailable, "Service temporarily unavailable")
		resp.header.Set("Retry-After", "1")
	default:
		resp = s.p.errorResponse(http.StatusInternalServerError, codeInternal, "Internal server error")
	}
	if s.plan.RetryAfter5xx {
		resp.header.Set("Retry-After", "1")
	}
	return resp
}

// invalidResponse answers field validation errors.
func (s *Server) invalidResponse(errs []fieldError) response {
	if s.p == KeyStone {
		// KeyStone API, HTTP status codes: "For validation errors (422): {"detail": [{"loc": ...,
		// "msg": "Field required", "type": "missing"}]}". Its status table also files "missing
		// required fields" under 400; the worked example is followed.
		return jsonResponse(http.StatusUnprocessableEntity, "application/json", keystoneError{errs})
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Loc[len(e.Loc)-1] + ": " + e.Msg
	}
	// Verto API, Errors and Retries: "VALIDATION_ERROR 400 ... field-level validation messages".
	return s.p.errorResponse(http.StatusBadRequest, codeValidation, strings.Join(msgs, "; "))
}

// decline returns the provider's refusal of a valid payment it will not
// execute. Triggers, for every provider: currency "XXX" (invalid currency) and
// an amount above MaxAmount (insufficient funds). For Verto also: currency
// "KPW" (route not available), a reference starting "nowallet-" (wallet not
// found) and one starting "rfi-" (compliance review).
func (s *Server) decline(p paymentRequest) (response, bool) {
	refuse := func(status int, code, msg string) (response, bool) {
		return s.p.errorResponse(status, code, msg), true
	}
	// KeyStone API, HTTP status codes: "422 Validation error: Valid JSON but business rule violated";
	// the others answer 400 (Verto API, Errors and Retries: INSUFFICIENT_FUNDS and INVALID_CURRENCY are 400).
	rule := http.StatusBadRequest
	if s.p == KeyStone {
		rule = http.StatusUnprocessableEntity
	}
	switch {
	case p.currency == "XXX":
		return refuse(rule, codeInvalidCurrency, "Currency XXX is not supported")
	case p.amount > MaxAmount:
		return refuse(rule, codeInsufficientFunds, "Insufficient funds")
	case s.p != Verto:
		return response{}, false
	case p.currency == "KPW":
		// Verto API, Errors and Retries: "ROUTE_NOT_AVAILABLE 403 Region blocked."
		return refuse(http.StatusForbidden, codeRouteNotAvailable, "Payout route to KPW is not available")
	case strings.HasPrefix(p.reference, "nowallet-"):
		// Verto API, Errors and Retries: "WALLET_NOT_FOUND 404 Missing ID."
		return refuse(http.StatusNotFound, codeWalletNotFound, "Wallet not found")
	case strings.HasPrefix(p.reference, "rfi-"):
		// Verto API, Errors and Retries: "Compliance review or RFI open: No [retry]. Pause the
		// workflow". The document names no status; 409 says the payout's state, not the request, is
		// the problem, and no provider retries a 409. Cached like any definitive answer.
		return refuse(http.StatusConflict, codeRFIRequired, "Compliance review: request for information open")
	}
	return response{}, false
}

type createdView struct {
	ID        string `json:"id"`
	Reference string `json:"reference"`
	Status    string `json:"status"`
}

type paymentView struct {
	ID        string    `json:"id"`
	Reference string    `json:"reference"`
	Amount    int64     `json:"amount"`
	Currency  string    `json:"currency"`
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
}

// lookup answers the status lookup of a reference (or provider id).
func (s *Server) lookup(w http.ResponseWriter, ex *exchange, ref string) {
	pay, ok := s.find(ref)
	if !ok {
		s.send(w, ex, s.p.errorResponse(http.StatusNotFound, codeNotFound, s.noun()+" not found"))
		return
	}
	s.send(w, ex, jsonResponse(http.StatusOK, "application/json", paymentView{
		ID: pay.ID, Reference: pay.Reference, Amount: pay.Amount, Currency: pay.Currency,
		Status: "executed", CreatedAt: pay.At,
	}))
}

func (s *Server) noun() string {
	switch s.p {
	case ORZCash:
		return "Transfer"
	case Verto:
		return "Payout"
	case KeyStone:
		return "Settlement"
	}
	return "Payment"
}

// settlementAction answers KeyStone's POST /v1/settlements/{id}/{action}. An
// executed settlement has passed compliance and is not cross-platform, so the
// documented 409s answer.
func (s *Server) settlementAction(w http.ResponseWriter, ex *exchange, id, action string) {
	var conflict string
	switch action {
	case "compliance-decision":
		// KeyStone API, HTTP status codes: "// 409 {"detail": "Settlement is not awaiting a compliance decision"}".
		conflict = "Settlement is not awaiting a compliance decision"
	case "confirm", "reject":
		// KeyStone API, HTTP status codes: "// 409 {"detail": "Settlement is not cross-platform"}".
		conflict = "Settlement is not cross-platform"
	default:
		s.send(w, ex, s.p.errorResponse(http.StatusNotFound, codeNotFound, "Not Found"))
		return
	}
	if ex.r.Method != http.MethodPost {
		s.send(w, ex, s.methodNotAllowed(http.MethodPost))
		return
	}
	if _, ok := s.find(id); !ok {
		s.send(w, ex, s.p.errorResponse(http.StatusNotFound, codeNotFound, "Settlement not found"))
		return
	}
	s.send(w, ex, s.p.errorResponse(http.StatusConflict, codeConflict, conflict))
}

// paymentAction answers SmartRetry's capture, refund and void, which take
// {"reference": "..."} of an executed sale. They exist for the payment rate
// limit class; they change no state.
func (s *Server) paymentAction(w http.ResponseWriter, ex *exchange, action string) {
	var body struct {
		Reference string `json:"reference"`
	}
	if err := json.NewDecoder(io.LimitReader(ex.r.Body, maxBody)).Decode(&body); err != nil {
		s.send(w, ex, s.p.errorResponse(http.StatusBadRequest, codeValidation, msgMalformed))
		return
	}
	if body.Reference == "" {
		s.send(w, ex, s.p.errorResponse(http.StatusBadRequest, codeValidation, "reference: Field required"))
		return
	}
	pay, ok := s.find(body.Reference)
	if !ok {
		s.send(w, ex, s.p.errorResponse(http.StatusNotFound, codeNotFound, "Payment not found"))
		return
	}
	past := map[string]string{"capture": "captured", "refund": "refunded", "void": "voided"}[action]
	s.send(w, ex, jsonResponse(http.StatusOK, "application/json", createdView{pay.ID, pay.Reference, past}))
}
