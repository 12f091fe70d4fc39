package payretrytest_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/payretry/payretry/payretrytest"
)

func TestKeyStoneCreatedThenOK(t *testing.T) {
	s := payretrytest.NewServer(payretrytest.KeyStone, payretrytest.Options{})
	defer s.Close()
	body, _ := keyed(payretrytest.KeyStone, "ref-1", "k1")

	first := must(t, s, http.MethodPost, s.PaymentURL(), body, nil)
	require.Equal(t, http.StatusCreated, first.status)
	second := must(t, s, http.MethodPost, s.PaymentURL(), body, nil)
	assert.Equal(t, http.StatusOK, second.status)
	assert.Equal(t, first.raw, second.raw, "the existing settlement")
	assert.Equal(t, 1, s.Executions("ref-1"))
	assert.Equal(t, []string{"k1", "k1"}, s.KeysSeen("ref-1"))

	other := pay("ref-1")
	other["amount"] = 2000
	other["idempotency_key"] = "k1"
	reused := must(t, s, http.MethodPost, s.PaymentURL(), other, nil)
	assert.Equal(t, http.StatusUnprocessableEntity, reused.status)
	assert.Equal(t, "Idempotency key reused with a different request payload", reused.str("detail"))
	assert.Equal(t, 1, s.Executions("ref-1"))
}

func TestKeyStoneErrors(t *testing.T) {
	s := payretrytest.NewServer(payretrytest.KeyStone, payretrytest.Options{})
	defer s.Close()

	missing := must(t, s, http.MethodPost, s.PaymentURL(),
		map[string]any{"reference": "ref-1", "currency": "EUR", "idempotency_key": "k1"}, nil)
	assert.Equal(t, http.StatusUnprocessableEntity, missing.status)
	assert.JSONEq(t, `{"detail":[{"loc":["body","amount"],"msg":"Field required","type":"missing"}]}`, missing.raw)

	malformed := must(t, s, http.MethodPost, s.PaymentURL(), `{"reference": "ref-1",`, nil)
	assert.Equal(t, http.StatusBadRequest, malformed.status)
	assert.Equal(t, "Malformed JSON body", malformed.str("detail"))

	funds := pay("ref-2")
	funds["amount"] = payretrytest.MaxAmount + 1
	rule := must(t, s, http.MethodPost, s.PaymentURL(), funds, nil)
	assert.Equal(t, http.StatusUnprocessableEntity, rule.status)
	assert.Equal(t, "Insufficient funds", rule.str("detail"), "a business rule: 422 with a string detail")
	assert.Empty(t, s.Ledger())

	created := must(t, s, http.MethodPost, s.PaymentURL(), pay("ref-3"), nil)
	require.Equal(t, http.StatusCreated, created.status)
	for _, tc := range []struct {
		path   string
		status int
		detail string
	}{
		{"/v1/settlements/ref-3/compliance-decision", http.StatusConflict, "Settlement is not awaiting a compliance decision"},
		{"/v1/settlements/" + created.str("id") + "/compliance-decision", http.StatusConflict, "Settlement is not awaiting a compliance decision"},
		{"/v1/settlements/ref-3/confirm", http.StatusConflict, "Settlement is not cross-platform"},
		{"/v1/settlements/nope/compliance-decision", http.StatusNotFound, "Settlement not found"},
	} {
		r := must(t, s, http.MethodPost, s.URL+tc.path, `{}`, nil)
		assert.Equal(t, tc.status, r.status, tc.path)
		assert.Equal(t, tc.detail, r.str("detail"), tc.path)
	}

	lookup := must(t, s, http.MethodGet, s.StatusURL("ref-3"), nil, nil)
	assert.Equal(t, http.StatusOK, lookup.status)
	notFound := must(t, s, http.MethodGet, s.StatusURL("nope"), nil, nil)
	assert.Equal(t, http.StatusNotFound, notFound.status)
	assert.Equal(t, "Settlement not found", notFound.str("detail"))
}

func TestKeyStoneAuth(t *testing.T) {
	s := payretrytest.NewServer(payretrytest.KeyStone, payretrytest.Options{RequireAuth: true, Token: "good"})
	defer s.Close()
	body, _ := keyed(payretrytest.KeyStone, "ref-1", "k1")

	for _, h := range []headers{nil, {"Authorization": "Bearer expired"}, {"Authorization": "Bearer other"}} {
		r := must(t, s, http.MethodPost, s.PaymentURL(), body, h)
		assert.Equal(t, http.StatusUnauthorized, r.status)
		assert.JSONEq(t, `{"detail":"Invalid or expired JWT"}`, r.raw)
	}
	assert.Empty(t, s.Ledger())

	r := must(t, s, http.MethodPost, s.PaymentURL(), body, headers{"Authorization": "Bearer good"})
	assert.Equal(t, http.StatusCreated, r.status)
}
