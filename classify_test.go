package payretry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestClassifyStatus(t *testing.T) {
	cases := map[int]Class{
		200: ClassSuccess, 201: ClassSuccess, 204: ClassSuccess, 299: ClassSuccess,
		400: ClassBadRequest, 401: ClassUnauthorized, 403: ClassForbidden, 404: ClassNotFound,
		409: ClassConflict, 422: ClassUnprocessable, 429: ClassRateLimited,
		500: ClassServerError, 501: ClassServerError, 503: ClassServerError, 599: ClassServerError,
		100: ClassOther, 301: ClassOther, 304: ClassOther, 405: ClassOther, 418: ClassOther, 600: ClassOther,
	}
	for code, want := range cases {
		assert.Equal(t, want, Classify(&http.Response{StatusCode: code}, nil), "status %d", code)
	}
	assert.Equal(t, ClassOther, Classify(nil, nil))
}

func TestClassifyError(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want Class
	}{
		{"dial", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("x")}, ClassNetwork},
		{"dns", fmt.Errorf("wrapped: %w", &net.DNSError{Err: "no such host", Name: "x.invalid"}), ClassNetwork},
		{"refused", &net.OpError{Op: "read", Err: syscall.ECONNREFUSED}, ClassNetwork},
		{"tls record", tls.RecordHeaderError{Msg: "bad"}, ClassNetwork},
		{"tls unknown authority", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, ClassNetwork},
		{"reset", &net.OpError{Op: "read", Err: syscall.ECONNRESET}, ClassTimeout},
		{"eof", io.EOF, ClassTimeout},
		{"unexpected eof", io.ErrUnexpectedEOF, ClassTimeout},
		{"attempt timeout", ErrAttemptTimeout, ClassTimeout},
		{"wrapped attempt timeout", fmt.Errorf("x: %w", ErrAttemptTimeout), ClassTimeout},
		{"canceled", context.Canceled, ClassCanceled},
		// A base transport's own time-outs match context.DeadlineExceeded
		// too; the Transport classes the caller's own deadline as canceled.
		{"deadline", context.DeadlineExceeded, ClassTimeout},
		{"other", errors.New("something"), ClassTimeout},
	}
	for _, c := range cases {
		assert.Equal(t, c.want, Classify(nil, c.err), c.name)
	}
}

func TestClassString(t *testing.T) {
	assert.Equal(t, "rate limited", ClassRateLimited.String())
	assert.Equal(t, "success", ClassSuccess.String())
	assert.Equal(t, "other", ClassOther.String())
	assert.Equal(t, "class(99)", Class(99).String())
	assert.Equal(t, "class(-1)", Class(-1).String())
	for c := ClassSuccess; c <= ClassOther; c++ {
		assert.NotContains(t, c.String(), "class(")
	}
}

func TestIsCompliance(t *testing.T) {
	yes := [][2]string{
		{"RFI_REQUIRED", ""}, {"rfi", ""}, {"COMPLIANCE_REVIEW", ""}, {"x", "An RFI is open: request for information"},
		{"", "Payout on compliance hold"}, {"OPEN-RFI", ""},
	}
	no := [][2]string{
		{"VERIFICATION_FAILED", ""}, {"INTERNAL_ERROR", "server verifies later"}, {"", "PCI compliance"}, {"", ""},
	}
	for _, c := range yes {
		assert.True(t, isCompliance(c[0], c[1]), c)
	}
	for _, c := range no {
		assert.False(t, isCompliance(c[0], c[1]), c)
	}
}
