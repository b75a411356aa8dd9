// Package testutil holds helpers shared by the tests of several packages.
package testutil

import (
	"testing"
	"time"
)

// CheckFor calls cond every `every` until it returns nil, and fails the test
// with cond's last error once timeout has passed. Tests poll with it instead
// of sleeping for a guessed time.
func CheckFor(t testing.TB, timeout, every time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %v: %v", timeout, err)
		}
		time.Sleep(every)
	}
}
