//go:build !linux

package childproc

import "os/exec"

// KillWithParent does nothing outside Linux: there the tests' cleanups
// alone stop their processes.
func KillWithParent(*exec.Cmd) {}
