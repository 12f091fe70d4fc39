package payretry

import (
	"bytes"
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"
)

// newKey returns a random (version 4) UUID from crypto/rand (ORZCash Access
// API, 4.3 Idempotency: "A UUID key").
func newKey() string { return uuid.NewString() }

// safeMethod reports whether a method is safe to send twice without a key
// (RFC 9110 §9.2.1). PUT and DELETE are writes: a payment API may give them effects.
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions || m == http.MethodTrace
}

// lookup returns the first value of header field name in h and the key it is
// stored under: canonical, or any spelling set directly (h["idempotency-key"]).
func lookup(h http.Header, name string) (value, key string) {
	if v := h[name]; len(v) > 0 {
		return v[0], name
	}
	for k, v := range h {
		if len(v) > 0 && strings.EqualFold(k, name) {
			return v[0], k
		}
	}
	return "", ""
}

// keys is where a call's idempotency key and correlation id live.
type keys struct {
	key    string      // carried by the attempts; "" if none
	header http.Header // the attempts' header, when it differs from the caller's; nil otherwise
	name   string      // the header key that carries key, when it is a header
	// The chain that new keys follow (see Policy.derivedKey): from the
	// operation id, or from the caller's own key; random when both are "".
	kind, base string
	req        *http.Request // whose method and path the chain is for
	n          int           // the chain index of key
}

// chooseKeys chooses the call's key and correlation id before the first
// attempt: the caller's if set, else derived from the operation id op, else random.
func (t *Transport) chooseKeys(req *http.Request, b *body, op string) keys {
	p := &t.p
	k := keys{kind: "operation", req: req, base: op}
	wants := slices.Contains(p.KeyMethods, req.Method)
	set := func(name, value string) {
		if k.header == nil { // a copy of the caller's; its values are shared, never modified
			k.header = http.Header{}
			maps.Copy(k.header, req.Header)
		}
		k.header[name] = []string{value}
	}
	switch {
	case safeMethod(req.Method) && !wants: // sent again freely: a key decides nothing
	case p.IdempotencyHeader != "":
		if v, name := lookup(req.Header, p.IdempotencyHeader); v != "" {
			k.key, k.name, k.kind, k.base = v, name, "key", v
		} else if wants {
			k.key, k.name = k.derive(p), p.IdempotencyHeader
			set(k.name, k.key)
		}
	case p.IdempotencyField != "" && b.inMemory:
		v, present, object := bodyKey(b.buf, p.IdempotencyField)
		switch {
		case v != "":
			k.key, k.kind, k.base = v, "key", v
		case object && wants:
			k.key = k.derive(p)
			b.buf = withJSONField(b.buf, p.IdempotencyField, k.key, present)
		}
	case p.IdempotencyField == "":
		// Keys not managed: a caller's key in a standard header still makes a
		// write safe to replay. (A policy that manages keys names its own place.)
		for _, h := range [...]string{"Idempotency-Key", "X-Idempotency-Key"} {
			if v, name := lookup(req.Header, h); v != "" {
				k.key, k.name, k.kind, k.base = v, name, "key", v
				break
			}
		}
	}
	if h := p.CorrelationHeader; h != "" {
		if v, _ := lookup(req.Header, h); v == "" {
			id := newKey()
			if op != "" {
				// Verto API, Errors and Retries: "Generate a Vfx-Correlation-Id
				// for each logical operation": one per operation, across calls.
				id = p.derivedKey("correlation", nil, op, 0)
			}
			set(h, id)
		}
	}
	return k
}

// rekey gives the next attempts the chain's next key after a failure the
// provider stored under the key (ORZCash): a resumed operation walks the same keys.
func (t *Transport) rekey(req *http.Request, k *keys, b *body) {
	k.n++
	k.key = k.derive(&t.p)
	if f := t.p.IdempotencyField; f != "" {
		b.buf = withJSONField(b.buf, f, k.key, true)
		return
	}
	if k.header == nil {
		k.header = req.Header
	}
	k.header = maps.Clone(k.header)
	k.header[k.name] = []string{k.key}
}

// derive returns the key at index n of k's chain; a random one when it has no base.
func (k *keys) derive(p *Policy) string {
	if k.base == "" {
		return newKey()
	}
	return p.derivedKey(k.kind, k.req, k.base, k.n)
}

// bodyKey reads the key field of a JSON object body: the caller's key (a
// string's value, another non-null value's JSON text; null and "" are none),
// whether the member is present, and ok false when b is not one JSON object.
func bodyKey(b []byte, field string) (key string, present, ok bool) {
	b = bytes.Trim(b, " \t\r\n") // JSON's white space
	if len(b) == 0 || b[0] != '{' || !json.Valid(b) {
		return "", false, false
	}
	raw, present := member(b, field)
	var s string
	switch {
	case !present || string(raw) == "null":
		return "", present, true
	case raw[0] == '"' && bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw):
		return string(raw[1 : len(raw)-1]), true, true // a string without escapes
	case json.Unmarshal(raw, &s) == nil:
		return s, true, true
	}
	return string(raw), true, true
}

// member returns the last top-level member named field of the valid JSON
// object b without decoding it: a map of every member costs KeyStone's calls
// most of their time.
func member(b []byte, field string) (raw []byte, present bool) {
	i := 1 // after '{'
	for {
		i = skipSpace(b, i)
		if b[i] == '}' {
			return raw, present
		}
		name := b[i:skipString(b, i)]
		i = skipSpace(b, i+len(name)) + 1 // after ':'
		i = skipSpace(b, i)
		end := skipValue(b, i)
		if isName(name, field) {
			raw, present = b[i:end], true
		}
		if i = skipSpace(b, end); b[i] == ',' {
			i++
		}
	}
}

// isName reports whether a member's quoted name, escapes decoded, is field.
func isName(q []byte, field string) bool {
	if bytes.IndexByte(q, '\\') < 0 {
		return string(q[1:len(q)-1]) == field
	}
	var s string
	json.Unmarshal(q, &s)
	return s == field
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// skipString returns the end of the JSON string that starts at i.
func skipString(b []byte, i int) int {
	for i++; b[i] != '"'; i++ {
		if b[i] == '\\' {
			i++
		}
	}
	return i + 1
}

// skipValue returns the end of the JSON value that starts at i.
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		for depth := 0; ; i++ {
			switch b[i] {
			case '"':
				i = skipString(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
	}
	for i < len(b) && strings.IndexByte(",}] \t\r\n", b[i]) < 0 {
		i++ // a number, true, false or null
	}
	return i
}

// withJSONField returns a copy of the JSON object b with its top-level field
// set to value: inserted first, the caller's bytes unchanged, when absent;
// replaced, not doubled (parsers keep the last of two), when present.
func withJSONField(b []byte, field, value string, present bool) []byte {
	name, _ := json.Marshal(field)
	val, _ := json.Marshal(value)
	if present {
		var m map[string]json.RawMessage
		json.Unmarshal(b, &m)
		m[field] = val
		out, _ := json.Marshal(m)
		return out
	}
	rest := bytes.TrimLeft(b, " \t\r\n")[1:] // after '{'
	sep := ","
	if r := bytes.TrimLeft(rest, " \t\r\n"); len(r) == 0 || r[0] == '}' {
		sep = ""
	}
	return slices.Concat([]byte("{"), name, []byte(":"), val, []byte(sep), rest)
}
