package payretry

import (
	"context"
	"net/http/httptrace"
	"sync/atomic"
)

// wire records through httptrace whether the attempt under way asked for a
// connection and got one. Only asked-but-never-got proves nothing left: once it
// has a connection the request may be on its way (HTTP/2 flushes HEADERS early).
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
