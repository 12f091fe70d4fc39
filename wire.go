package payretry

import (
	"context"
	"net/http/httptrace"
	"sync/atomic"
)

// wire records what the base transport did on the wire for the attempt
// under way, through net/http/httptrace. A request is proved never to have
// left only when the base reported asking for a connection (so it reports
// through httptrace at all) and never obtained one: once a connection is
// obtained the request may be on its way, even before WroteHeaders fires
// (HTTP/2 flushes the HEADERS frame first).
type wire struct {
	asked, got atomic.Bool
	hooks      httptrace.ClientTrace
}

// trace returns ctx with a ClientTrace that reports to w, composed with any
// trace the caller set.
func (w *wire) trace(ctx context.Context) context.Context {
	w.hooks.GetConn = func(string) { w.asked.Store(true) }
	w.hooks.GotConn = func(httptrace.GotConnInfo) { w.got.Store(true) }
	return httptrace.WithClientTrace(ctx, &w.hooks)
}

// reset forgets the previous attempt.
func (w *wire) reset() {
	w.asked.Store(false)
	w.got.Store(false)
}

// neverLeft reports whether the attempt provably sent nothing.
func (w *wire) neverLeft() bool { return w.asked.Load() && !w.got.Load() }
