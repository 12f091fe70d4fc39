package payretry

import (
	"bytes"
	"encoding/json"
	"net/http"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Keys are version-4 UUIDs in canonical form, distinct across goroutines.
func TestNewKeysAreDistinctV4UUIDs(t *testing.T) {
	const goroutines, perG = 8, 200
	var mu sync.Mutex
	seen := make(map[string]bool, goroutines*perG)
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			keys := make([]string, 0, perG)
			for range perG {
				keys = append(keys, newKey())
			}
			mu.Lock()
			defer mu.Unlock()
			for _, k := range keys {
				u, err := uuid.Parse(k)
				require.NoError(t, err)
				assert.Equal(t, uuid.Version(4), u.Version())
				assert.Equal(t, uuid.RFC4122, u.Variant())
				assert.Equal(t, u.String(), k, "canonical lower-case form")
				assert.False(t, seen[k], "key %s made twice", k)
				seen[k] = true
			}
		})
	}
	wg.Wait()
	assert.Len(t, seen, goroutines*perG)
}

func TestLookupFindsAnySpelling(t *testing.T) {
	h := http.Header{"idempotency-key": {"k1"}}
	v, name := lookup(h, "Idempotency-Key")
	assert.Equal(t, "k1", v)
	assert.Equal(t, "idempotency-key", name)

	h = http.Header{"Idempotency-Key": {"k2"}, "IDEMPOTENCY-KEY": {"k3"}}
	v, name = lookup(h, "Idempotency-Key")
	assert.Equal(t, "k2", v, "the canonical name first")
	assert.Equal(t, "Idempotency-Key", name)

	v, name = lookup(http.Header{"Idempotency-Key": {}}, "Idempotency-Key")
	assert.Empty(t, v)
	assert.Empty(t, name)
}

// bodyKey reads the caller's key from a JSON object body: a string's value,
// another value's JSON text; null, "" and an absent member are none.
func TestBodyKeyReadsTheCallersKey(t *testing.T) {
	for _, tc := range []struct {
		body, key       string
		present, object bool
	}{
		{`{"idempotency_key":"k1"}`, "k1", true, true},
		{`{"idempotency_key":12345}`, "12345", true, true},
		{`{"idempotency_key":{"a":1}}`, `{"a":1}`, true, true},
		{`{"idempotency_key":null}`, "", true, true},
		{`{"idempotency_key":""}`, "", true, true},
		{`{"amount":1}`, "", false, true},
		{`not json`, "", false, false},
	} {
		key, present, object := bodyKey([]byte(tc.body), "idempotency_key")
		assert.Equal(t, []any{tc.key, tc.present, tc.object}, []any{key, present, object}, tc.body)
	}
}

// bodyKey reads a member without decoding the object: it agrees with
// encoding/json's reading of a map (escaped names, nested values, duplicate
// members, non-objects).
func FuzzBodyKey(f *testing.F) {
	for _, s := range []string{`{"idempotency_key":"k1","amount":1}`, `{"a":{"idempotency_key":"x"},"idempotency_key":2}`,
		`{"idempotency\u005fkey":"esc"}`, `{"idempotency_key":"a","idempotency_key":"b"}`, ` [1]`, `{"x":"}\"{"}`,
		`{"idempotency_key":null}`, `{"idempotency_key":[1,{"a":"]"}]}`, `{}`, `nul`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		key, present, ok := bodyKey([]byte(s), "idempotency_key")
		var m map[string]json.RawMessage
		wantOK := json.Unmarshal([]byte(s), &m) == nil && m != nil
		require.Equal(t, wantOK, ok, "%q", s)
		if !ok {
			return
		}
		raw, wantPresent := m["idempotency_key"]
		require.Equal(t, wantPresent, present, "%q", s)
		var want string
		if raw = bytes.TrimSpace(raw); wantPresent && string(raw) != "null" && json.Unmarshal(raw, &want) != nil {
			want = string(raw)
		}
		require.Equal(t, want, key, "%q", s)
	})
}
