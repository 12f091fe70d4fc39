package payretrytest_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/payretry/payretry/payretrytest"
)

// A KeyStone settlement sent twice with the same idempotency_key is created
// once: 201, then 200 with the same body.
func Example() {
	s := payretrytest.NewServer(payretrytest.KeyStone, payretrytest.Options{
		Clock: func() time.Time { return time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC) },
	})
	defer s.Close()

	body := `{"reference":"order-1","amount":1000,"currency":"EUR","idempotency_key":"k-1"}`
	for range 2 {
		resp, err := s.Client().Post(s.PaymentURL(), "application/json", strings.NewReader(body))
		if err != nil {
			fmt.Println(err)
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(resp.StatusCode, string(b))
	}
	fmt.Println("executions:", s.Executions("order-1"))
	// Output:
	// 201 {"id":"stl_000001","reference":"order-1","status":"executed"}
	// 200 {"id":"stl_000001","reference":"order-1","status":"executed"}
	// executions: 1
}

// A payment that fails after executing is paid twice by a client that
// retries without an idempotency key, and once by one that reuses its key.
func ExampleFaultPlan() {
	s := payretrytest.NewServer(payretrytest.Verto, payretrytest.Options{
		Plan: payretrytest.FaultPlan{Seed: 7, FailAfter: 1},
	})
	defer s.Close()

	post := func(ref, key string) int {
		req, _ := http.NewRequest(http.MethodPost, s.PaymentURL(),
			strings.NewReader(`{"reference":"`+ref+`","amount":500,"currency":"EUR"}`))
		req.Header.Set("Vfx-Correlation-Id", "corr-"+ref)
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := s.Client().Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// Up to three attempts, until a 2xx.
	for _, key := range []string{"", "key-b"} {
		ref := "naive"
		if key != "" {
			ref = "careful"
		}
		var statuses []int
		for len(statuses) < 3 && (len(statuses) == 0 || statuses[len(statuses)-1] >= 300) {
			statuses = append(statuses, post(ref, key))
		}
		fmt.Println(ref, statuses, "executions:", s.Executions(ref))
	}
	fmt.Println("duplicates:", s.Duplicates())
	// Output:
	// naive [503 503 503] executions: 3
	// careful [503 201] executions: 1
	// duplicates: 2
}
