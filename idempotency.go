package payretry

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"slices"
	"sync"

	"github.com/google/uuid"
)

// newKey returns a random (version 4) UUID whose bits come from crypto/rand,
// as seed 001_06ccf73c19d45813.txt asks of ORZCash keys and as the IETF
// Idempotency-Key draft recommends.
func newKey() string {
	u := keyBits()
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant
	return u.String()
}

// keySource hands out crypto/rand bytes read 32 keys at a time, so that a key
// costs a copy rather than a read from the kernel's generator. Bytes are
// cleared as they are handed out.
var keySource struct {
	mu  sync.Mutex
	buf [32 * 16]byte
	off int
}

func keyBits() (u uuid.UUID) {
	ks := &keySource
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.off == 0 {
		if _, err := rand.Read(ks.buf[:]); err != nil {
			panic("payretry: crypto/rand failed: " + err.Error()) // crypto/rand.Read never fails (Go 1.24+)
		}
	}
	copy(u[:], ks.buf[ks.off:ks.off+16])
	clear(ks.buf[ks.off : ks.off+16])
	ks.off = (ks.off + 16) % len(ks.buf)
	return u
}

// safeMethod reports whether a method is safe to send twice without a key:
// GET, HEAD, OPTIONS and TRACE (RFC 9110 §9.2.1). PUT and DELETE are
// idempotent in HTTP terms, but a payment API may give them side effects, so
// like net/http's own retry logic payretry treats them as writes.
func safeMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// jsonObject reports whether body is one valid JSON object, the only shape in
// which a key field can be placed.
func jsonObject(body []byte) bool {
	b := bytes.TrimLeft(body, " \t\r\n")
	return len(b) > 0 && b[0] == '{' && json.Valid(b)
}

// jsonField returns the string value of a top-level field of a JSON object.
func jsonField(body []byte, field string) (string, bool) {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return "", false
	}
	raw, ok := m[field]
	if !ok {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil || s == "" {
		return "", false
	}
	return s, true
}

// withJSONField returns a copy of the JSON object body with its top-level
// field set to value. When the field is absent it is inserted first and the
// caller's bytes follow unchanged.
func withJSONField(body []byte, field, value string) []byte {
	name, _ := json.Marshal(field)
	val, _ := json.Marshal(value)
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) == nil {
		if _, present := m[field]; present {
			// Replace the member (even a null or empty one) rather than add a
			// second: parsers keep the last of two members of one name.
			m[field] = val
			out, _ := json.Marshal(m)
			return out
		}
	}
	b := bytes.TrimLeft(body, " \t\r\n")[1:] // after '{'
	out := make([]byte, 0, len(body)+len(name)+len(val)+2)
	out = append(out, '{')
	out = append(out, name...)
	out = append(out, ':')
	out = append(out, val...)
	if rest := bytes.TrimLeft(b, " \t\r\n"); len(rest) > 0 && rest[0] != '}' {
		out = append(out, ',')
	}
	return append(out, b...)
}

// wantsKey reports whether the policy gives this call's method a key.
func (c *call) wantsKey() bool {
	return slices.Contains(c.t.p.KeyMethods, c.req.Method)
}

// prepareHeaders chooses the key of the call, once, before the first attempt,
// and the correlation id: a key or id the caller set is kept.
func (c *call) prepareHeaders() {
	p := &c.t.p
	var add [2][2]string
	n := 0
	switch {
	case p.IdempotencyHeader != "":
		if v := first(c.req.Header, p.IdempotencyHeader); v != "" {
			c.key = v
		} else if c.wantsKey() {
			c.key = newKey()
			add[n] = [2]string{p.IdempotencyHeader, c.key}
			n++
		}
	case p.IdempotencyField != "" && c.inMemory && jsonObject(c.buf):
		if v, ok := jsonField(c.buf, p.IdempotencyField); ok {
			c.key = v
		} else if c.wantsKey() {
			c.key = newKey()
			c.buf = withJSONField(c.buf, p.IdempotencyField, c.key)
		}
	}
	if c.key == "" && c.write && p.IdempotencyHeader == "" && p.IdempotencyField == "" {
		// A key the caller set in a standard header makes a write safe to
		// replay when the policy does not manage keys. A policy that does
		// names where its provider reads the key; another header is not it.
		for _, h := range [...]string{"Idempotency-Key", "X-Idempotency-Key"} {
			if v := first(c.req.Header, h); v != "" {
				c.key = v
				break
			}
		}
	}
	if h := p.CorrelationHeader; h != "" && first(c.req.Header, h) == "" {
		add[n] = [2]string{h, newKey()}
		n++
	}
	if n == 0 {
		return
	}
	hdr := make(http.Header, len(c.req.Header)+n)
	for k, v := range c.req.Header {
		hdr[k] = v // values are shared, never modified
	}
	for i, kv := range add[:n] {
		c.vals[i] = kv[1]
		hdr[kv[0]] = c.vals[i : i+1 : i+1] // names are canonical
	}
	c.header = hdr
}

func (c *call) attemptHeader() http.Header {
	if c.header != nil {
		return c.header
	}
	return c.req.Header
}

// rekey gives the next attempt a new key, after a definitive failure stored
// by a provider that replays every response under a key.
func (c *call) rekey() {
	c.key = newKey()
	if f := c.t.p.IdempotencyField; f != "" {
		c.buf = withJSONField(c.buf, f, c.key)
		return
	}
	h := c.attemptHeader().Clone()
	h.Set(c.keyHeader(), c.key)
	c.header = h
}

func (c *call) keyHeader() string {
	if c.t.p.IdempotencyHeader != "" {
		return c.t.p.IdempotencyHeader
	}
	return "Idempotency-Key"
}
