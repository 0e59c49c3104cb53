package testenv

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// StartRedis starts a throwaway redis-server on a free loopback port, with
// its data in t.TempDir() (--save "" --appendonly yes), waits until it
// answers PING and kills it in t.Cleanup. Extra args are appended to the
// command line. It fails the test (never skips) if redis-server is missing.
func StartRedis(t testing.TB, args ...string) (addr string) {
	t.Helper()
	bin := lookRedis(t, "redis-server")
	dir := t.TempDir()
	port := freePort(t, false)
	addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	startServer(t, bin, dir, port, args...)
	return addr
}

// StartRedisCluster starts three redis-server masters with cluster mode on
// free loopback ports, joins them with `redis-cli --cluster create` (no
// replicas) and waits until every node reports cluster_state:ok. It returns
// the three addresses; all servers are killed in t.Cleanup.
func StartRedisCluster(t testing.TB) []string {
	t.Helper()
	bin := lookRedis(t, "redis-server")
	cli := lookRedis(t, "redis-cli")
	var addrs []string
	for i := range 3 {
		dir := filepath.Join(t.TempDir(), fmt.Sprintf("node%d", i))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		port := freePort(t, true)
		startServer(t, bin, dir, port,
			"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-node-timeout", "2000")
		addrs = append(addrs, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	}
	cmdArgs := append([]string{"--cluster", "create"}, addrs...)
	cmdArgs = append(cmdArgs, "--cluster-replicas", "0", "--cluster-yes")
	out, err := exec.Command(cli, cmdArgs...).CombinedOutput()
	if err != nil {
		t.Fatalf("testenv: redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, a := range addrs {
		for {
			info, err := command(a, "CLUSTER", "INFO")
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("testenv: cluster node %s not ready: %q %v", a, info, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return addrs
}

func lookRedis(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		for _, c := range []string{"/usr/bin/" + name, "/usr/local/bin/" + name, "/usr/sbin/" + name} {
			if _, err := os.Stat(c); err == nil {
				return c
			}
		}
		t.Fatalf("testenv: %s not found in PATH; install it (Debian/Ubuntu: apt-get install redis-server, which provides redis-server and redis-cli)", name)
	}
	return p
}

// freePort returns a loopback TCP port that is free right now; with
// clusterBus, port+10000 (the cluster bus) is free too.
func freePort(t testing.TB, clusterBus bool) int {
	t.Helper()
	for range 200 {
		var port int
		if clusterBus {
			port = 20000 + rand.IntN(25000)
		} else {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatalf("testenv: %v", err)
			}
			port = l.Addr().(*net.TCPAddr).Port
			l.Close()
			return port
		}
		if portFree(port) && portFree(port+10000) {
			return port
		}
	}
	t.Fatal("testenv: no free port pair for a cluster node")
	return 0
}

func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func startServer(t testing.TB, bin, dir string, port int, extra ...string) {
	t.Helper()
	logPath := filepath.Join(dir, "redis.log")
	args := []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--protected-mode", "no",
		"--daemonize", "no",
		"--save", "",
		"--appendonly", "yes",
		"--dir", dir,
		"--logfile", logPath,
	}
	args = append(args, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		t.Fatalf("testenv: starting %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		reply, err := command(addr, "PING")
		if err == nil && reply == "PONG" {
			return
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("testenv: redis-server on port %d exited: %v\n%s", port, err, tail(logPath))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: redis-server on %s did not answer PING: %v\n%s", addr, err, tail(logPath))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// command sends one command in RESP and returns a simple or bulk string reply.
func command(addr string, args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	switch {
	case strings.HasPrefix(line, "+"):
		return line[1:], nil
	case strings.HasPrefix(line, "-"):
		return "", fmt.Errorf("redis: %s", line[1:])
	case strings.HasPrefix(line, "$"):
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("redis: bad reply %q", line)
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	default:
		return line, nil
	}
}

func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}
