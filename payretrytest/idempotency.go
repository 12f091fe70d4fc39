package payretrytest

import (
	"net/http"
	"time"
)

// keyTTL is how long a stored response answers for its key.
// ORZCash Access API, 4.3 Idempotency: "re-send it for every request for the same idempotency
// key for 24H"; Verto API, Errors and Retries: "Verto caches the result for 24 hours".
// KeyStone (KeyStone API, HTTP status codes) and SmartRetry (SmartRetry docs, Rate limits) name no
// period; they get the same 24 h.
const keyTTL = 24 * time.Hour

// keyEntry is the state of one idempotency key: in flight while its first
// request is handled, then done with the stored response.
type keyEntry struct {
	fingerprint string // the payload the key was first used with
	done        bool
	resp        response // stored answer, when done
	storedAt    time.Time
	paymentID   string // once the first request executed
}

type keyState int

const (
	keyNew      keyState = iota // first use (or the stored response expired): handle the request
	keyReplay                   // a stored response answers
	keyInFlight                 // the first request with this key is still being handled
	keyMismatch                 // the key was first used with another payload
)

// claim looks key up for a request with this payload fingerprint. For keyNew
// the key is now in flight and the caller must release it. For keyReplay it
// returns the stored response; for keyInFlight the payment id, if the first
// request already executed.
func (s *Server) claim(key, fingerprint string) (keyState, response, string) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.keys[key]
	if e != nil && e.done && !now.Before(e.storedAt.Add(keyTTL)) {
		delete(s.keys, key)
		e = nil
	}
	switch {
	case e == nil:
		s.keys[key] = &keyEntry{fingerprint: fingerprint}
		return keyNew, response{}, ""
	case e.fingerprint != fingerprint:
		return keyMismatch, response{}, ""
	case !e.done:
		s.stats.Conflicts++
		return keyInFlight, response{}, e.paymentID
	}
	s.stats.Replays++
	return keyReplay, e.resp.clone(), ""
}

// storedFor returns the response stored for key, if it has one that
// answers a request with this payload fingerprint.
func (s *Server) storedFor(key, fingerprint string) (response, bool) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.keys[key]
	if e == nil || !e.done || e.fingerprint != fingerprint || !now.Before(e.storedAt.Add(keyTTL)) {
		return response{}, false
	}
	s.stats.Replays++
	return e.resp.clone(), true
}

// keep stores resp for key, unless the key is already known.
func (s *Server) keep(key, fingerprint string, resp response) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.keys[key]; e != nil && (!e.done || now.Before(e.storedAt.Add(keyTTL))) {
		return
	}
	s.keys[key] = &keyEntry{fingerprint: fingerprint, done: true, resp: resp, storedAt: now}
}

// release ends the in-flight state of a key claimed as keyNew: it stores resp
// when the provider keeps answers with its status, else forgets the key so
// that a retry with it is handled afresh.
func (s *Server) release(key string, resp response) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.keys[key]
	if e == nil {
		return
	}
	if !s.p.stores(resp.status) {
		delete(s.keys, key)
		return
	}
	e.done, e.resp, e.storedAt = true, resp, now
}

// replay adapts a stored response for a repeated request.
func (s *Server) replay(stored response) response {
	if s.p == KeyStone {
		// KeyStone API, HTTP status codes: "Subsequent calls: returns the existing settlement (200)".
		stored.status = http.StatusOK
	}
	return stored
}

// conflict answers a request whose key is in flight. The IETF Idempotency-Key
// draft (draft-ietf-httpapi-idempotency-key-header, "Error Scenarios") answers
// 409 for a retry while the original request is still being processed; all four
// providers do so, each in its own format, rather than waiting.
func (s *Server) conflict(paymentID string) response {
	if s.p == SmartRetry && paymentID != "" {
		// SmartRetry docs, Rate limits: "a 409 Conflict with an idempotency key often means the
		// original request succeeded. Check the response body for the transaction ID".
		return jsonResponse(http.StatusConflict, "application/problem+json", problem{
			Type:          problemType(codeConflict),
			Title:         http.StatusText(http.StatusConflict),
			Status:        http.StatusConflict,
			Detail:        msgInFlight,
			ReasonCode:    codeConflict,
			TransactionID: paymentID,
		})
	}
	return s.p.errorResponse(http.StatusConflict, codeConflict, msgInFlight)
}

// mismatch answers a key reused with another payload: 422, as the IETF
// Idempotency-Key draft says ("If there is an attempt to reuse an idempotency
// key with a different request payload, the resource server SHOULD reply with
// HTTP 422"). None of the four documents covers the case.
func (s *Server) mismatch() response {
	return s.p.errorResponse(http.StatusUnprocessableEntity, codeKeyReused, msgKeyReused)
}

// isUUID reports whether k has the 8-4-4-4-12 hex form of a UUID.
func isUUID(k string) bool {
	if len(k) != 36 {
		return false
	}
	for i := range len(k) {
		c := k[i]
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
		default:
			return false
		}
	}
	return true
}
