package payretrytest

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"
)

// Payment is one executed payment, as recorded in a Server's ledger.
type Payment struct {
	// Reference is the client's reference, the "reference" field of the request body.
	Reference string
	// IdempotencyKey is the key the executing request carried, "" if none.
	IdempotencyKey string
	// Amount is in minor units (cents), the "amount" field of the request body.
	Amount int64
	// Currency is the ISO 4217 code of the request body.
	Currency string
	// ID is the provider's transaction id, such as "trf_000001".
	ID string
	// At is the execution time on the server's Clock.
	At time.Time
}

// Attempt is one payment-creating request as the server received it,
// whatever became of it (rate limited, rejected, replayed or executed).
type Attempt struct {
	// IdempotencyKey is the key the request carried, "" if none.
	IdempotencyKey string
	// CorrelationID is the request's Vfx-Correlation-Id header, "" if none.
	CorrelationID string
	// At is the arrival time on the server's Clock.
	At time.Time
	// Fault is the fault injected into this request, "" if none; FaultLatency
	// and FaultPhaseLatency are reported by Delayed instead.
	Fault Fault
	// Delayed reports whether the request got the plan's Latency or a
	// Phase's.
	Delayed bool
	// Status is the status answered, 0 when the connection was reset or the
	// request is still being handled.
	Status int
}

// Stats are a Server's counters since it started.
type Stats struct {
	// Requests counts all requests received.
	Requests int
	// Payments counts payment-creating requests (POSTs to the payment endpoint).
	Payments int
	// Executions counts executed payments, duplicates included.
	Executions int
	// Replays counts responses served from the idempotency store.
	Replays int
	// Conflicts counts 409 answers to a key whose first request was in flight.
	Conflicts int
	// RateLimited counts 429 answers, from the rate limiter and from faults.
	RateLimited int
	// ByStatus counts answers per status; 0 counts connection resets.
	ByStatus map[int]int
	// Faults counts injected faults per kind.
	Faults map[Fault]int
	// MaxConcurrent is the most requests handled at once.
	MaxConcurrent int
}

// Ledger returns a copy of the executed payments, in execution order.
func (s *Server) Ledger() []Payment {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ledger)
}

// Executions returns how many times the payment with this client reference
// was executed: 1 is right, more is a double payment.
func (s *Server) Executions(reference string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.executed[reference]
}

// Duplicates returns the number of extra executions: for each reference
// executed n > 1 times, n-1. Zero means no payment was made twice.
func (s *Server) Duplicates() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	extra := 0
	for _, n := range s.executed {
		extra += max(0, n-1)
	}
	return extra
}

// Stats returns a snapshot of the server's counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.ByStatus = maps.Clone(s.stats.ByStatus)
	st.Faults = maps.Clone(s.stats.Faults)
	return st
}

// Attempts returns the payment-creating requests that carried this reference,
// in arrival order.
func (s *Server) Attempts(reference string) []Attempt {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.attempts[reference])
}

// KeysSeen returns the idempotency key carried by every payment-creating
// request for this reference, in arrival order ("" for a request without one).
func (s *Server) KeysSeen(reference string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.attempts[reference]))
	for _, a := range s.attempts[reference] {
		keys = append(keys, a.IdempotencyKey)
	}
	return keys
}

// open registers the arrival of r. A payment request's body is read and
// parsed here, so that the attempt is recorded even when the edge refuses it.
func (s *Server) open(r *http.Request) *exchange {
	ex := &exchange{r: r, path: r.URL.EscapedPath(), n: -1}
	ex.payment = r.Method == http.MethodPost && ex.path == PaymentPath(s.p)
	if ex.payment {
		ex.pay = parsePayment(r.Body, s.p == KeyStone)
		ex.key = ex.pay.key
		if s.p != KeyStone {
			ex.key = r.Header.Get("Idempotency-Key")
		}
	}
	now := s.now()

	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Requests++
	s.calls++
	ex.call = s.calls
	s.active++
	s.stats.MaxConcurrent = max(s.stats.MaxConcurrent, s.active)
	if !ex.payment {
		return ex
	}
	s.stats.Payments++
	if ref := ex.pay.reference; ref != "" {
		ex.n = len(s.attempts[ref])
		s.attempts[ref] = append(s.attempts[ref], Attempt{
			IdempotencyKey: ex.key,
			CorrelationID:  r.Header.Get("Vfx-Correlation-Id"),
			At:             now,
		})
	}
	return ex
}

// finish records the end of ex.
func (s *Server) finish(ex *exchange) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ex.finished {
		return
	}
	ex.finished = true
	s.active--
	s.stats.ByStatus[ex.status]++
	if ex.status == http.StatusTooManyRequests {
		s.stats.RateLimited++
	}
	if a := s.attempt(ex); a != nil {
		a.Status = ex.status
	}
}

// noteFault counts a fault injected into ex.
func (s *Server) noteFault(ex *exchange, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Faults[f]++
	if a := s.attempt(ex); a != nil {
		if f == FaultLatency || f == FaultPhaseLatency {
			a.Delayed = true
		} else {
			a.Fault = f
		}
	}
}

// attempt returns the record of ex, or nil. s.mu must be held.
func (s *Server) attempt(ex *exchange) *Attempt {
	if ex.n < 0 {
		return nil
	}
	return &s.attempts[ex.pay.reference][ex.n]
}

// execute records a payment in the ledger. s.mu must not be held.
func (s *Server) execute(ex *exchange) Payment {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	pay := Payment{
		Reference:      ex.pay.reference,
		IdempotencyKey: ex.key,
		Amount:         ex.pay.amount,
		Currency:       ex.pay.currency,
		ID:             fmt.Sprintf("%s%06d", s.p.idPrefix(), len(s.ledger)+1),
		At:             now,
	}
	s.ledger = append(s.ledger, pay)
	s.executed[pay.Reference]++
	s.stats.Executions++
	if e := s.keys[ex.key]; ex.key != "" && e != nil {
		e.paymentID = pay.ID
	}
	return pay
}

// find returns the first payment executed with this reference or provider id.
func (s *Server) find(ref string) (Payment, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.ledger {
		if p.Reference == ref || p.ID == ref {
			return p, true
		}
	}
	return Payment{}, false
}
