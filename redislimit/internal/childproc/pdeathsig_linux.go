package redisserver

import (
	"os/exec"
	"syscall"
)

// setPdeathsig kills redis-server if the test binary dies without cleaning up.
func setPdeathsig(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
