package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// server is a server under test, run as a process of its own so that its
// memory and CPU are its alone.
type server struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	public  string // host:port of the public listener
	admin   string // host:port of the admin listener, if any
	pprof   string // host:port of net/http/pprof, if any
	done    chan struct{}
	waitErr error
}

// startServer runs bin with args and env, its output in logPath, and waits
// until it logs its public address and answers /healthz.
func startServer(ctx context.Context, name, bin string, args, env []string, logPath string) (*server, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child holds its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	// If the driver dies, so does the server: nothing is left on a port.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	s := &server{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		s.waitErr = cmd.Wait()
		close(s.done)
	}()
	if err := s.awaitListening(ctx, 20*time.Second); err != nil {
		s.stop(syscall.SIGKILL)
		return nil, err
	}
	return s, nil
}

// awaitListening reads the server's JSON log until the line carrying
// public_addr (both `nouvelhook serve` and benchsrv log one), then polls
// /healthz.
func (s *server) awaitListening(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for s.public == "" {
		select {
		case <-s.done:
			return fmt.Errorf("%s exited before listening (%v); log: %s", s.name, s.waitErr, s.tail())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not log its address within %v; log: %s", s.name, limit, s.tail())
		}
		s.readAddrs()
	}
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get("http://" + s.public + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s /healthz: %v", s.name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *server) readAddrs() {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var line struct {
			Public string `json:"public_addr"`
			Admin  string `json:"admin_addr"`
			Pprof  string `json:"pprof_addr"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Public != "" {
			s.public, s.admin, s.pprof = line.Public, line.Admin, line.Pprof
			return
		}
	}
}

// tail is the end of the server's log, for an error message.
func (s *server) tail() string {
	b, _ := os.ReadFile(s.logPath)
	if len(b) > 600 {
		b = b[len(b)-600:]
	}
	return strings.TrimSpace(string(b))
}

// cpuTime is the user plus system CPU the process has used so far
// (/proc/PID/stat; Linux reports it in USER_HZ = 100 ticks a second).
func (s *server) cpuTime() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	return statCPU(b)
}

// memory returns VmHWM (peak resident set) and VmRSS, in bytes, from
// /proc/PID/status.
func (s *server) memory() (peak, now int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return 0, 0, err
	}
	for line := range strings.Lines(string(b)) {
		key, val, ok := strings.Cut(line, ":")
		if !ok || (key != "VmHWM" && key != "VmRSS") {
			continue
		}
		f := strings.Fields(val) // "12345 kB"
		if len(f) != 2 || f[1] != "kB" {
			return 0, 0, fmt.Errorf("unreadable %s %q", key, val)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, 0, err
		}
		if key == "VmHWM" {
			peak = kb << 10
		} else {
			now = kb << 10
		}
	}
	if peak == 0 {
		return 0, 0, errors.New("no VmHWM in /proc status")
	}
	return peak, now, nil
}

// stop sends sig and waits for the process to end, killing it after 15 s.
// It returns the process's exit error for SIGTERM; a SIGKILL is expected
// to end it with that signal.
func (s *server) stop(sig syscall.Signal) error {
	select {
	case <-s.done:
		return s.waitErr
	default:
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		return err
	}
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
		return fmt.Errorf("%s did not stop within 15 s of %v; killed", s.name, sig)
	}
	if sig == syscall.SIGKILL {
		return nil
	}
	return s.waitErr
}

// machineCPU is the CPU time all processes have used so far, every core
// together (the cpu line of /proc/stat: all but idle and iowait), so a round
// can tell how much went to processes other than the two under test.
func machineCPU() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}
