package payretry

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func response(code int, body string, kv ...string) *http.Response {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return &http.Response{StatusCode: code, Header: h, Body: io.NopCloser(strings.NewReader(body))}
}

func TestCheckResponseFormats(t *testing.T) {
	cases := []struct {
		name      string
		resp      *http.Response
		class     Class
		code, msg string
		requestID string
	}{
		{"verto", response(400, `{"errorCode":"INSUFFICIENT_FUNDS","message":"Wallet balance is too low."}`, "Vfx-Api-Call-Id", "call-1"),
			ClassBadRequest, "INSUFFICIENT_FUNDS", "Wallet balance is too low.", "call-1"},
		{"smartretry problem+json", response(429, `{"type":"https://api.smartretry.com/errors/rate-limit","title":"Too Many Requests","status":429,"detail":"Rate limit exceeded. Retry after 1 second.","reason_code":"RATE_LIMIT_EXCEEDED"}`, "Request-Id", "r2"),
			ClassRateLimited, "RATE_LIMIT_EXCEEDED", "Rate limit exceeded. Retry after 1 second.", "r2"},
		{"rfc 9457 without extension", response(503, `{"type":"https://example.com/probs/down","title":"Down","status":503}`),
			ClassServerError, "https://example.com/probs/down", "Down", ""},
		{"keystone string detail", response(409, `{"detail": "Settlement is not cross-platform"}`, "X-Request-Id", "x3"),
			ClassConflict, "", "Settlement is not cross-platform", "x3"},
		{"keystone list detail", response(422, `{"detail":[{"loc":["body","parties",0,"role"],"msg":"Field required","type":"missing"},{"loc":["body","amount"],"msg":"Must be positive","type":"value"}]}`),
			ClassUnprocessable, "", "body.parties.0.role: Field required; body.amount: Must be positive", ""},
		{"orzcash code/message", response(500, `{"code":"INTERNAL","message":"try again"}`), ClassServerError, "INTERNAL", "try again", ""},
		{"numeric code, nested error", response(404, `{"error":{"code":1004,"message":"no such payout"}}`), ClassNotFound, "1004", "no such payout", ""},
		{"error string", response(401, `{"error":"invalid_token"}`), ClassUnauthorized, "", "invalid_token", ""},
		{"html", response(502, `<html>bad gateway</html>`), ClassServerError, "", "", ""},
		{"empty", response(403, ``), ClassForbidden, "", "", ""},
		{"bad json", response(400, `{"errorCode":`), ClassBadRequest, "", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := ""
			if c.resp.Body != nil {
				b, _ := io.ReadAll(c.resp.Body)
				body = string(b)
				c.resp.Body = io.NopCloser(strings.NewReader(body))
			}
			err := CheckResponse(c.resp)
			var e *Error
			require.ErrorAs(t, err, &e)
			assert.Equal(t, c.class, e.Class)
			assert.Equal(t, c.resp.StatusCode, e.StatusCode)
			assert.Equal(t, c.code, e.Code)
			assert.Equal(t, c.msg, e.Message)
			assert.Equal(t, c.requestID, e.RequestID)
			assert.Equal(t, body, readAll(t, c.resp), "body readable from its start")
		})
	}
}

func TestCheckResponseSuccessAndLargeBody(t *testing.T) {
	assert.NoError(t, CheckResponse(response(201, "x")))
	assert.NoError(t, CheckResponse(response(299, "")))
	var e *Error
	require.ErrorAs(t, CheckResponse(nil), &e)

	big := `{"message":"` + strings.Repeat("a", 3*maxErrorBody) + `"}`
	resp := response(500, big)
	require.Error(t, CheckResponse(resp))
	assert.Equal(t, big, readAll(t, resp), "a body beyond the peek stays whole")
}

func TestErrorTextHasNoSecrets(t *testing.T) {
	resp := response(402, `{"errorCode":"CARD_DECLINED","message":"Card 4111111111111111 declined"}`)
	resp.Request, _ = http.NewRequest(http.MethodPost, "https://api.example/pay?api_key=sk_live_1", nil)
	resp.Request.Header.Set("Authorization", "Bearer sk_live_2")
	resp.Request.Header.Set("Idempotency-Key", "key-123")
	err := CheckResponse(resp)
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, "key-123", e.IdempotencyKey, "the key is a field")
	text := err.Error()
	for _, s := range []string{"sk_live", "Bearer", "key-123", "4111111111111111"} {
		assert.NotContains(t, text, s)
	}
	assert.Contains(t, text, "CARD_DECLINED")
	assert.Contains(t, text, "[16 digits]")
}

func TestErrorTextAndUnwrap(t *testing.T) {
	e := &Error{Provider: "verto", Class: ClassServerError, StatusCode: 503, Code: "DOWN", Message: "maintenance",
		Attempts: 3, OutcomeUnknown: true, Err: context.DeadlineExceeded}
	assert.Equal(t, "payretry: verto: server error (503 DOWN): maintenance after 3 attempts (outcome unknown: reconcile before retrying): context deadline exceeded", e.Error())
	assert.ErrorIs(t, e, context.DeadlineExceeded)
	assert.Equal(t, "payretry: network", (&Error{Class: ClassNetwork, Attempts: 1}).Error())
	var target *Error
	assert.True(t, errors.As(error(e), &target))
}

func TestRedactMessage(t *testing.T) {
	assert.Equal(t, "call 12345678901 ok", redactMessage("call 12345678901 ok"))
	assert.Equal(t, "pan [19 digits] x", redactMessage("pan 1234567890123456789 x"))
	long := strings.Repeat("m", 2*maxMessage)
	assert.Len(t, redactMessage(long), maxMessage+3)
}

func TestWithJSONField(t *testing.T) {
	assert.Equal(t, `{"k":"v","a":1}`, string(withJSONField([]byte(`{"a":1}`), "k", "v", false)))
	assert.Equal(t, `{"k":"v"}`, string(withJSONField([]byte(`{}`), "k", "v", false)))
	assert.Equal(t, `{"k":"v"  }`, string(withJSONField([]byte(" {  }"), "k", "v", false)))
	assert.JSONEq(t, `{"k":"new","a":1}`, string(withJSONField([]byte(`{"a":1,"k":"old"}`), "k", "new", true)))
	for _, tc := range []struct {
		body            string
		key             string
		present, object bool
	}{
		{`{"k":"x"}`, "x", true, true},
		{`{"k":5}`, "5", true, true},
		{`{"k":null}`, "", true, true},
		{` {"a":1}`, "", false, true},
		{`[1]`, "", false, false},
		{`{"a":`, "", false, false},
		{`null`, "", false, false},
	} {
		key, present, object := bodyKey([]byte(tc.body), "k")
		assert.Equal(t, tc.key, key, tc.body)
		assert.Equal(t, tc.present, present, tc.body)
		assert.Equal(t, tc.object, object, tc.body)
	}
}
