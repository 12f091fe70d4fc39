package payretry

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Verto API, Errors and Retries: "Send an Idempotency-Key on any write
// request that can create a financial side effect"; "Server error (5xx): Yes.
// Retry safely with the same Idempotency-Key on write operations."
func TestVerto_SameKeyOnEveryAttemptForWrites(t *testing.T) {
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		t.Run(m, func(t *testing.T) {
			pv := newPV(t, Verto(), status(500, ""), status(503, ""), status(200, `{"ok":true}`))
			body := `{"beneficiaryId":"b-1","amount":100}`
			if m == http.MethodDelete {
				body = ""
			}

			resp := pv.send(m, "/payouts/p-1", body)
			assert.Equal(t, 200, resp.StatusCode)
			keys := pv.keys()
			pvSame(t, keys, 3)
			assert.Equal(t, keys[0], resp.Request.Header.Get("Idempotency-Key"))
			for i, r := range pv.Requests() {
				assert.Equal(t, m, r.Method, "attempt %d", i+1)
			}
			pv.bodies(body)
		})
	}
}

// Verto API, Errors and Retries: "Vfx-Correlation-Id ... Mandatory. A unique
// GUID provided by you to track a logical operation"; "Generate a
// Vfx-Correlation-Id for each logical operation so you can trace retries".
func TestVerto_CorrelationIdPerLogicalCall(t *testing.T) {
	t.Run("same on every attempt, new for the next call", func(t *testing.T) {
		pv := newPV(t, Verto(), status(503, ""), status(429, ""), status(201, ""), status(201, ""))
		pv.send(http.MethodPost, "/payouts", `{"amount":1}`)
		pv.send(http.MethodPost, "/payouts", `{"amount":1}`)
		ids := pv.headers("Vfx-Correlation-Id")
		require.Len(t, ids, 4)
		pvSame(t, ids[:3], 3)
		pvUUID(t, ids[3])
		assert.NotEqual(t, ids[0], ids[3], "a new logical call gets a new id")
		keys := pv.keys()
		assert.NotEqual(t, keys[0], keys[3], "and a new key")
		assert.NotEqual(t, ids[0], keys[0], "the id is not the key")
	})
	t.Run("reads carry one too", func(t *testing.T) {
		pv := newPV(t, Verto(), status(500, ""), status(200, "[]"))
		pv.send(http.MethodGet, "/wallets", "")
		pvSame(t, pv.headers("Vfx-Correlation-Id"), 2)
		assert.Equal(t, []string{"", ""}, pv.keys(), "a GET has no key")
	})
	t.Run("a caller-set id is kept", func(t *testing.T) {
		pv := newPV(t, Verto(), status(502, ""), status(201, ""))
		const mine = "order-flow-8b1f"
		resp := pv.send(http.MethodPost, "/payouts", `{"amount":1}`, "Vfx-Correlation-Id", mine)
		assert.Equal(t, []string{mine, mine}, pv.headers("Vfx-Correlation-Id"))
		for _, r := range pv.Requests() {
			assert.Len(t, r.Header.Values("Vfx-Correlation-Id"), 1)
		}
		assert.Equal(t, mine, resp.Request.Header.Get("Vfx-Correlation-Id"))
	})
}

// Verto API, Errors and Retries: "5xx ... Retry Safely. Use your
// Idempotency-Key and wait 5-10 seconds."
func TestVerto_Wait5to10sOn5xx(t *testing.T) {
	t.Run("jitter at the middle", func(t *testing.T) {
		// Backoff 1s, 2s, 4s is raised to the 5s floor.
		pv := newPV(t, Verto(), status(500, ""), status(502, ""), status(503, ""), status(201, ""))
		resp := pv.send(http.MethodPost, "/payouts", `{"amount":1}`)
		assert.Equal(t, 201, resp.StatusCode)
		pvSame(t, pv.keys(), 4)
		pv.waited(5*time.Second, 5*time.Second, 5*time.Second)
	})
	for _, draw := range []float64{0, 0.999999} {
		t.Run("jitter at "+strconv.FormatFloat(draw, 'f', -1, 64), func(t *testing.T) {
			// More attempts, so that the backoff (up to 10s ±50%) passes
			// the 10s ceiling.
			p := Verto()
			p.MaxAttempts = 7
			e500 := status(500, "")
			pv := newPV(t, p, e500, e500, e500, e500, e500, e500, status(201, ""))
			pv.tr.rand = func() float64 { return draw }
			resp := pv.send(http.MethodPost, "/payouts", `{"amount":1}`)
			assert.Equal(t, 201, resp.StatusCode)
			waits := pv.clk.Waits()
			require.Len(t, waits, 6)
			for i, w := range waits {
				assert.GreaterOrEqual(t, w, 5*time.Second, "wait %d", i+1)
				assert.LessOrEqual(t, w, 10*time.Second, "wait %d", i+1)
			}
			if draw > 0.5 {
				// 8s and 10s intervals +50% are cut to 10s.
				assert.Equal(t, 10*time.Second, waits[4])
				assert.Equal(t, 10*time.Second, waits[5])
			}
		})
	}
}

// Verto API, Errors and Retries: "5xx ... wait 5-10 seconds". A Retry-After
// on the 5xx is honoured when it asks for longer, never when it asks for
// less: the wait is the longer of the two.
func TestVerto_RetryAfterOn503AtLeastFiveSeconds(t *testing.T) {
	for _, tc := range []struct {
		ra   int
		wait time.Duration
		src  WaitSource
	}{
		{0, 5 * time.Second, WaitBackoff},
		{2, 5 * time.Second, WaitBackoff},
		{30, 30 * time.Second, WaitRetryAfter},
	} {
		t.Run(strconv.Itoa(tc.ra)+"s", func(t *testing.T) {
			pv := newPV(t, Verto(), status(503, "", "Retry-After", strconv.Itoa(tc.ra)), status(201, ""))
			resp := pv.send(http.MethodPost, "/payouts", `{"amount":1}`)
			assert.Equal(t, 201, resp.StatusCode)
			pvSame(t, pv.keys(), 2)
			pv.waited(tc.wait)
			assert.Equal(t, []WaitSource{tc.src, WaitNone}, pv.waitSources())
		})
	}
}

// Verto API, Errors and Retries: "401/403 ... Refresh Token"; "Refresh the
// token ... before retrying": a 401 calls RefreshAuth once and the retry
// carries the new Authorization, with the same key and correlation id.
func TestVerto_401RefreshesAuthOnce(t *testing.T) {
	t.Run("refreshed and retried", func(t *testing.T) {
		pv := newPV(t, pvWithRefresh(Verto()),
			status(401, `{"errorCode":"UNAUTHORIZED","message":"token expired"}`), status(201, `{"id":"p1"}`))
		resp := pv.send(http.MethodPost, "/payouts", `{"amount":1}`, "Authorization", "Bearer old-token")
		assert.Equal(t, 201, resp.StatusCode)
		assert.Equal(t, 1, pv.refreshes)
		assert.Equal(t, []string{"Bearer old-token", "Bearer new-token"}, pv.headers("Authorization"))
		pvSame(t, pv.keys(), 2)
		pvSame(t, pv.headers("Vfx-Correlation-Id"), 2)
		pv.bodies(`{"amount":1}`)
		assert.Equal(t, []time.Duration{0}, pv.clk.Waits(), "no wait after a refresh")
	})
	t.Run("a second 401 is returned", func(t *testing.T) {
		pv := newPV(t, pvWithRefresh(Verto()), status(401, ""), status(401, `{"message":"still no"}`), status(201, ""))
		resp := pv.send(http.MethodPost, "/payouts", `{"amount":1}`, "Authorization", "Bearer old-token")
		assert.Equal(t, 401, resp.StatusCode)
		assert.Len(t, pv.Requests(), 2)
		assert.Equal(t, 1, pv.refreshes)
		e := pvCheck(t, resp)
		assert.Equal(t, ClassUnauthorized, e.Class)
		assert.Equal(t, 2, e.Attempts)
	})
	t.Run("without RefreshAuth not retried", func(t *testing.T) {
		pv := newPV(t, Verto(), status(401, ""), status(201, ""))
		resp := pv.send(http.MethodPost, "/payouts", `{"amount":1}`)
		assert.Equal(t, 401, resp.StatusCode)
		pv.notRetried()
	})
}

// Verto API, Errors and Retries, Error Code Dictionary: ROUTE_NOT_AVAILABLE
// 403 ("Contact your account manager"), INSUFFICIENT_FUNDS, INVALID_CURRENCY
// and VALIDATION_ERROR 400 ("Don't Retry"), WALLET_NOT_FOUND 404: returned
// after one attempt; CheckResponse gives the errorCode, the class and the
// Vfx-Api-Call-Id.
func TestVerto_ErrorCodesNotRetried(t *testing.T) {
	for _, tc := range []struct {
		status int
		code   string
		class  Class
	}{
		{403, "ROUTE_NOT_AVAILABLE", ClassForbidden},
		{400, "INSUFFICIENT_FUNDS", ClassBadRequest},
		{400, "INVALID_CURRENCY", ClassBadRequest},
		{400, "VALIDATION_ERROR", ClassBadRequest},
		{404, "WALLET_NOT_FOUND", ClassNotFound},
	} {
		t.Run(tc.code, func(t *testing.T) {
			body := `{"errorCode":"` + tc.code + `","message":"see dictionary"}`
			pv := newPV(t, pvWithRefresh(Verto()), status(tc.status, body, "Vfx-Api-Call-Id", "call-"+tc.code), status(201, ""))
			resp := pv.send(http.MethodPost, "/payouts", `{"amount":1}`)
			assert.Equal(t, tc.status, resp.StatusCode)
			pv.notRetried()

			e := pvCheck(t, resp)
			assert.Equal(t, "verto", e.Provider)
			assert.Equal(t, tc.class, e.Class)
			assert.Equal(t, tc.status, e.StatusCode)
			assert.Equal(t, tc.code, e.Code)
			assert.Equal(t, "see dictionary", e.Message)
			assert.Equal(t, "call-"+tc.code, e.RequestID)
			assert.Equal(t, 1, e.Attempts)
			assert.Equal(t, pv.keys()[0], e.IdempotencyKey)
			assert.False(t, e.OutcomeUnknown)
			assert.Equal(t, body, readAll(t, resp), "body still readable")
		})
	}
}

// Verto API, Errors and Retries: "Compliance review or RFI open: No"; "Do not
// retry an open RFI"; "Do not retry the write request": not even on a 503.
func TestVerto_RFINotRetried(t *testing.T) {
	for _, body := range []string{
		`{"errorCode":"RFI_REQUIRED","message":"More information needed"}`,
		`{"errorCode":"RFI_OPEN"}`,
		`{"errorCode":"COMPLIANCE_REVIEW","message":"Payout under review"}`,
		`{"errorCode":"PAYOUT_ON_HOLD","message":"A request for information is open for this payout"}`,
	} {
		t.Run(body, func(t *testing.T) {
			pv := newPV(t, Verto(), status(503, body), status(201, ""))
			resp := pv.send(http.MethodPost, "/payouts", `{"amount":1}`)
			assert.Equal(t, 503, resp.StatusCode)
			pv.notRetried()
			assert.ErrorIs(t, pv.last().Reason, ErrCompliance)
		})
	}
}

// Verto API, Errors and Retries: "429 ... Wait. Implement exponential
// backoff"; "Rate limit (429): Yes. Wait, back off exponentially, and retry
// with the same logical tracking IDs."
func TestVerto_429RetriedWithBackoff(t *testing.T) {
	pv := newPV(t, Verto(), status(429, ""), status(429, ""), status(201, ""))
	resp := pv.send(http.MethodPost, "/payouts", `{"amount":1}`)
	assert.Equal(t, 201, resp.StatusCode)
	pvSame(t, pv.keys(), 3)
	pvSame(t, pv.headers("Vfx-Correlation-Id"), 3)
	// InitialInterval 1s ×2, jitter at the middle; no 5-10s clamp for 429.
	pv.waited(time.Second, 2*time.Second)
	assert.Equal(t, []WaitSource{WaitBackoff, WaitBackoff, WaitNone}, pv.waitSources())
}
