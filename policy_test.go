package payretry

import (
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNewTransportRejectsInvalidPolicy(t *testing.T) {
	cases := []struct {
		field string
		p     Policy
	}{
		{"MaxAttempts", Policy{MaxAttempts: -1}},
		{"InitialInterval", Policy{InitialInterval: -time.Second}},
		{"InitialInterval", Policy{InitialInterval: 2 * time.Second, MaxInterval: time.Second}},
		{"MaxInterval", Policy{MaxInterval: -1}},
		{"Multiplier", Policy{Multiplier: 0.5}},
		{"Multiplier", Policy{Multiplier: math.Inf(1)}},
		{"Multiplier", Policy{Multiplier: math.NaN()}},
		{"RandomizationFactor", Policy{RandomizationFactor: 1.5}},
		{"RandomizationFactor", Policy{RandomizationFactor: math.NaN()}},
		{"MaxElapsedTime", Policy{MaxElapsedTime: -1}},
		{"AttemptTimeout", Policy{AttemptTimeout: -1}},
		{"MaxRetryAfter", Policy{MaxRetryAfter: -1}},
		{"IdempotencyField", Policy{IdempotencyHeader: "Idempotency-Key", IdempotencyField: "idempotency_key"}},
		{"IdempotencyHeader", Policy{IdempotencyHeader: "Idempotency Key"}},
		{"CorrelationHeader", Policy{CorrelationHeader: "X:Y"}},
		{"KeyMethods", Policy{KeyMethods: []string{"PO ST"}}},
		{"Rules[timeout]", Policy{Rules: map[Class]Rule{ClassTimeout: {Retry: true, NewKey: true}}}},
		{"Rules[success]", Policy{Rules: map[Class]Rule{ClassSuccess: {Retry: true}}}},
		{"Rules[canceled]", Policy{Rules: map[Class]Rule{ClassCanceled: {Retry: true}}}},
		{"Rules[server error]", Policy{Rules: map[Class]Rule{ClassServerError: {Retry: true, MinWait: 2 * time.Second, MaxWait: time.Second}}}},
		{"Rules[server error]", Policy{Rules: map[Class]Rule{ClassServerError: {Retry: true, Statuses: []int{42}}}}},
		{"Rules[class(99)]", Policy{Rules: map[Class]Rule{Class(99): {Retry: true}}}},
	}
	for _, c := range cases {
		c.p.Name = "acme"
		tr, err := NewTransport(nil, c.p)
		assert.Nil(t, tr, c.field)
		require.Error(t, err, c.field)
		assert.Contains(t, err.Error(), c.field)
		assert.Contains(t, err.Error(), `"acme"`)
	}
}

func TestPolicyDefaultsAndCopy(t *testing.T) {
	tr, err := NewTransport(nil, Policy{})
	require.NoError(t, err)
	p := tr.Policy()
	assert.Equal(t, 4, p.MaxAttempts)
	assert.Equal(t, 500*time.Millisecond, p.InitialInterval)
	assert.Equal(t, 30*time.Second, p.MaxInterval)
	assert.Equal(t, 2.0, p.Multiplier)
	assert.Equal(t, 0.5, p.RandomizationFactor)
	assert.Equal(t, time.Minute, p.MaxElapsedTime)
	assert.Equal(t, time.Minute, p.MaxRetryAfter)
	assert.Equal(t, int64(1<<20), p.MaxBufferedBody)
	assert.Equal(t, []string{http.MethodPost}, p.KeyMethods)
	assert.Equal(t, DefaultRules(), p.Rules)
	assert.Same(t, http.DefaultTransport, tr.base)

	off, err := NewTransport(nil, Policy{RandomizationFactor: -1})
	require.NoError(t, err)
	assert.Zero(t, off.Policy().RandomizationFactor, "negative turns jitter off")

	// The transport keeps its own copy.
	orig := ORZCash()
	tr2, err := NewTransport(nil, orig)
	require.NoError(t, err)
	orig.Rules[ClassServerError] = Rule{}
	orig.KeyMethods[0] = "PUT"
	assert.True(t, tr2.rules[ClassServerError].Retry)
	assert.Equal(t, []string{http.MethodPost}, tr2.Policy().KeyMethods)
}

func TestPresetsAreValid(t *testing.T) {
	for _, p := range []Policy{ORZCash(), Verto(), KeyStone(), SmartRetry()} {
		_, err := NewTransport(nil, p)
		assert.NoError(t, err, p.Name)
		assert.NotEmpty(t, p.Name)
	}
}

func TestJitterStaysInRange(t *testing.T) {
	tr, err := NewTransport(nil, Policy{InitialInterval: time.Second, RandomizationFactor: 0.25})
	require.NoError(t, err)
	p := tr.Policy()
	for _, r := range []float64{0, 0.5, 0.999999} {
		d := p.backoff(1, r)
		assert.GreaterOrEqual(t, d, 750*time.Millisecond)
		assert.LessOrEqual(t, d, 1250*time.Millisecond)
	}
	assert.Equal(t, 750*time.Millisecond, p.backoff(1, 0))
	assert.Equal(t, 1500*time.Millisecond, p.backoff(2, 0))
	assert.Equal(t, 30*time.Second-7500*time.Millisecond, p.backoff(10, 0), "MaxInterval caps before jitter")

	p.JitterUpOnly = true
	assert.Equal(t, time.Second, p.backoff(1, 0), "never shorter than the interval")
	assert.Equal(t, 1250*time.Millisecond, p.backoff(1, 1))
}
