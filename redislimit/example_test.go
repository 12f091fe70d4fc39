package redislimit_test

import (
	"net/http"

	"github.com/payretry/payretry"
	"github.com/payretry/payretry/redislimit"
	"github.com/redis/go-redis/v9"
)

// Three replicas that each run this share the account's quota.
func ExampleNew() {
	rdb := redis.NewClient(&redis.Options{
		Addr:                  "127.0.0.1:6379",
		ContextTimeoutEnabled: true, // let the limiter's 50 ms bound reach the socket
	})
	policy := payretry.SmartRetry()
	policy.Limiter = redislimit.New(rdb, redislimit.Options{})
	t, err := payretry.NewTransport(nil, policy)
	if err != nil {
		panic(err)
	}
	client := &http.Client{Transport: t}
	_ = client
}
