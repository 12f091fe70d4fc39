package childproc

import (
	"os/exec"
	"syscall"
)

// KillWithParent makes the kernel kill cmd's process (SIGKILL) when the
// process that starts it dies, even without cleaning up. Call it before
// cmd.Start.
func KillWithParent(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
