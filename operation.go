package payretry

import (
	"context"
	"net/http"
	"strconv"

	"github.com/google/uuid"
)

// WithOperation returns a copy of ctx that names the payment a request
// belongs to: id is the caller's stable id for one business operation, such
// as "order-8812/charge", the same across calls, replicas and restarts.
//
//	req = req.WithContext(payretry.WithOperation(ctx, "order-8812/charge"))
//
// A Transport then derives the request's idempotency key (and Verto's
// Vfx-Correlation-Id) from id instead of drawing a random one: the first key
// of an operation is always the same, and where a provider demands a new key
// after a stored failure (ORZCash) the next ones follow a fixed sequence. A
// process that dies mid-payment and a restarted one (or a second replica,
// or a user's second click) that sends the payment again with the same id
// reach the provider with the same keys, in the same order, and the provider
// answers the keys it has seen from its store instead of executing again.
// Keys are namespaced by the policy's Name and Account, so that two
// providers or two merchant accounts never share one, and by the request's
// method and path, so that a capture after a charge of the same operation
// is another request; two requests with one method, path and id are one
// payment. A key the caller sets on the request itself still wins.
//
// An empty id is an error at the call ([ErrEmptyOperation]), never a
// silent random key.
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
// operation id, or a caller's own key) starts for req (its method and path;
// nil for none): a version-5 UUID of the policy's Name and Account, kind,
// req's method and path, and base. Why that is no weaker than a random key:
// README, "Across restarts".
func (p *Policy) derivedKey(kind string, req *http.Request, base string, n int) string {
	target := ""
	if req != nil {
		target = req.Method + " " + req.URL.Path
	}
	name := p.Name + "\x00" + p.Account + "\x00" + kind + "\x00" + target + "\x00" + base + "\x00" + strconv.Itoa(n)
	return uuid.NewSHA1(keySpace, []byte(name)).String()
}
