package demo

import (
	"fmt"
	"time"

	"github.com/payretry/payretry"
)

// LogAttempts returns a Policy.OnAttempt hook that prints every attempt of a
// call that did not succeed at once: its outcome (class, status and the
// provider's error code), its idempotency key, marked as new or the same as
// the previous attempt's, and what comes next. A call that succeeds on its
// first attempt prints nothing.
//
// The hook remembers the previous attempt's key, so it suits calls made one
// at a time; it must not be called concurrently.
func LogAttempts() func(payretry.Attempt) {
	var lastKey string
	return func(a payretry.Attempt) {
		key := ""
		if a.Number > 1 {
			key = " (new key)"
			if a.IdempotencyKey == lastKey {
				key = " (same key)"
			}
		}
		lastKey = a.IdempotencyKey
		if a.Class == payretry.ClassSuccess && a.Number == 1 {
			return
		}
		fmt.Printf("    attempt %d: %s, key %.8s…%s; %s\n", a.Number, outcome(a), a.IdempotencyKey, key, next(a))
	}
}

// outcome describes what an attempt got: "server error 503 SERVICE_UNAVAILABLE",
// "success 201" or "timeout (no response)".
func outcome(a payretry.Attempt) string {
	switch {
	case a.StatusCode == 0:
		return fmt.Sprintf("%v (no response)", a.Class)
	case a.Code != "":
		return fmt.Sprintf("%v %d %s", a.Class, a.StatusCode, a.Code)
	}
	return fmt.Sprintf("%v %d", a.Class, a.StatusCode)
}

// next describes what follows an attempt: a retry and its wait, the reason
// there is none, or "done".
func next(a payretry.Attempt) string {
	switch {
	case a.Retry:
		return fmt.Sprintf("retry in %v (%v)", a.Wait.Round(time.Millisecond), a.WaitSource)
	case a.Reason != nil:
		return "no retry: " + a.Reason.Error()
	}
	return "done"
}
