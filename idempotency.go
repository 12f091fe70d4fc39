package payretry

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"maps"
	mrand "math/rand/v2"
	"net/http"
	"slices"
	"sync"

	"github.com/google/uuid"
)

// newKey returns a random (version 4) UUID from a cryptographically strong
// generator (see keyBatch), as seed 001_06ccf73c19d45813.txt asks of ORZCash
// keys ("A UUID key") and as the IETF Idempotency-Key draft recommends, and a
// one-element header value holding it.
func newKey() (key string, val []string) {
	b := keyBatches.Get().(*keyBatch)
	if b.next == len(b.vals) {
		b.fill()
	}
	i := b.next
	b.next++
	key, val = b.vals[i], b.vals[i:i+1:i+1]
	keyBatches.Put(b)
	return key, val
}

const (
	keysPerBatch = 32
	keyLen       = 36 // xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx
)

// A keyBatch holds keys made together: keysPerBatch keys whose bits come from
// a ChaCha8 stream keyed with 32 fresh bytes of crypto/rand (math/rand/v2
// documents ChaCha8 as a cryptographically strong generator), formatted into
// one string, with a header value each (vals[i:i+1:i+1], so that appending to
// one cannot reach the next). One read from the kernel and two allocations
// (the string and the values) make 32 keys. Batches are kept per P by a
// sync.Pool, so that concurrent calls do not contend for them.
//
// Keys are not secrets (each is sent in clear to the provider, beside the
// credentials that make it usable), so keys waiting in a batch need no more
// care than keys in flight. A key kept for long (in a resp.Request kept, in
// an *Error) keeps its batch's string and values in memory: about 1.6 KB.
// Every batch is keyed afresh from the kernel, so a process cloned from a
// memory snapshot repeats at most the keys left in the batches it had.
type keyBatch struct {
	vals   []string
	next   int
	stream mrand.ChaCha8 // reseeded for every batch; kept to spare its allocation
}

var keyBatches = sync.Pool{New: func() any { return new(keyBatch) }}

func (b *keyBatch) fill() {
	var seed [32]byte
	if _, err := rand.Read(seed[:]); err != nil {
		panic("payretry: crypto/rand failed: " + err.Error()) // crypto/rand.Read never fails (Go 1.24+)
	}
	b.stream.Seed(seed)
	clear(seed[:])
	var raw [keysPerBatch * 16]byte
	b.stream.Read(raw[:])
	var text [keysPerBatch * keyLen]byte
	for i := range keysPerBatch {
		u := (*uuid.UUID)(raw[i*16 : (i+1)*16])
		u[6] = u[6]&0x0f | 0x40 // version 4
		u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant
		encodeUUID((*[keyLen]byte)(text[i*keyLen:]), u)
	}
	all := string(text[:])
	b.vals = make([]string, keysPerBatch)
	for i := range b.vals {
		b.vals[i] = all[i*keyLen : (i+1)*keyLen]
	}
	b.next = 0
}

// encodeUUID writes u in its canonical lower-case text form.
func encodeUUID(dst *[keyLen]byte, u *uuid.UUID) {
	hex.Encode(dst[0:8], u[0:4])
	dst[8] = '-'
	hex.Encode(dst[9:13], u[4:6])
	dst[13] = '-'
	hex.Encode(dst[14:18], u[6:8])
	dst[18] = '-'
	hex.Encode(dst[19:23], u[8:10])
	dst[23] = '-'
	hex.Encode(dst[24:36], u[10:16])
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
	type header struct {
		name string
		val  []string
	}
	var add [2]header
	n := 0
	switch {
	case p.IdempotencyHeader != "":
		if v := first(c.req.Header, p.IdempotencyHeader); v != "" {
			c.key = v
		} else if c.wantsKey() {
			var val []string
			c.key, val = newKey()
			add[n] = header{p.IdempotencyHeader, val}
			n++
		}
	case p.IdempotencyField != "" && c.inMemory && jsonObject(c.buf):
		if v, ok := jsonField(c.buf, p.IdempotencyField); ok {
			c.key = v
		} else if c.wantsKey() {
			c.key, _ = newKey()
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
		_, val := newKey()
		add[n] = header{h, val}
		n++
	}
	if n == 0 {
		return
	}
	// A copy of the caller's map; the values are shared, never modified.
	hdr := maps.Clone(c.req.Header)
	if hdr == nil {
		hdr = make(http.Header, n)
	}
	for _, h := range add[:n] {
		hdr[h.name] = h.val // names are canonical
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
	c.key, _ = newKey()
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
