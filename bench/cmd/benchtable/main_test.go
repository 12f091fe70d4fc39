package main

import "testing"

func TestSplitAndLabel(t *testing.T) {
	c, client, ok := splitClient("BenchmarkOverheadParallel/base=inmem/method=GET/client=failsafe")
	if !ok || client != "failsafe" || c != "BenchmarkOverheadParallel/base=inmem/method=GET" {
		t.Fatalf("%q %q %v", c, client, ok)
	}
	if got := label(c); got != "inmem GET, parallel" {
		t.Errorf("label %q", got)
	}
	if got := label("BenchmarkOverhead/base=loopback/method=POST"); got != "loopback POST, sequential" {
		t.Errorf("label %q", got)
	}
}
