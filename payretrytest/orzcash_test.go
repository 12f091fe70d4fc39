package payretrytest_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/payretry/payretry/payretrytest"
)

func TestORZCashReplaysStored5xxUntilItExpires(t *testing.T) {
	clk := newClock()
	s := payretrytest.NewServer(payretrytest.ORZCash, payretrytest.Options{
		Clock: clk.Now,
		Plan:  payretrytest.FaultPlan{Seed: 1, FailBefore: 1},
	})
	defer s.Close()
	key := headers{"Idempotency-Key": newUUID(t)}

	first := must(t, s, http.MethodPost, s.PaymentURL(), pay("ref-1"), key)
	require.Contains(t, []int{500, 503}, first.status)
	assert.Equal(t, "application/json", first.header.Get("Content-Type"))
	assert.NotEmpty(t, first.str("code"))
	assert.NotEmpty(t, first.str("message"))

	clk.Add(24*time.Hour - time.Second)
	second := must(t, s, http.MethodPost, s.PaymentURL(), pay("ref-1"), key)
	assert.Equal(t, first.status, second.status, "the 5xx is replayed")
	assert.Equal(t, first.raw, second.raw)
	st := s.Stats()
	assert.Equal(t, 1, st.Faults[payretrytest.FaultFailBefore], "a replay draws no fault")
	assert.Equal(t, 1, st.Replays)
	assert.Empty(t, s.Ledger())

	clk.Add(time.Second)
	must(t, s, http.MethodPost, s.PaymentURL(), pay("ref-1"), key)
	st = s.Stats()
	assert.Equal(t, 2, st.Faults[payretrytest.FaultFailBefore], "after 24 h the key is handled afresh")
	assert.Equal(t, 1, st.Replays)
}

func TestORZCashReplaysSuccessFor24Hours(t *testing.T) {
	clk := newClock()
	s := payretrytest.NewServer(payretrytest.ORZCash, payretrytest.Options{Clock: clk.Now})
	defer s.Close()
	key := headers{"Idempotency-Key": newUUID(t)}

	first := must(t, s, http.MethodPost, s.PaymentURL(), pay("ref-1"), key)
	require.Equal(t, http.StatusCreated, first.status)
	assert.Equal(t, "executed", first.str("status"))
	assert.Equal(t, "ref-1", first.str("reference"))

	clk.Add(24*time.Hour - time.Nanosecond)
	again := must(t, s, http.MethodPost, s.PaymentURL(), pay("ref-1"), key)
	assert.Equal(t, http.StatusCreated, again.status)
	assert.Equal(t, first.raw, again.raw)
	assert.Equal(t, 1, s.Executions("ref-1"))

	clk.Add(time.Nanosecond)
	late := must(t, s, http.MethodPost, s.PaymentURL(), pay("ref-1"), key)
	assert.Equal(t, http.StatusCreated, late.status)
	assert.NotEqual(t, first.str("id"), late.str("id"), "an expired key executes again")
	assert.Equal(t, 2, s.Executions("ref-1"))
	assert.Equal(t, 1, s.Duplicates())
}

func TestORZCashFailAfterIsAnUnknownOutcome(t *testing.T) {
	s := payretrytest.NewServer(payretrytest.ORZCash, payretrytest.Options{
		Plan: payretrytest.FaultPlan{Seed: 1, FailAfter: 1},
	})
	defer s.Close()
	c := freshClient(5 * time.Second)
	key := headers{"Idempotency-Key": newUUID(t)}

	_, err := do(t.Context(), c, http.MethodPost, s.PaymentURL(), pay("ref-1"), key)
	require.Error(t, err, "no 5xx: a reset")
	assert.Equal(t, 1, s.Executions("ref-1"))
	assert.Equal(t, 1, s.Stats().ByStatus[0])
	assert.Equal(t, 1, s.Stats().Faults[payretrytest.FaultFailAfter])

	same, err := do(t.Context(), c, http.MethodPost, s.PaymentURL(), pay("ref-1"), key)
	require.NoError(t, err)
	assert.Equal(t, http.StatusCreated, same.status, "the same key gets the stored success")
	assert.Equal(t, 1, s.Executions("ref-1"))

	_, err = do(t.Context(), c, http.MethodPost, s.PaymentURL(), pay("ref-1"), headers{"Idempotency-Key": newUUID(t)})
	require.Error(t, err)
	assert.Equal(t, 2, s.Executions("ref-1"), "a new key after an unknown outcome pays twice")
	assert.Equal(t, 1, s.Duplicates())
}

func TestORZCashKeys(t *testing.T) {
	s := payretrytest.NewServer(payretrytest.ORZCash, payretrytest.Options{})
	defer s.Close()

	bad := must(t, s, http.MethodPost, s.PaymentURL(), pay("ref-1"), headers{"Idempotency-Key": "order-1"})
	assert.Equal(t, http.StatusBadRequest, bad.status)
	assert.Equal(t, "INVALID_IDEMPOTENCY_KEY", bad.str("code"))
	assert.Zero(t, s.Executions("ref-1"))

	for range 2 {
		r := must(t, s, http.MethodPost, s.PaymentURL(), pay("ref-1"), nil)
		assert.Equal(t, http.StatusCreated, r.status)
	}
	assert.Equal(t, 2, s.Executions("ref-1"), "without a key every POST executes")
	assert.Equal(t, []string{"order-1", "", ""}, s.KeysSeen("ref-1"))

	found := must(t, s, http.MethodGet, s.StatusURL("ref-1"), nil, nil)
	assert.Equal(t, http.StatusOK, found.status)
	assert.Equal(t, "ref-1", found.str("reference"))
	assert.Equal(t, "EUR", found.str("currency"))
	assert.EqualValues(t, 1000, found.body["amount"])
	missing := must(t, s, http.MethodGet, s.StatusURL("nope"), nil, nil)
	assert.Equal(t, http.StatusNotFound, missing.status)
	assert.Equal(t, "NOT_FOUND", missing.str("code"))
}

// ORZCash Access API, 4.3 Idempotency: "For any request with the
// Idempotency-Key header, we will store the response and re-send it": the
// edge's answers too. A key answered 503 in an outage or 429 at the rate
// limit keeps that answer after the outage or the window; another key goes
// through.
func TestORZCashStoresItsEdgeAnswers(t *testing.T) {
	clk := newClock()
	s := payretrytest.NewServer(payretrytest.ORZCash, payretrytest.Options{
		Clock:     clk.Now,
		RateLimit: 1,
		Plan:      payretrytest.FaultPlan{Outages: []payretrytest.Window{{Start: 0, End: time.Second}}},
	})
	defer s.Close()
	k1 := headers{"Idempotency-Key": newUUID(t)}
	first := must(t, s, http.MethodPost, s.PaymentURL(), pay("ref-1"), k1)
	require.Equal(t, http.StatusServiceUnavailable, first.status)

	clk.Add(2 * time.Second) // the outage is over
	again := must(t, s, http.MethodPost, s.PaymentURL(), pay("ref-1"), k1)
	assert.Equal(t, http.StatusServiceUnavailable, again.status, "the stored 503 is replayed")
	assert.Empty(t, s.Ledger())

	k2 := headers{"Idempotency-Key": newUUID(t)}
	ok := must(t, s, http.MethodPost, s.PaymentURL(), pay("ref-1"), k2)
	assert.Equal(t, http.StatusCreated, ok.status)
	k3 := headers{"Idempotency-Key": newUUID(t)}
	limited := must(t, s, http.MethodPost, s.PaymentURL(), pay("ref-2"), k3)
	require.Equal(t, http.StatusTooManyRequests, limited.status, "one request per second")
	clk.Add(2 * time.Second)
	assert.Equal(t, http.StatusTooManyRequests, must(t, s, http.MethodPost, s.PaymentURL(), pay("ref-2"), k3).status,
		"the stored 429 is replayed")
	assert.Equal(t, 1, s.Executions("ref-1"))
	assert.Zero(t, s.Executions("ref-2"))
}
