package otelpayretry

import (
	"context"
	"strings"
	"sync"

	"github.com/payretry/payretry"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// downScoper is the in-process limiter of payretry.NewLimiter.
type downScoper interface{ DownScopes() []string }

// degrader is a shared limiter that can fall back to in-process pacing
// (redislimit.Limiter).
type degrader interface{ Degraded() bool }

// limiterObserver reports one limiter's state for one provider. Its
// callback must not reach the hooks, so that they can be collected.
type limiterObserver struct {
	provider string
	down     downScoper
	deg      degrader
	gauge    metric.Int64ObservableGauge
	degGauge metric.Int64ObservableGauge
	degOpts  []metric.ObserveOption

	mu     sync.Mutex
	scopes map[string][]metric.ObserveOption // scopes reported: the provider's, and any seen down
}

// registerLimiter registers the callback of the limiter gauges for
// p.Limiter, or returns nil when it has neither DownScopes nor Degraded.
func (h *hooks) registerLimiter(p payretry.Policy) metric.Registration {
	o := &limiterObserver{provider: h.provider, gauge: h.downScopes, degGauge: h.degraded}
	o.down, _ = p.Limiter.(downScoper)
	o.deg, _ = p.Limiter.(degrader)
	var insts []metric.Observable
	if o.down != nil {
		// The policy's scopes are reported from the start, 0 while up: the
		// provider's name, and its name and the name of each limit that
		// names methods or paths (see payretry.Limiter).
		o.scopes = map[string][]metric.ObserveOption{h.provider: o.scopeOpts(h.provider)}
		for _, l := range p.Limits {
			if len(l.Methods) > 0 || len(l.Paths) > 0 {
				s := h.provider + "/" + l.Name
				o.scopes[s] = o.scopeOpts(s)
			}
		}
		insts = append(insts, h.downScopes)
	}
	if o.deg != nil {
		o.degOpts = []metric.ObserveOption{metric.WithAttributeSet(attribute.NewSet(keyProvider.String(h.provider)))}
		insts = append(insts, h.degraded)
	}
	if len(insts) == 0 {
		return nil
	}
	reg, err := h.meter.RegisterCallback(o.observe, insts...)
	if err != nil {
		otel.Handle(err)
		return nil
	}
	return reg
}

func (o *limiterObserver) scopeOpts(scope string) []metric.ObserveOption {
	return []metric.ObserveOption{metric.WithAttributeSet(attribute.NewSet(
		keyProvider.String(o.provider), keyScope.String(scope)))}
}

// mine reports whether scope belongs to the provider: its name, or its name
// and a limit's ("smartretry/payment").
func (o *limiterObserver) mine(scope string) bool {
	return scope == o.provider || strings.HasPrefix(scope, o.provider+"/")
}

func (o *limiterObserver) observe(_ context.Context, obs metric.Observer) error {
	if o.deg != nil {
		var v int64
		if o.deg.Degraded() {
			v = 1
		}
		obs.ObserveInt64(o.degGauge, v, o.degOpts...)
	}
	if o.down == nil {
		return nil
	}
	down := map[string]bool{}
	for _, s := range o.down.DownScopes() {
		if o.mine(s) {
			down[s] = true
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for s := range down {
		if o.scopes[s] == nil {
			o.scopes[s] = o.scopeOpts(s)
		}
	}
	for s, opts := range o.scopes {
		var v int64
		if down[s] {
			v = 1
		}
		obs.ObserveInt64(o.gauge, v, opts...)
	}
	return nil
}
