package payretrytest_test

import (
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/payretry/payretry/payretrytest"
)

func TestSmartRetryPaymentRateLimit(t *testing.T) {
	clk := newClock()
	s := payretrytest.NewServer(payretrytest.SmartRetry, payretrytest.Options{Clock: clk.Now})
	defer s.Close()
	reset := strconv.FormatInt(t0.Unix()+1, 10)
	sale := func(apiKey string, i int) reply {
		ref := fmt.Sprintf("%s-%d", apiKey, i)
		return must(t, s, http.MethodPost, s.PaymentURL(), pay(ref), headers{"x-api-key": apiKey, "Idempotency-Key": ref})
	}

	for i := range 100 {
		r := sale("k1", i)
		require.Equal(t, http.StatusCreated, r.status, i)
		assert.Equal(t, "100", r.header.Get("X-RateLimit-Limit"))
		assert.Equal(t, strconv.Itoa(99-i), r.header.Get("X-RateLimit-Remaining"))
		assert.Equal(t, reset, r.header.Get("X-RateLimit-Reset"), "a Unix timestamp")
	}

	limited := sale("k1", 100)
	require.Equal(t, http.StatusTooManyRequests, limited.status)
	assert.Equal(t, "application/problem+json", limited.header.Get("Content-Type"))
	assert.Equal(t, "1", limited.header.Get("Retry-After"))
	assert.Equal(t, "0", limited.header.Get("X-RateLimit-Remaining"))
	assert.JSONEq(t, `{
		"type": "https://api.smartretry.com/errors/rate-limit",
		"title": "Too Many Requests",
		"status": 429,
		"detail": "Rate limit exceeded. Retry after 1 second.",
		"reason_code": "RATE_LIMIT_EXCEEDED"
	}`, limited.raw)
	assert.Zero(t, s.Executions("k1-100"))
	assert.Equal(t, 1, s.Stats().RateLimited)

	status := must(t, s, http.MethodGet, s.StatusURL("k1-0"), nil, headers{"x-api-key": "k1"})
	assert.Equal(t, http.StatusOK, status.status, "status queries have their own budget")
	assert.Equal(t, "500", status.header.Get("X-RateLimit-Limit"))
	assert.Equal(t, "499", status.header.Get("X-RateLimit-Remaining"))

	other := sale("k2", 0)
	assert.Equal(t, http.StatusCreated, other.status, "limits are per API key")
	assert.Equal(t, "99", other.header.Get("X-RateLimit-Remaining"))

	unknown := must(t, s, http.MethodGet, s.URL+"/v1/nothing", nil, headers{"x-api-key": "k1"})
	assert.Equal(t, http.StatusNotFound, unknown.status)
	assert.Equal(t, "1000", unknown.header.Get("X-RateLimit-Limit"), "every response carries the headers")
	assert.Equal(t, "898", unknown.header.Get("X-RateLimit-Remaining"))
	assert.Equal(t, "NOT_FOUND", unknown.str("reason_code"))

	clk.Add(time.Second)
	next := sale("k1", 101)
	assert.Equal(t, http.StatusCreated, next.status, "a new window")
	assert.Equal(t, "99", next.header.Get("X-RateLimit-Remaining"))
	assert.Equal(t, strconv.FormatInt(t0.Unix()+2, 10), next.header.Get("X-RateLimit-Reset"))
}

func TestSmartRetryClassLimits(t *testing.T) {
	s := payretrytest.NewServer(payretrytest.SmartRetry, payretrytest.Options{
		Clock:  newClock().Now,
		Limits: payretrytest.Limits{Payment: 2, Status: 3, Recurring: 1, All: 5},
	})
	defer s.Close()
	h := headers{"x-api-key": "k"}
	type step struct {
		method, path string
		status       int
		limit        string
		remaining    string
	}
	for i, st := range []step{
		{http.MethodPost, "/v1/payments/sale", 201, "2", "1"},
		{http.MethodPost, "/v1/payments/sale", 201, "2", "0"},
		{http.MethodPost, "/v1/payments/sale", 429, "2", "0"},
		{http.MethodPost, "/v1/payments/refund", 429, "2", "0"},
		{http.MethodGet, "/v1/payments/status/r0", 200, "3", "2"},
		{http.MethodGet, "/v1/payments/status/r0", 200, "3", "1"},
		{http.MethodGet, "/v1/payments/status/r0", 200, "3", "0"},
		{http.MethodGet, "/v1/recurring/plans", 429, "5", "0"}, // the combined limit binds
	} {
		var body any
		if st.method == http.MethodPost {
			body = pay(fmt.Sprintf("r%d", i))
			if i == 3 {
				body = map[string]any{"reference": "r0"}
			}
		}
		r := must(t, s, st.method, s.URL+st.path, body, h)
		assert.Equal(t, st.status, r.status, "step %d", i)
		assert.Equal(t, st.limit, r.header.Get("X-RateLimit-Limit"), "step %d", i)
		assert.Equal(t, st.remaining, r.header.Get("X-RateLimit-Remaining"), "step %d", i)
	}
}

func TestSmartRetryOtherEndpoints(t *testing.T) {
	s := payretrytest.NewServer(payretrytest.SmartRetry, payretrytest.Options{})
	defer s.Close()
	require.Equal(t, http.StatusCreated, must(t, s, http.MethodPost, s.PaymentURL(), pay("r1"), nil).status)

	refund := must(t, s, http.MethodPost, s.URL+"/v1/payments/refund", map[string]any{"reference": "r1"}, nil)
	assert.Equal(t, http.StatusOK, refund.status)
	assert.Equal(t, "refunded", refund.str("status"))

	missing := must(t, s, http.MethodPost, s.URL+"/v1/payments/void", map[string]any{"reference": "r2"}, nil)
	assert.Equal(t, http.StatusNotFound, missing.status)
	assert.Equal(t, "application/problem+json", missing.header.Get("Content-Type"))

	invalid := must(t, s, http.MethodPost, s.PaymentURL(), map[string]any{"reference": "r3", "amount": "ten", "currency": "EUR"}, nil)
	assert.Equal(t, http.StatusBadRequest, invalid.status)
	assert.Equal(t, "VALIDATION_ERROR", invalid.str("reason_code"))
	assert.Equal(t, "https://api.smartretry.com/errors/validation-error", invalid.str("type"))
	assert.EqualValues(t, 400, invalid.body["status"])
}

func TestRateLimitOptionForEveryProvider(t *testing.T) {
	for _, p := range providers {
		t.Run(string(p), func(t *testing.T) {
			s := payretrytest.NewServer(p, payretrytest.Options{Clock: newClock().Now, RateLimit: 2})
			defer s.Close()
			h := headers{"Vfx-Correlation-Id": "corr"}
			for i := range 3 {
				r := must(t, s, http.MethodGet, s.StatusURL("nope"), nil, h)
				assert.Equal(t, "2", r.header.Get("X-RateLimit-Limit"))
				assert.Equal(t, strconv.Itoa(max(0, 1-i)), r.header.Get("X-RateLimit-Remaining"))
				if i < 2 {
					assert.Equal(t, http.StatusNotFound, r.status)
					continue
				}
				assert.Equal(t, http.StatusTooManyRequests, r.status)
				assert.Equal(t, "1", r.header.Get("Retry-After"))
				assert.Contains(t, r.raw, "Rate limit exceeded")
			}
		})
	}
}
