// Package redisserver runs throw-away redis-servers on loopback for the
// tests and the example: no persistence, free ports, stopped by Stop. Start
// runs one server; StartCluster a Redis Cluster of them.
package redisserver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/payretry/payretry/redislimit/internal/childproc"
)

// ErrNotInstalled is returned by Start when no redis-server is on PATH.
var ErrNotInstalled = errors.New("redis-server not found on PATH (Debian: apt-get install redis-server)")

// Server is a redis-server subprocess listening on 127.0.0.1.
type Server struct {
	Addr string // 127.0.0.1:port
	port int
	bin  string
	args []string // beyond port, bind and persistence

	mu   sync.Mutex
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

// Start starts redis-server on a free loopback port and waits until it
// answers PING.
func Start(ctx context.Context) (*Server, error) {
	return start(ctx)
}

// start starts a server with extra arguments, made from its port by args.
// A port found free may be taken by another process before the server
// binds it: then it tries again with other ports.
func start(ctx context.Context, args ...func(port int) []string) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, ErrNotInstalled
	}
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), port: port, bin: bin}
		for _, a := range args {
			more := a(port)
			if more == nil {
				return nil, errors.New("redisserver: no free port")
			}
			s.args = append(s.args, more...)
		}
		err = s.Restart(ctx)
		if err == nil {
			return s, nil
		}
		if attempt == 5 || !strings.Contains(err.Error(), "Address already in use") {
			return nil, err
		}
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Restart starts the server again on its port after Stop.
func (s *Server) Restart(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("redisserver: already running")
	}
	args := []string{"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"}
	cmd := exec.Command(s.bin, append(args, s.args...)...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	childproc.KillWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redisserver: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.cmd, s.out, s.done = cmd, out, done

	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := ping(s.Addr); err == nil {
			return nil
		}
		select {
		case <-done:
			s.cmd = nil
			return fmt.Errorf("redisserver: redis-server exited: %s", out.String())
		case <-ctx.Done():
			s.stopLocked()
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stopLocked()
			return fmt.Errorf("redisserver: no PONG from %s within 10s: %s", s.Addr, out.String())
		}
	}
}

// Stop kills the server (SIGKILL: it gets no chance to answer anything more)
// and waits for it to exit. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

func (s *Server) stopLocked() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGCONT) // in case it was paused
	_ = s.cmd.Process.Kill()
	s.mu.Unlock()
	<-s.done
	s.mu.Lock()
	s.cmd = nil
}

// Pause stops the process (SIGSTOP): connections are accepted by the kernel
// but nothing is answered, as from an overloaded server. Resume continues it.
func (s *Server) Pause() error { return s.signal(syscall.SIGSTOP) }

// Resume continues a paused server.
func (s *Server) Resume() error { return s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return errors.New("redisserver: not running")
	}
	return s.cmd.Process.Signal(sig)
}

// ping sends PING and expects PONG.
func ping(addr string) error {
	v, err := Command(addr, "PING")
	if err == nil && v != "PONG" {
		err = fmt.Errorf("redisserver: PING answered %q", v)
	}
	return err
}

// Command sends one command (words without spaces) to addr on a connection
// of its own and returns the reply: a status or bulk string (an integer as
// its digits). An error reply is an error.
func Command(addr string, words ...string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	var req bytes.Buffer
	fmt.Fprintf(&req, "*%d\r\n", len(words))
	for _, w := range words {
		fmt.Fprintf(&req, "$%d\r\n%s\r\n", len(w), w)
	}
	if _, err := c.Write(req.Bytes()); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", errors.New("redisserver: empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", fmt.Errorf("redisserver: %s", line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("redisserver: reply %q", line)
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return "", fmt.Errorf("redisserver: unexpected reply %q", line)
}

// syncBuffer collects the server's output, for error messages.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
