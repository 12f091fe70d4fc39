package payretry

import (
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEncodeUUIDMatchesCanonicalForm(t *testing.T) {
	for range 100 {
		u := uuid.New()
		var text [keyLen]byte
		encodeUUID(&text, &u)
		assert.Equal(t, u.String(), string(text[:]))
	}
}

// Keys are version-4 UUIDs, distinct across batches and goroutines, each
// with a header value of its own that cannot reach its neighbour's.
func TestNewKeysAreDistinctV4UUIDs(t *testing.T) {
	const goroutines, perG = 8, 5 * keysPerBatch
	var mu sync.Mutex
	seen := make(map[string]bool, goroutines*perG)
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			keys := make([]string, 0, perG)
			for range perG {
				key, val := newKey()
				require.Equal(t, []string{key}, val)
				require.Equal(t, 1, cap(val), "appending to one value must not reach the next key's")
				keys = append(keys, key)
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
