// Package loadgen holds what the benchmark drivers share: servers under
// test run as processes of their own, with their CPU and memory read from
// /proc, and a cheap closed-loop webhook load generator.
package loadgen

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

// Server is a server under test, run as a process of its own so that its
// memory and CPU are its alone.
type Server struct {
	Name    string
	Cmd     *exec.Cmd
	LogPath string
	Public  string // host:port of the public listener
	Admin   string // host:port of the admin listener, if any
	Pprof   string // host:port of net/http/pprof, if any
	done    chan struct{}
	waitErr error
}

// StartServer runs bin with args and env, its output in logPath, and waits
// until it logs its public address and answers /healthz.
func StartServer(ctx context.Context, name, bin string, args, env []string, logPath string) (*Server, error) {
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
	s := &Server{Name: name, Cmd: cmd, LogPath: logPath, done: make(chan struct{})}
	go func() {
		s.waitErr = cmd.Wait()
		close(s.done)
	}()
	if err := s.awaitListening(ctx, 20*time.Second); err != nil {
		s.Stop(syscall.SIGKILL)
		return nil, err
	}
	return s, nil
}

// awaitListening reads the server's JSON log until the line carrying
// public_addr (both `nouvelhook serve` and benchsrv log one), then polls
// /healthz.
func (s *Server) awaitListening(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for s.Public == "" {
		select {
		case <-s.done:
			return fmt.Errorf("%s exited before listening (%v); log: %s", s.Name, s.waitErr, s.Tail())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not log its address within %v; log: %s", s.Name, limit, s.Tail())
		}
		s.readAddrs()
	}
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get("http://" + s.Public + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s /healthz: %v", s.Name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *Server) readAddrs() {
	b, err := os.ReadFile(s.LogPath)
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
			s.Public, s.Admin, s.Pprof = line.Public, line.Admin, line.Pprof
			return
		}
	}
}

// Tail is the end of the server's log, for an error message.
func (s *Server) Tail() string {
	b, _ := os.ReadFile(s.LogPath)
	if len(b) > 600 {
		b = b[len(b)-600:]
	}
	return strings.TrimSpace(string(b))
}

// CPUTime is the user plus system CPU the process has used so far
// (/proc/PID/stat; Linux reports it in USER_HZ = 100 ticks a second).
func (s *Server) CPUTime() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.Cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	return StatCPU(b)
}

// Memory returns VmHWM (peak resident set) and VmRSS, in bytes, from
// /proc/PID/status.
func (s *Server) Memory() (peak, now int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.Cmd.Process.Pid))
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

// Stop sends sig and waits for the process to end, killing it after 15 s.
// It returns the process's exit error for SIGTERM; a SIGKILL is expected
// to end it with that signal.
func (s *Server) Stop(sig syscall.Signal) error {
	select {
	case <-s.done:
		return s.waitErr
	default:
	}
	if err := s.Cmd.Process.Signal(sig); err != nil {
		return err
	}
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		s.Cmd.Process.Kill()
		<-s.done
		return fmt.Errorf("%s did not stop within 15 s of %v; killed", s.Name, sig)
	}
	if sig == syscall.SIGKILL {
		return nil
	}
	return s.waitErr
}

// MachineCPU is the CPU time all processes have used so far, every core
// together (the cpu line of /proc/stat: all but idle and iowait), so a round
// can tell how much went to processes other than the two under test.
func MachineCPU() time.Duration {
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

// StatCPU is utime plus stime from the text of /proc/PID/stat (USER_HZ =
// 100 ticks a second).
func StatCPU(b []byte) (time.Duration, error) {
	// Fields after the command name, which is in parentheses and may hold
	// spaces: state is the first, utime the 12th, stime the 13th.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("unreadable /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// SelfCPU is this process's own CPU time so far (the load generator's),
// user plus system.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
