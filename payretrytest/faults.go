package payretrytest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"time"
)

// Fault names a kind of injected failure, as counted in Stats.Faults and
// reported in Attempt.Fault.
type Fault string

// The fault kinds of a FaultPlan.
const (
	// FaultFailBefore is a 500 or 503 answered without executing the payment.
	FaultFailBefore Fault = "fail_before"
	// FaultFailAfter is a payment executed and then answered with a 500, 502 or
	// 503 (ORZCash: a connection reset; see FaultPlan).
	FaultFailAfter Fault = "fail_after"
	// FaultStall is a payment executed and then answered only after FaultPlan.StallFor.
	FaultStall Fault = "stall"
	// FaultReset is a payment executed and then a connection reset mid-response.
	FaultReset Fault = "reset"
	// FaultRateLimited is a 429 with Retry-After: 1, without executing.
	FaultRateLimited Fault = "rate_limited"
	// FaultLatency is added latency before the request is handled.
	FaultLatency Fault = "latency"
	// FaultOutage is a 503 with Retry-After: 1 inside one of FaultPlan.Outages.
	FaultOutage Fault = "outage"
	// FaultPhaseLatency is a Phase's latency, added before the request is handled.
	FaultPhaseLatency Fault = "phase_latency"
	// FaultDrop is a connection closed without an answer, before the request
	// is handled, inside one of FaultPlan.Phases.
	FaultDrop Fault = "drop"
)

// Window is a period relative to the server's start, as read from its Clock:
// it covers the instants t with Start <= t-start < End.
type Window struct{ Start, End time.Duration }

// Phase is a period of degraded service, relative to the server's start like
// Outages: every payment request that arrives within it waits Latency before
// it is handled, and then a seeded Drop fraction of them lose their
// connection, unhandled: neither executed nor answered, whatever their key.
// Drops draw from (Seed, reference, n) like the plan's other faults, so the
// same requests are dropped in every run that sends them within the phase.
type Phase struct {
	Window
	// Latency is added, on the real clock, before handling each payment
	// request that arrives in the phase.
	Latency time.Duration
	// Drop is the fraction of payment requests in the phase whose connection
	// is closed without a byte of answer.
	Drop float64
}

// FaultPlan is a seeded, reproducible fault injection. The zero value injects
// no faults.
//
// Faults hit payment-creating POSTs only; status lookups and other endpoints
// stay healthy, except during Outages, which hit every request. A request whose
// idempotency key already has a stored response gets that response: a fault
// never changes the answer to a replay. Nor does a fault hit a request that
// fails validation or is declined. Latency is the exception: it delays any
// payment request it draws, replays included.
//
// Each payment request draws at most one of FailBefore, RateLimited, FailAfter,
// Stall and Reset, with those probabilities (their sum must not exceed 1), and
// independently Latency with probability LatencyRate. A draw is a hash of
// (Seed, the request's reference, n), where n counts the earlier payment
// requests with that reference, so the same seed and the same sequence of
// requests per reference give the same faults however requests for different
// references interleave.
//
// ORZCash's document promises that a 5xx is stored under its key and that a
// retry must use a new key (ORZCash Access API, 3.2 Responses); it thereby promises
// that a 5xx means "not executed", since a new key after an executed payment
// pays twice. A FailAfter on ORZCash is therefore a connection reset after the
// execution (an unknown outcome, which a careful client retries with the same
// key and gets the stored success), not a 5xx.
type FaultPlan struct {
	// Seed selects the fault sequence.
	Seed int64
	// FailBefore is the fraction of payments answered 500 or 503 without
	// executing (with Retry-After: 1 on a 503).
	FailBefore float64
	// RetryAfter5xx puts Retry-After: 1 on the injected 500s and 502s too
	// (FailBefore, FailAfter), not only on the 503s.
	RetryAfter5xx bool
	// FailAfter is the fraction of payments executed and then answered 500,
	// 502 or 503; the success is stored under the key, so a retry with the same
	// key gets it. On ORZCash the answer is a connection reset instead.
	FailAfter float64
	// Stall is the fraction of payments executed and then answered normally
	// after StallFor, or earlier when the client goes away or the server
	// closes. Meanwhile the key is in flight: a second request with it gets 409.
	Stall float64
	// StallFor is how long a stall holds the response; 0 means 2 s.
	StallFor time.Duration
	// Reset is the fraction of payments executed and then answered with a
	// partial status line and a TCP reset.
	Reset float64
	// RateLimited is the fraction of payments answered 429 with Retry-After: 1
	// in the provider's format, without executing.
	RateLimited float64
	// Latency is added, on the real clock, before handling a payment request.
	Latency time.Duration
	// LatencyRate is the fraction of payment requests that get Latency.
	LatencyRate float64
	// Outages are periods, relative to the server's start on its Clock, during
	// which every request is answered 503 with Retry-After: 1, unexecuted.
	Outages []Window
	// Phases are periods, relative to the server's start on its Clock, of
	// added latency and dropped connections for payment requests, replays
	// included. Where phases overlap, the first one listed applies.
	Phases []Phase
}

const defaultStallFor = 2 * time.Second

// validate reports the first field of p that is out of range.
func (p FaultPlan) validate() error {
	sum := 0.0
	for _, f := range []struct {
		name string
		v    float64
	}{
		{"FailBefore", p.FailBefore}, {"FailAfter", p.FailAfter}, {"Stall", p.Stall},
		{"Reset", p.Reset}, {"RateLimited", p.RateLimited}, {"LatencyRate", p.LatencyRate},
	} {
		if !(f.v >= 0 && f.v <= 1) { // also rejects NaN
			return fmt.Errorf("FaultPlan.%s = %v, want a fraction in [0, 1]", f.name, f.v)
		}
		if f.name != "LatencyRate" {
			sum += f.v
		}
	}
	if sum > 1+1e-9 {
		return fmt.Errorf("FaultPlan fractions sum to %v, want at most 1", sum)
	}
	if p.StallFor < 0 || p.Latency < 0 {
		return errors.New("FaultPlan.StallFor and FaultPlan.Latency must not be negative")
	}
	for i, w := range p.Outages {
		if w.End < w.Start {
			return fmt.Errorf("FaultPlan.Outages[%d] ends before it starts", i)
		}
	}
	for i, ph := range p.Phases {
		switch {
		case ph.End < ph.Start:
			return fmt.Errorf("FaultPlan.Phases[%d] ends before it starts", i)
		case ph.Latency < 0:
			return fmt.Errorf("FaultPlan.Phases[%d].Latency must not be negative", i)
		case !(ph.Drop >= 0 && ph.Drop <= 1):
			return fmt.Errorf("FaultPlan.Phases[%d].Drop = %v, want a fraction in [0, 1]", i, ph.Drop)
		}
	}
	return nil
}

// Salts keep the draws of one request independent of each other.
const (
	saltFault byte = iota + 1
	saltLatency
	saltStatus
	saltDrop
)

// draw returns a number in [0, 1) that depends only on the seed, the salt,
// the reference and n.
func (p FaultPlan) draw(salt byte, reference string, n int) float64 {
	h := fnv.New64a()
	var buf [8]byte
	binary.LittleEndian.PutUint64(buf[:], uint64(p.Seed))
	h.Write(buf[:])
	h.Write([]byte{salt})
	h.Write([]byte(reference))
	binary.LittleEndian.PutUint64(buf[:], uint64(n))
	h.Write(buf[:])
	// splitmix64's finalizer spreads FNV's weak low bits over the word.
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11) / (1 << 53)
}

// pick returns the fault for the n-th payment request with this reference, or
// "" for none.
func (p FaultPlan) pick(reference string, n int) Fault {
	u := p.draw(saltFault, reference, n)
	for _, f := range []struct {
		kind Fault
		frac float64
	}{
		{FaultFailBefore, p.FailBefore}, {FaultRateLimited, p.RateLimited},
		{FaultFailAfter, p.FailAfter}, {FaultStall, p.Stall}, {FaultReset, p.Reset},
	} {
		if u < f.frac {
			return f.kind
		}
		u -= f.frac
	}
	return ""
}

// delayed reports whether the n-th payment request with this reference gets
// the plan's Latency.
func (p FaultPlan) delayed(reference string, n int) bool {
	return p.Latency > 0 && p.draw(saltLatency, reference, n) < p.LatencyRate
}

// status picks one of choices for the n-th request with this reference.
func (p FaultPlan) status(reference string, n int, choices ...int) int {
	i := int(p.draw(saltStatus, reference, n) * float64(len(choices)))
	return choices[min(i, len(choices)-1)]
}

// inOutage reports whether the instant `since` after the server's start falls
// in one of the outage windows.
func (p FaultPlan) inOutage(since time.Duration) bool {
	for _, w := range p.Outages {
		if since >= w.Start && since < w.End {
			return true
		}
	}
	return false
}

// phaseAt returns the first phase that covers the instant `since` after the
// server's start.
func (p FaultPlan) phaseAt(since time.Duration) (Phase, bool) {
	for _, ph := range p.Phases {
		if since >= ph.Start && since < ph.End {
			return ph, true
		}
	}
	return Phase{}, false
}

// dropped reports whether phase ph drops the n-th payment request with this
// reference.
func (p FaultPlan) dropped(ph Phase, reference string, n int) bool {
	return ph.Drop > 0 && p.draw(saltDrop, reference, n) < ph.Drop
}

// stallFor is StallFor with its default applied.
func (p FaultPlan) stallFor() time.Duration {
	if p.StallFor == 0 {
		return defaultStallFor
	}
	return p.StallFor
}
