package payretry

import (
	"context"
	"net/http"
	"strconv"

	"github.com/google/uuid"
)

// WithOperation returns a copy of ctx naming the payment a request belongs to by
// the caller's stable id, such as "order-8812/charge": a Transport derives the
// request's keys from it, so a restarted process sends the same keys (see the
// README, "Across restarts"). A key set on the request wins; an empty id fails
// the call with [ErrEmptyOperation].
func WithOperation(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, operationKey{}, id)
}

type operationKey struct{}

// operation returns the operation id in ctx, and whether there is one.
func operation(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(operationKey{}).(string)
	return id, ok
}

// keySpace is the name space of derived keys (RFC 9562 §5.5).
var keySpace = uuid.MustParse("11e55433-6391-490f-86d1-4df2bc08def4")

// derivedKey returns the nth key (0 for the first) of the chain that base (an
// operation id or a caller's key) starts for req's method and path (nil: none):
// a version-5 UUID of them, kind and the policy's Name and Account.
func (p *Policy) derivedKey(kind string, req *http.Request, base string, n int) string {
	target := ""
	if req != nil {
		target = req.Method + " " + req.URL.Path
	}
	name := p.Name + "\x00" + p.Account + "\x00" + kind + "\x00" + target + "\x00" + base + "\x00" + strconv.Itoa(n)
	return uuid.NewSHA1(keySpace, []byte(name)).String()
}
