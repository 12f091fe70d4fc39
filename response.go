package payretry

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
)

const (
	// maxErrorBody bounds how much of an error response is read to classify
	// and decode it; the rest stays readable behind it.
	maxErrorBody = 64 << 10
	// maxDrain bounds how much of a discarded response is read so that its
	// connection can be reused; a longer body is closed instead.
	maxDrain = 64 << 10
	// maxMessage bounds the provider message kept in an Error.
	maxMessage = 512
)

// peekedBody is a response body whose first bytes were read to classify and
// decode it. Reading it yields the whole original body from its start.
type peekedBody struct {
	buf    []byte
	off    int
	rest   io.Reader // remainder of the original body; nil when buf holds all of it
	orig   io.Closer // original body, closed at most once
	closed bool
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
	if b.closed {
		return nil
	}
	b.closed = true
	if b.orig == nil {
		return nil
	}
	return b.orig.Close()
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
	if len(buf) > maxErrorBody {
		return buf[:maxErrorBody]
	}
	return buf
}

// discard drains (bounded) and closes a response that is not returned, so that
// its connection can be reused.
func discard(resp *http.Response) {
	if resp == nil || resp.Body == nil {
		return
	}
	if pb, ok := resp.Body.(*peekedBody); !ok || pb.rest != nil {
		io.CopyN(io.Discard, resp.Body, maxDrain)
	}
	resp.Body.Close()
}

// cancelBody ends an attempt's context when the caller closes the body.
type cancelBody struct {
	io.ReadCloser
	done context.CancelCauseFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.done(nil)
	return err
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

type validationItem struct {
	Loc  []json.RawMessage `json:"loc"`
	Msg  string            `json:"msg"`
	Type string            `json:"type"`
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
	if errText == "" && len(v.Err) > 0 && v.Err[0] == '{' {
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
	if len(raw) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var n json.Number
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
	var items []validationItem
	if json.Unmarshal(raw, &items) != nil {
		return ""
	}
	var b strings.Builder
	for i, it := range items {
		if i > 0 {
			b.WriteString("; ")
		}
		for j, l := range it.Loc {
			if j > 0 {
				b.WriteByte('.')
			}
			b.WriteString(rawString(l))
		}
		if len(it.Loc) > 0 {
			b.WriteString(": ")
		}
		b.WriteString(it.Msg)
	}
	return b.String()
}

// redactMessage bounds a provider message and masks runs of 12 or more
// digits, single spaces and dashes allowed between them ("4111 1111 1111
// 1111"), which may be card or account numbers echoed back by the provider.
func redactMessage(s string) string {
	if len(s) > maxMessage {
		s = s[:maxMessage] + "..."
	}
	var b strings.Builder
	masked := false
	for i := 0; i < len(s); {
		j, digits := digitRun(s, i)
		switch {
		case digits >= 12:
			b.WriteString("[" + strconv.Itoa(digits) + " digits]")
			masked = true
			i = j
		case j > i:
			b.WriteString(s[i:j])
			i = j
		default:
			b.WriteByte(s[i])
			i++
		}
	}
	if !masked {
		return s
	}
	return b.String()
}

// digitRun returns the end of the run of digits starting at i, single spaces
// and dashes between digits included, and how many digits it holds.
func digitRun(s string, i int) (end, digits int) {
	end = i
	for k := i; k < len(s); {
		switch c := s[k]; {
		case c >= '0' && c <= '9':
			digits++
			k++
			end = k
		case (c == ' ' || c == '-') && digits > 0 && k+1 < len(s) && s[k+1] >= '0' && s[k+1] <= '9':
			k++
		default:
			return end, digits
		}
	}
	return end, digits
}

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
