package payretry

import (
	"bytes"
	"io"
	"net/http"
)

// body is a call's request body, replayable through the caller's GetBody or
// from memory within Policy.MaxBufferedBody; a larger one is sent once, never retried.
type body struct {
	src        *http.Request // the caller's request
	buf        []byte        // the whole body, when inMemory
	inMemory   bool
	first      io.ReadCloser // the first attempt's body, when it is not src.Body
	replayable bool
}

// newBody prepares req's body; with mustBuffer (the key goes into it) it is read
// into memory whatever its GetBody. On an error the caller's body is closed.
func newBody(req *http.Request, limit int64, mustBuffer bool) (body, error) {
	b := body{src: req}
	switch {
	case req.Body == nil || req.Body == http.NoBody, req.GetBody != nil && !mustBuffer:
		b.replayable = true
		return b, nil
	case limit < 0 && !mustBuffer:
		return b, nil
	case limit < 0:
		limit = defaultMaxBufferedBody
	}
	buf, err := io.ReadAll(io.LimitReader(req.Body, limit+1))
	if err != nil {
		req.Body.Close()
		return b, err
	}
	if int64(len(buf)) > limit {
		b.first = &struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(buf), req.Body), req.Body}
		return b, nil
	}
	req.Body.Close()
	b.buf, b.inMemory, b.replayable = buf, true, true
	return b, nil
}

// set gives r, the request of attempt n (1 for the first), its body. With
// rewind false the base transport gets no GetBody, so that it cannot re-send
// the body on its own (Go's HTTP/2 client does after a PROTOCOL_ERROR reset).
func (b *body) set(r *http.Request, n int, rewind bool) error {
	switch {
	case b.src.Body == nil || b.src.Body == http.NoBody:
		if !rewind { // else Go's HTTP/2 client re-sends a request without a body on its own
			r.Body, r.GetBody, r.ContentLength = io.NopCloser(bytes.NewReader(nil)), nil, 0
		}
		return nil
	case b.inMemory:
		buf := b.buf
		r.Body = io.NopCloser(bytes.NewReader(buf))
		r.ContentLength = int64(len(buf))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
	case n == 1 && b.first != nil:
		r.Body = b.first
	case n > 1:
		rc, err := b.src.GetBody()
		if err != nil {
			return err
		}
		r.Body = rc
	}
	if !rewind {
		r.GetBody = nil
	}
	return nil
}

// close closes the caller's body when no attempt was sent with it.
func (b *body) close() {
	if b.src.Body != nil && !b.inMemory {
		b.src.Body.Close()
	}
}
