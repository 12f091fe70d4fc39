package payretrytest_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/payretry/payretry/payretrytest"
)

// assertFormat checks that r is an error in provider p's format.
func assertFormat(t *testing.T, p payretrytest.Provider, r reply) {
	t.Helper()
	switch p {
	case payretrytest.ORZCash:
		assert.Equal(t, "application/json", r.header.Get("Content-Type"))
		assert.NotEmpty(t, r.str("code"), r.raw)
		assert.NotEmpty(t, r.str("message"), r.raw)
	case payretrytest.Verto:
		assert.Equal(t, "application/json", r.header.Get("Content-Type"))
		assert.NotEmpty(t, r.str("errorCode"), r.raw)
		assert.NotEmpty(t, r.str("message"), r.raw)
	case payretrytest.KeyStone:
		assert.Equal(t, "application/json", r.header.Get("Content-Type"))
		assert.NotNil(t, r.body["detail"], r.raw)
	case payretrytest.SmartRetry:
		assert.Equal(t, "application/problem+json", r.header.Get("Content-Type"))
		for _, f := range []string{"type", "title", "detail", "reason_code"} {
			assert.NotEmpty(t, r.str(f), "%s in %s", f, r.raw)
		}
		assert.EqualValues(t, r.status, r.body["status"])
	}
}

func TestBadRequestsUseTheProviderFormat(t *testing.T) {
	for _, p := range providers {
		t.Run(string(p), func(t *testing.T) {
			s := payretrytest.NewServer(p, payretrytest.Options{})
			defer s.Close()
			h := headers{"Vfx-Correlation-Id": "corr"}
			for _, tc := range []struct {
				name         string
				method, path string
				body         any
				status       int
			}{
				{"malformed JSON", http.MethodPost, payretrytest.PaymentPath(p), `{"reference": `, 400},
				{"not an object", http.MethodPost, payretrytest.PaymentPath(p), `[1, 2]`, 400},
				{"trailing data", http.MethodPost, payretrytest.PaymentPath(p), `{"reference":"r","amount":1,"currency":"EUR"} x`, 400},
				{"wrong method", http.MethodGet, payretrytest.PaymentPath(p), nil, 405},
				{"wrong lookup method", http.MethodDelete, payretrytest.StatusPath(p, "r"), nil, 405},
				{"unknown path", http.MethodGet, "/v2/anything", nil, 404},
				{"empty reference", http.MethodGet, payretrytest.StatusPath(p, ""), nil, 404},
			} {
				r := must(t, s, tc.method, s.URL+tc.path, tc.body, h)
				assert.Equal(t, tc.status, r.status, tc.name)
				assertFormat(t, p, r)
				if tc.status == http.StatusMethodNotAllowed {
					assert.NotEmpty(t, r.header.Get("Allow"), tc.name)
				}
			}

			invalid := must(t, s, http.MethodPost, s.PaymentURL(),
				map[string]any{"reference": "", "amount": -5, "currency": "eur"}, h)
			assertFormat(t, p, invalid)
			if p == payretrytest.KeyStone {
				assert.Equal(t, http.StatusUnprocessableEntity, invalid.status)
				assert.Len(t, invalid.body["detail"], 3)
			} else {
				assert.Equal(t, http.StatusBadRequest, invalid.status)
			}
			assert.Empty(t, s.Ledger())
		})
	}
}

func TestAuthPerProvider(t *testing.T) {
	for _, p := range providers {
		t.Run(string(p), func(t *testing.T) {
			s := payretrytest.NewServer(p, payretrytest.Options{RequireAuth: true})
			defer s.Close()
			good, bad := headers{"Vfx-Correlation-Id": "c"}, headers{"Vfx-Correlation-Id": "c"}
			if p == payretrytest.SmartRetry {
				good["x-api-key"], bad["x-api-key"] = "key", "expired"
			} else {
				good["Authorization"], bad["Authorization"] = "Bearer any", "Bearer expired"
			}
			for _, h := range []headers{{"Vfx-Correlation-Id": "c"}, bad} {
				r := must(t, s, http.MethodGet, s.StatusURL("r"), nil, h)
				assert.Equal(t, http.StatusUnauthorized, r.status)
				assertFormat(t, p, r)
			}
			assert.Equal(t, http.StatusNotFound, must(t, s, http.MethodGet, s.StatusURL("r"), nil, good).status)
		})
	}
}
