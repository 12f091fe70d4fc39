package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/payretry/payretry/payretrytest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestRun runs the demo on a small scale: the payretry series it scraped
// from /metrics over HTTP are there, with the types OpenTelemetry's
// conventions give them, and they add up.
func TestRun(t *testing.T) {
	c := config{
		provider: "smartretry", payments: 30, workers: 6, deadline: 3 * time.Second,
		// Connections reset after the payment executed: retries (the draws
		// are seeded) without the simulator's 1 s Retry-After of its 429s
		// and 503s, so that the test takes a second.
		plan: payretrytest.FaultPlan{Seed: 7, Reset: 0.2}, every: 100 * time.Millisecond,
	}
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), c, &out))
	text := out.String()
	t.Log(text)

	start := strings.Index(text, "\nscraped from http://127.0.0.1:")
	require.GreaterOrEqual(t, start, 0, "the run scraped its loopback /metrics")
	assert.Contains(t, text[:start], "t= 0.", "the progress lines scraped it during the run")
	series := strings.Split(strings.TrimSpace(text[start:]), "\n")[1:]
	for _, want := range []string{
		"# TYPE payretry_attempts_total counter",
		"# TYPE payretry_call_duration_seconds histogram",
		"# TYPE payretry_wait_duration_seconds histogram",
		"# TYPE payretry_limiter_down_scopes gauge",
		"# TYPE payretry_limiter_holds_total counter",
	} {
		assert.Contains(t, series, want)
	}
	v := sums(series)
	assert.Equal(t, 30.0, v["payretry_call_duration_seconds_count"], "every payment's call was measured once")
	assert.Greater(t, v["payretry_attempts_total"], 30.0, "retries happened")
	assert.Greater(t, v["payretry_wait_duration_seconds_count"], 0.0)
	assert.Equal(t, 0.0, v["payretry_limiter_down_scopes"], "no scope is down at the end")
	assert.Contains(t, text, `payretry_attempts_total{http_request_method="POST",payretry_class="timeout",payretry_provider="smartretry",payretry_retry="false"}`)
	assert.Contains(t, text, `payretry_limiter_down_scopes{payretry_provider="smartretry",payretry_scope="smartretry/payment"} 0`)
	for _, s := range series {
		assert.NotContains(t, s, "obs-", "no payment reference in a series")
		assert.NotContains(t, s, "/v1/", "no URL in a series")
		assert.NotContains(t, s, "demo-", "no credential in a series")
	}
}

func TestUnknownProvider(t *testing.T) {
	err := run(context.Background(), config{provider: "nope"}, &bytes.Buffer{})
	assert.ErrorContains(t, err, `unknown provider "nope"`)
}
