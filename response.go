package payretry

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
)

const (
	// maxErrorBody bounds how much of an error response is read to decode it,
	// and of a discarded one to reuse its connection.
	maxErrorBody = 64 << 10
	maxMessage   = 512 // bounds the provider message kept in an Error
)

// peekedBody is a response body whose first bytes were read to classify and
// decode it. Reading it yields the whole original body from its start.
type peekedBody struct {
	buf  []byte
	off  int
	rest io.Reader // remainder of the original body; nil when buf holds all of it
	orig io.Closer // original body until closed
}

func (b *peekedBody) Read(p []byte) (int, error) {
	if b.off < len(b.buf) {
		n := copy(p, b.buf[b.off:])
		b.off += n
		return n, nil
	}
	if b.rest == nil {
		return 0, io.EOF
	}
	return b.rest.Read(p)
}

func (b *peekedBody) Close() error {
	orig := b.orig
	if b.orig = nil; orig == nil {
		return nil
	}
	return orig.Close()
}

// errReader replays a read error after the bytes read before it.
type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// peekBody returns up to maxErrorBody bytes from the start of resp.Body and
// leaves resp.Body readable from its start. Calling it again returns the same
// bytes without reading.
func peekBody(resp *http.Response) []byte {
	if pb, ok := resp.Body.(*peekedBody); ok {
		return pb.buf
	}
	if resp.Body == nil || resp.Body == http.NoBody {
		return nil
	}
	orig := resp.Body
	buf, err := io.ReadAll(io.LimitReader(orig, maxErrorBody+1))
	pb := &peekedBody{buf: buf, orig: orig}
	switch {
	case err != nil:
		pb.rest = errReader{err}
	case len(buf) > maxErrorBody:
		pb.rest = orig
	default:
		// The whole body is in memory: give the connection back now.
		orig.Close()
		pb.orig = nil
	}
	resp.Body = pb
	return buf[:min(len(buf), maxErrorBody)]
}

// discard drains (bounded) and closes a response that is not returned, so that
// its connection can be reused.
func discard(resp *http.Response) {
	if resp == nil || resp.Body == nil {
		return
	}
	if pb, ok := resp.Body.(*peekedBody); !ok || pb.rest != nil {
		io.CopyN(io.Discard, resp.Body, maxErrorBody)
	}
	resp.Body.Close()
}

// cancelBody ends an attempt's context when the caller closes the body.
type cancelBody struct {
	io.ReadCloser
	done context.CancelCauseFunc
}

func (b *cancelBody) Close() error {
	defer b.done(nil)
	return b.ReadCloser.Close()
}

// errorBody holds the fields of the error formats of the four providers and of
// RFC 9457 problem details.
type errorBody struct {
	ErrorCode  string          `json:"errorCode"`   // Verto
	ReasonCode string          `json:"reason_code"` // SmartRetry
	ErrorCode2 string          `json:"error_code"`
	Code       json.RawMessage `json:"code"`   // ORZCash and generic: string or number
	Detail     json.RawMessage `json:"detail"` // KeyStone: string or list; RFC 9457
	Message    string          `json:"message"`
	Title      string          `json:"title"` // RFC 9457
	Type       string          `json:"type"`  // RFC 9457
	Err        json.RawMessage `json:"error"` // string or {"code","message"}
}

// decodeError extracts a provider's machine-readable code and human message
// from an error body. Bodies that are not JSON objects give empty strings.
func decodeError(body []byte) (code, msg string) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '{' {
		return "", ""
	}
	var v errorBody
	if json.Unmarshal(body, &v) != nil {
		return "", ""
	}
	var nested struct {
		Code    json.RawMessage `json:"code"`
		Message string          `json:"message"`
	}
	errText := rawString(v.Err)
	if len(v.Err) > 0 && v.Err[0] == '{' {
		json.Unmarshal(v.Err, &nested)
	}
	code = cmp.Or(v.ErrorCode, v.ReasonCode, v.ErrorCode2, rawString(v.Code), rawString(nested.Code))
	if code == "" && v.Type != "" && v.Type != "about:blank" {
		code = v.Type
	}
	msg = cmp.Or(detailText(v.Detail), v.Message, nested.Message, errText, v.Title)
	return code, redactMessage(msg)
}

// rawString returns a JSON string's value or a number's text.
func rawString(raw json.RawMessage) string {
	var s string
	var n json.Number
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	if json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	return ""
}

// detailText reads KeyStone's detail: a string, or a list of validation items
// that it joins as "body.amount: Field required; ...".
func detailText(raw json.RawMessage) string {
	if s := rawString(raw); s != "" || len(raw) == 0 || raw[0] != '[' {
		return s
	}
	var items []struct {
		Loc []json.RawMessage
		Msg string
	}
	if json.Unmarshal(raw, &items) != nil {
		return ""
	}
	parts := make([]string, len(items))
	for i, it := range items {
		loc := make([]string, len(it.Loc))
		for j, l := range it.Loc {
			loc[j] = rawString(l)
		}
		if parts[i] = it.Msg; len(loc) > 0 {
			parts[i] = strings.Join(loc, ".") + ": " + it.Msg
		}
	}
	return strings.Join(parts, "; ")
}

// redactMessage bounds a provider message and masks runs of 12 or more
// digits, single spaces and dashes allowed between them ("4111 1111 1111
// 1111"), which may be card or account numbers echoed back by the provider.
func redactMessage(s string) string {
	if len(s) > maxMessage {
		s = s[:maxMessage] + "..."
	}
	return digitRunRe.ReplaceAllStringFunc(s, func(run string) string {
		n := len(run) - strings.Count(run, " ") - strings.Count(run, "-")
		if n < 12 {
			return run
		}
		return "[" + strconv.Itoa(n) + " digits]"
	})
}

var digitRunRe = regexp.MustCompile(`[0-9](?:[ -]?[0-9])*`)

// listDetail reports whether an error body has a list-shaped "detail", the
// validation error format of KeyStone (KeyStone API, HTTP status codes).
func listDetail(body []byte) bool {
	var v struct {
		Detail json.RawMessage `json:"detail"`
	}
	return json.Unmarshal(body, &v) == nil && len(v.Detail) > 0 && v.Detail[0] == '['
}

// forClassify returns a copy of resp for a policy's Classify: when resp is
// not a 2xx its body reads the first maxErrorBody bytes from their start, so
// that the classifier may read it freely and resp's own body stays whole.
func forClassify(resp *http.Response) *http.Response {
	pb, ok := resp.Body.(*peekedBody)
	if !ok {
		return resp
	}
	v := *resp
	v.Body = &peekedBody{buf: pb.buf[:min(len(pb.buf), maxErrorBody)]}
	return &v
}

// bodyInMemory reports whether resp's whole body has been read into memory.
func bodyInMemory(resp *http.Response) bool {
	pb, ok := resp.Body.(*peekedBody)
	return ok && pb.rest == nil
}

// onClose arranges for done to run when resp's body is closed, or now when
// the body is in memory or absent.
func onClose(resp *http.Response, done context.CancelCauseFunc) {
	if resp.Body == nil || bodyInMemory(resp) {
		done(nil)
		return
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, done: done}
}
