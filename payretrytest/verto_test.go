package payretrytest_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/payretry/payretry/payretrytest"
)

func TestVertoCorrelationIDAndCallID(t *testing.T) {
	s := payretrytest.NewServer(payretrytest.Verto, payretrytest.Options{})
	defer s.Close()

	missing := must(t, s, http.MethodPost, s.PaymentURL(), pay("ref-1"), headers{"Idempotency-Key": "k1"})
	assert.Equal(t, http.StatusBadRequest, missing.status)
	assert.Equal(t, "VALIDATION_ERROR", missing.str("errorCode"))
	assert.NotEmpty(t, missing.str("message"))
	assert.Zero(t, s.Executions("ref-1"))

	lookup := must(t, s, http.MethodGet, s.StatusURL("ref-1"), nil, nil)
	assert.Equal(t, http.StatusBadRequest, lookup.status, "mandatory on every request")

	ok := must(t, s, http.MethodPost, s.PaymentURL(), pay("ref-1"),
		headers{"Idempotency-Key": "k1", "Vfx-Correlation-Id": "corr-1"})
	assert.Equal(t, http.StatusCreated, ok.status)
	assert.Equal(t, 1, s.Executions("ref-1"))

	ids := map[string]bool{}
	for _, r := range []reply{missing, lookup, ok} {
		id := r.header.Get("Vfx-Api-Call-Id")
		assert.NotEmpty(t, id)
		ids[id] = true
	}
	assert.Len(t, ids, 3, "one call id per request")

	attempts := s.Attempts("ref-1")
	require.Len(t, attempts, 2)
	assert.Equal(t, "", attempts[0].CorrelationID)
	assert.Equal(t, "corr-1", attempts[1].CorrelationID)
	assert.Equal(t, http.StatusBadRequest, attempts[0].Status)
	assert.Equal(t, http.StatusCreated, attempts[1].Status)
}

func TestVertoErrorCodes(t *testing.T) {
	s := payretrytest.NewServer(payretrytest.Verto, payretrytest.Options{})
	defer s.Close()
	body := func(ref string, amount int, currency string) map[string]any {
		return map[string]any{"reference": ref, "amount": amount, "currency": currency}
	}
	for _, tc := range []struct {
		name   string
		body   any
		status int
		code   string
	}{
		{"invalid currency", body("c-1", 100, "XXX"), http.StatusBadRequest, "INVALID_CURRENCY"},
		{"insufficient funds", body("c-2", payretrytest.MaxAmount+1, "EUR"), http.StatusBadRequest, "INSUFFICIENT_FUNDS"},
		{"route not available", body("c-3", 100, "KPW"), http.StatusForbidden, "ROUTE_NOT_AVAILABLE"},
		{"wallet not found", body("nowallet-1", 100, "EUR"), http.StatusNotFound, "WALLET_NOT_FOUND"},
		{"rfi", body("rfi-1", 100, "EUR"), http.StatusConflict, "RFI_REQUIRED"},
		{"missing amount", map[string]any{"reference": "c-4", "currency": "EUR"}, http.StatusBadRequest, "VALIDATION_ERROR"},
		{"malformed", `{"reference":`, http.StatusBadRequest, "VALIDATION_ERROR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := headers{"Vfx-Correlation-Id": "corr", "Idempotency-Key": "key-" + tc.name}
			r := must(t, s, http.MethodPost, s.PaymentURL(), tc.body, h)
			assert.Equal(t, tc.status, r.status)
			assert.Equal(t, tc.code, r.str("errorCode"))
			assert.NotEmpty(t, r.str("message"))

			again := must(t, s, http.MethodPost, s.PaymentURL(), tc.body, h)
			assert.Equal(t, r.raw, again.raw, "a definitive failure is cached under its key")
		})
	}
	assert.Empty(t, s.Ledger())
	assert.Equal(t, 7, s.Stats().Replays)
}

func TestVerto5xxIsNotCached(t *testing.T) {
	s := payretrytest.NewServer(payretrytest.Verto, payretrytest.Options{
		Plan: payretrytest.FaultPlan{Seed: 3, FailBefore: 1},
	})
	defer s.Close()
	h := headers{"Vfx-Correlation-Id": "corr", "Idempotency-Key": "k1"}
	for range 2 {
		r := must(t, s, http.MethodPost, s.PaymentURL(), pay("ref-1"), h)
		require.Contains(t, []int{500, 503}, r.status)
		assert.Contains(t, []string{"INTERNAL_ERROR", "SERVICE_UNAVAILABLE"}, r.str("errorCode"))
	}
	st := s.Stats()
	assert.Equal(t, 2, st.Faults[payretrytest.FaultFailBefore], "each retry is handled afresh")
	assert.Zero(t, st.Replays)
	assert.Empty(t, s.Ledger())
}

func TestVertoFailAfterThenSameKeyGetsTheSuccess(t *testing.T) {
	s := payretrytest.NewServer(payretrytest.Verto, payretrytest.Options{
		Plan: payretrytest.FaultPlan{Seed: 3, FailAfter: 1},
	})
	defer s.Close()
	h := headers{"Vfx-Correlation-Id": "corr", "Idempotency-Key": "k1"}

	first := must(t, s, http.MethodPost, s.PaymentURL(), pay("ref-1"), h)
	require.GreaterOrEqual(t, first.status, 500)
	assert.Equal(t, 1, s.Executions("ref-1"), "executed before the 5xx")

	retry := must(t, s, http.MethodPost, s.PaymentURL(), pay("ref-1"), h)
	assert.Equal(t, http.StatusCreated, retry.status)
	assert.Equal(t, 1, s.Executions("ref-1"))

	naive := must(t, s, http.MethodPost, s.PaymentURL(), pay("ref-2"), headers{"Vfx-Correlation-Id": "corr"})
	require.GreaterOrEqual(t, naive.status, 500)
	must(t, s, http.MethodPost, s.PaymentURL(), pay("ref-2"), headers{"Vfx-Correlation-Id": "corr"})
	assert.Equal(t, 2, s.Executions("ref-2"), "without a key a retry after a 5xx pays twice")
	assert.Equal(t, 1, s.Duplicates())
}
