//go:build !linux

package redisserver

import "os/exec"

func setPdeathsig(*exec.Cmd) {}
