package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"

	"github.com/payretry/payretry"
	"github.com/payretry/payretry/redislimit/internal/childproc"
)

// A run across processes: the parent (RunProcesses) starts one child
// process per replica, each running Child with its own Transport. The
// parent writes the child's Job as one JSON line to its stdin; the child sets
// up and answers a "ready" line on stdout; when every child is ready the
// parent writes "go" to each, and each child pays its share of the
// payments, writes its Report as one JSON line and exits. A child's stderr
// goes to the parent's error messages.

// Job is one replica's share of a run.
type Job struct {
	Replica    int
	URL        string // the provider's payment endpoint
	APIKey     string
	Workers    int
	References []string // the payments to make
	Deadline   time.Duration
	// Setup is ProcessConfig.Setup: how the child makes its limiter.
	Setup json.RawMessage
}

// Replica is what a child's setup makes of its Job.
type Replica struct {
	Policy payretry.Policy // of the child's Transport
	// Report, if set, is called after the run; its value, encoded as
	// JSON, is Report.Limiter.
	Report func() any
	// Close, if set, is called before the child returns.
	Close func()
}

// Report is what a child sends back.
type Report struct {
	Replica  int
	Outcomes []Outcome
	Elapsed  time.Duration   // from "go" to the last payment's outcome
	Limiter  json.RawMessage // Replica.Report's value
}

// ProcessConfig describes a run with each replica in a process of its own.
type ProcessConfig struct {
	URL, APIKey string
	Replicas    int
	Workers     int // per replica
	Payments    int // in total, spread evenly over the replicas
	Deadline    time.Duration
	Reference   string // prefixes the payments' references (see Reference)
	// Setup is given to every child in its Job.
	Setup any
	// Command returns the command of a child process that runs Child: the
	// same binary, re-executed (os.Args[0], os.Executable) with a flag or
	// an environment variable that says so. Its stdin, stdout and stderr
	// are RunProcesses'.
	Command func(replica int) *exec.Cmd
}

// child is a running child process.
type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  *bufio.Reader
	stderr *syncBuffer
	done   chan struct{} // closed when cmd.Wait returned
}

// RunProcesses runs cfg.Replicas child processes, starts their payments
// together and returns their combined outcomes and each one's Report. Every
// child has exited when it returns; those still running when ctx ends are
// killed.
func RunProcesses(ctx context.Context, cfg ProcessConfig) (Result, []Report, error) {
	setup, err := json.Marshal(cfg.Setup)
	if err != nil {
		return Result{}, nil, err
	}
	children := make([]*child, 0, cfg.Replicas)
	defer func() {
		for _, c := range children {
			_ = c.cmd.Process.Kill() // nothing if it exited
			<-c.done
		}
	}()
	for i := range cfg.Replicas {
		job := Job{Replica: i, URL: cfg.URL, APIKey: cfg.APIKey, Workers: cfg.Workers, Deadline: cfg.Deadline, Setup: setup}
		for n := i + 1; n <= cfg.Payments; n += cfg.Replicas {
			job.References = append(job.References, Reference(cfg.Reference, n))
		}
		c, err := startChild(cfg.Command(i), job)
		if err != nil {
			return Result{}, nil, fmt.Errorf("loadtest: replica %d: %w", i, err)
		}
		children = append(children, c)
	}
	ready := make(chan error, len(children))
	for _, c := range children {
		go func() {
			line, err := c.lines.ReadBytes('\n')
			if err == nil && string(bytes.TrimSpace(line)) != `{"ready":true}` {
				err = fmt.Errorf("said %q", line)
			}
			ready <- err
		}()
	}
	for i := range children {
		select {
		case err := <-ready:
			if err != nil {
				return Result{}, nil, fmt.Errorf("loadtest: a replica did not get ready: %w: %s", err, stderrs(children))
			}
		case <-ctx.Done():
			return Result{}, nil, fmt.Errorf("loadtest: %d of %d replicas ready: %w", i, len(children), ctx.Err())
		}
	}

	start := time.Now()
	for _, c := range children {
		if _, err := io.WriteString(c.stdin, "go\n"); err != nil {
			return Result{}, nil, fmt.Errorf("loadtest: %w: %s", err, stderrs(children))
		}
	}
	type reply struct {
		r   Report
		err error
	}
	replies := make(chan reply, len(children))
	for _, c := range children {
		go func() {
			var r Report
			line, err := c.lines.ReadBytes('\n')
			if err == nil {
				err = json.Unmarshal(line, &r)
			}
			replies <- reply{r, err}
		}()
	}
	reports := make([]Report, len(children))
	var outcomes []Outcome
	for range children {
		select {
		case rep := <-replies:
			if rep.err != nil {
				return Result{}, nil, fmt.Errorf("loadtest: a replica's report: %w: %s", rep.err, stderrs(children))
			}
			reports[rep.r.Replica] = rep.r
			for _, o := range rep.r.Outcomes {
				if o.ErrText != "" {
					o.Err = errors.New(o.ErrText)
					if o.DeadlineExceeded {
						o.Err = fmt.Errorf("%s: %w", o.ErrText, context.DeadlineExceeded)
					}
				}
				outcomes = append(outcomes, o)
			}
		case <-ctx.Done():
			return Result{}, nil, fmt.Errorf("loadtest: waiting for the replicas: %w", ctx.Err())
		}
	}
	elapsed := time.Since(start)
	for _, c := range children {
		_ = c.stdin.Close()
		select {
		case <-c.done:
		case <-ctx.Done():
			return Result{}, nil, fmt.Errorf("loadtest: waiting for the replicas to exit: %w", ctx.Err())
		}
		if ps := c.cmd.ProcessState; !ps.Success() {
			return Result{}, nil, fmt.Errorf("loadtest: a replica exited with %v: %s", ps, stderrs(children))
		}
	}
	return summarize(elapsed, outcomes), reports, nil
}

func startChild(cmd *exec.Cmd, job Job) (*child, error) {
	c := &child{cmd: cmd, stderr: &syncBuffer{}, done: make(chan struct{})}
	var err error
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	c.lines = bufio.NewReaderSize(out, 1<<20)
	cmd.Stderr = c.stderr
	childproc.KillWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = cmd.Wait(); close(c.done) }()
	b, err := json.Marshal(job)
	if err == nil {
		_, err = c.stdin.Write(append(b, '\n'))
	}
	if err != nil {
		_ = cmd.Process.Kill()
		<-c.done
		return nil, err
	}
	return c, nil
}

// stderrs returns what the children wrote to stderr, for error messages.
func stderrs(children []*child) string {
	var b bytes.Buffer
	for i, c := range children {
		if s := c.stderr.String(); s != "" {
			fmt.Fprintf(&b, "\n--- replica %d:\n%s", i, s)
		}
	}
	return b.String()
}

// Child is the child side of RunProcesses: it reads its Job from in, makes
// its Transport's policy with setup, says it is ready on out, waits for
// "go", pays its share and writes its Report to out.
func Child(ctx context.Context, in io.Reader, out io.Writer, setup func(Job) (Replica, error)) error {
	lines := bufio.NewReaderSize(in, 1<<20)
	line, err := lines.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("loadtest: reading the job: %w", err)
	}
	var job Job
	if err := json.Unmarshal(line, &job); err != nil {
		return fmt.Errorf("loadtest: the job: %w", err)
	}
	rep, err := setup(job)
	if err != nil {
		return err
	}
	if rep.Close != nil {
		defer rep.Close()
	}
	base := &http.Transport{MaxIdleConnsPerHost: job.Workers}
	defer base.CloseIdleConnections()
	t, err := payretry.NewTransport(base, rep.Policy)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(out, `{"ready":true}`+"\n"); err != nil {
		return err
	}
	if line, err := lines.ReadBytes('\n'); err != nil || string(line) != "go\n" {
		return fmt.Errorf("loadtest: waiting for go: %q, %v", line, err)
	}

	start := time.Now()
	outcomes := make([]Outcome, len(job.References))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range job.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := int(next.Add(1))
				if n > len(job.References) || ctx.Err() != nil {
					return
				}
				outcomes[n-1] = pay(ctx, t, job.URL, job.APIKey, job.Deadline, job.Replica, job.References[n-1])
			}
		}()
	}
	wg.Wait()
	report := Report{Replica: job.Replica, Outcomes: outcomes, Elapsed: time.Since(start)}
	if rep.Report != nil {
		if report.Limiter, err = json.Marshal(rep.Report()); err != nil {
			return err
		}
	}
	b, err := json.Marshal(report)
	if err != nil {
		return err
	}
	_, err = out.Write(append(b, '\n'))
	return err
}

// syncBuffer collects a child's stderr.
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
