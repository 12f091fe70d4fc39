package redisserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/payretry/payretry/redislimit/internal/childproc"
)

// NodeTimeout is the cluster-node-timeout of a Cluster's nodes: a master
// that has not answered its peers for this long is failed, and its replica
// takes over about a second later.
const NodeTimeout = time.Second

// Cluster is a Redis Cluster of redis-servers on loopback, made by
// redis-cli --cluster create: masters, each with its replicas, the 16384
// slots spread over the masters.
type Cluster struct {
	Nodes []*Server
	dir   string // the nodes' cluster configuration files
}

// StartCluster starts masters × (1 + replicas) servers in cluster mode on
// free loopback ports, joins them with redis-cli --cluster create and waits
// until every node reports the cluster ok and every replica is in sync.
func StartCluster(ctx context.Context, masters, replicas int) (_ *Cluster, err error) {
	cli, lerr := exec.LookPath("redis-cli")
	if lerr != nil {
		return nil, fmt.Errorf("redis-cli not found on PATH: %w", ErrNotInstalled)
	}
	dir, err := os.MkdirTemp("", "redislimit-cluster-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	for range masters * (1 + replicas) {
		s, err := start(ctx, func(port int) []string {
			bus, err := freePort()
			for err == nil && bus == port {
				bus, err = freePort()
			}
			if err != nil {
				return nil
			}
			return []string{"--cluster-enabled", "yes",
				"--cluster-config-file", filepath.Join(dir, fmt.Sprintf("nodes-%d.conf", port)),
				"--cluster-port", strconv.Itoa(bus),
				"--cluster-node-timeout", strconv.FormatInt(NodeTimeout.Milliseconds(), 10),
				// A replica takes over however long ago it last heard
				// from its master.
				"--cluster-replica-validity-factor", "0",
				// Replicas sync at once, not after the default 5 s.
				"--repl-diskless-sync-delay", "0",
				"--dir", dir}
		})
		if err != nil {
			return nil, err
		}
		c.Nodes = append(c.Nodes, s)
	}

	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, cli, args...)
	childproc.KillWithParent(cmd)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("redisserver: redis-cli --cluster create: %v: %s", err, out)
	}
	if err := c.waitReady(cctx, masters*(1+replicas)); err != nil {
		return nil, err
	}
	return c, nil
}

// waitReady waits until every node sees n nodes, all slots served and the
// cluster ok, and every replica's link to its master is up.
func (c *Cluster) waitReady(ctx context.Context, n int) error {
	want := []string{"cluster_state:ok", "cluster_slots_ok:16384", "cluster_known_nodes:" + strconv.Itoa(n)}
	var last string
	for {
		ready := true
		for _, s := range c.Nodes {
			info, err := Command(s.Addr, "CLUSTER", "INFO")
			if err != nil {
				ready, last = false, err.Error()
				break
			}
			for _, w := range want {
				if !strings.Contains(info, w) {
					ready, last = false, s.Addr+": "+info
				}
			}
			repl, err := Command(s.Addr, "INFO", "replication")
			if err != nil || (strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up")) {
				ready, last = false, s.Addr+": "+repl
			}
			if !ready {
				break
			}
		}
		if ready {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redisserver: cluster not ready: %w; last: %s", ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Addrs returns the addresses of all the nodes, masters and replicas.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.Nodes))
	for i, s := range c.Nodes {
		addrs[i] = s.Addr
	}
	return addrs
}

// Stop kills every node and removes their configuration files.
func (c *Cluster) Stop() {
	for _, s := range c.Nodes {
		s.Stop()
	}
	_ = os.RemoveAll(c.dir)
}

// KeySlot returns the slot of key, as the cluster computes it (CLUSTER
// KEYSLOT on the first node that answers).
func (c *Cluster) KeySlot(key string) (int, error) {
	var err error
	for _, s := range c.Nodes {
		var v string
		if v, err = Command(s.Addr, "CLUSTER", "KEYSLOT", key); err == nil {
			return strconv.Atoi(v)
		}
	}
	return 0, err
}

// MasterOf returns the node that serves slot as a master that is not
// failed, as the first node that answers sees it (CLUSTER NODES), or nil
// when none does.
func (c *Cluster) MasterOf(slot int) (*Server, error) {
	var nodes string
	err := errors.New("redisserver: no node answers")
	for _, s := range c.Nodes {
		if nodes, err = Command(s.Addr, "CLUSTER", "NODES"); err == nil {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	for line := range strings.Lines(nodes) {
		f := strings.Fields(line)
		if len(f) < 8 || !strings.Contains(f[2], "master") || strings.Contains(f[2], "fail") {
			continue
		}
		addr, _, _ := strings.Cut(f[1], "@")
		for _, r := range f[8:] {
			lo, hi, ok := strings.Cut(r, "-")
			if !ok {
				hi = lo
			}
			l, err1 := strconv.Atoi(lo)
			h, err2 := strconv.Atoi(hi)
			if err1 != nil || err2 != nil || slot < l || slot > h {
				continue
			}
			for _, s := range c.Nodes {
				if s.Addr == addr {
					return s, nil
				}
			}
			return nil, fmt.Errorf("redisserver: slot %d served by unknown node %s", slot, addr)
		}
	}
	return nil, nil
}

// Running reports whether the server's process is running.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}
