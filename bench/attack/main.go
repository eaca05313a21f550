// Command attack measures what a flood of slow clients does to the public
// listener of a built nouvelhook binary: it runs the binary on loopback,
// opens N attacking connections from child processes of its own (each
// process holds at most -per-proc of them, under the open-file limit), and
// meanwhile sends signed deliveries one at a time on fresh connections,
// timing each to its 200. It prints the latencies (median, max), the
// server's peak RSS and open files, and how many accept errors it logged.
//
// Modes:
//   - slowbody: valid headers with a well-formed signature and a large
//     Content-Length, then one body byte a second; reconnects when cut.
//   - slowheader: ~1 MB of header bytes sent quickly, never finished, then
//     one byte a second; reconnects when cut.
//
// Loopback only, bounded in time:
//
//	go build -o /tmp/attack ./bench/attack
//	/tmp/attack -bin /tmp/nh-new -mode slowbody -conns 5000
package main

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const secret = "attack-secret"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "attack:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		bin      = flag.String("bin", "", "nouvelhook binary to attack")
		mode     = flag.String("mode", "slowbody", "slowbody or slowheader")
		conns    = flag.Int("conns", 5000, "attacking connections, all processes together")
		perProc  = flag.Int("per-proc", 9000, "attacking connections per child process")
		samples  = flag.Int("samples", 9, "signed deliveries timed during the attack, one a second")
		ramp     = flag.Duration("ramp", 15*time.Second, "time given to the attackers to connect before sampling")
		timeout  = flag.Duration("timeout", 30*time.Second, "a signed delivery with no answer by then counts as lost")
		env      = flag.String("env", "", "extra server environment, comma-separated K=V")
		child    = flag.Bool("child", false, "internal: run as an attacking child")
		target   = flag.String("target", "", "internal: host:port to attack")
		srcIndex = flag.Int("src", 0, "internal: which loopback source addresses to use")
	)
	flag.Parse()
	if *child {
		return attackChild(*target, *mode, *conns, *srcIndex)
	}
	if *bin == "" {
		return fmt.Errorf("-bin is required")
	}
	return drive(*bin, *mode, *conns, *perProc, *samples, *ramp, *timeout, *env)
}

// drive runs the server, the baseline samples, the attack and the samples
// under attack, and prints one result block.
func drive(bin, mode string, conns, perProc, samples int, ramp, timeout time.Duration, extraEnv string) error {
	dir, err := os.MkdirTemp("", "attack-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	pub, adm := freePort(), freePort()
	env := append(os.Environ(),
		"NOUVEL_WEBHOOK_SECRET="+secret,
		"NOUVELHOOK_LISTEN="+pub, "NOUVELHOOK_ADMIN_LISTEN="+adm,
		"NOUVELHOOK_DB="+filepath.Join(dir, "nh.db"), "NOUVELHOOK_LOG_LEVEL=info")
	if extraEnv != "" {
		env = append(env, strings.Split(extraEnv, ",")...)
	}
	logPath := filepath.Join(dir, "server.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	srv := exec.Command(bin, "serve")
	srv.Env, srv.Stdout, srv.Stderr = env, logf, logf
	srv.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := srv.Start(); err != nil {
		return err
	}
	logf.Close()
	defer func() {
		srv.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { srv.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			srv.Process.Kill()
			<-done
		}
	}()
	if err := awaitHealthy("http://"+pub+"/healthz", 20*time.Second); err != nil {
		return err
	}
	base := probeSeries(pub, 5, timeout)

	self, err := os.Executable()
	if err != nil {
		return err
	}
	var kids []*exec.Cmd
	var connected atomic.Int64
	perKid := make([]atomic.Int64, (conns+perProc-1)/perProc)
	for i := 0; i*perProc < conns; i++ {
		n := min(perProc, conns-i*perProc)
		k := exec.Command(self, "-child", "-target", pub, "-mode", mode, "-conns", strconv.Itoa(n), "-src", strconv.Itoa(i))
		k.Stderr = os.Stderr
		k.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		out, err := k.StdoutPipe()
		if err != nil {
			return err
		}
		if err := k.Start(); err != nil {
			return err
		}
		kids = append(kids, k)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if v, ok := strings.CutPrefix(sc.Text(), "open "); ok {
					n, _ := strconv.ParseInt(v, 10, 64)
					perKid[i].Store(n)
				}
			}
		}()
	}
	defer func() {
		for _, k := range kids {
			k.Process.Kill()
			k.Wait()
		}
	}()
	sum := func() int64 {
		var s int64
		for i := range perKid {
			s += perKid[i].Load()
		}
		connected.Store(s)
		return s
	}

	var peakRSS, peakFDs atomic.Int64
	stopWatch := make(chan struct{})
	var watch sync.WaitGroup
	watch.Go(func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			if r := rssKiB(srv.Process.Pid); r > peakRSS.Load() {
				peakRSS.Store(r)
			}
			if f := openFiles(srv.Process.Pid); f > peakFDs.Load() {
				peakFDs.Store(f)
			}
			select {
			case <-stopWatch:
				return
			case <-t.C:
			}
		}
	})

	deadline := time.Now().Add(ramp)
	for time.Now().Before(deadline) && sum() < int64(conns) {
		time.Sleep(250 * time.Millisecond)
	}
	openAtStart := sum()
	under := probeSeries(pub, samples, timeout)
	openAtEnd := sum()
	close(stopWatch)
	watch.Wait()

	logText, _ := os.ReadFile(logPath)
	acceptErrs := bytes.Count(logText, []byte("Accept error"))
	plain := 0
	for _, l := range bytes.Split(logText, []byte("\n")) {
		if len(l) > 0 && l[0] != '{' {
			plain++
		}
	}
	fmt.Printf("bin=%s mode=%s conns=%d attackers_connected=%d..%d\n", filepath.Base(bin), mode, conns, openAtStart, openAtEnd)
	fmt.Printf("  baseline: %s\n", base)
	fmt.Printf("  attacked: %s\n", under)
	fmt.Printf("  server peak RSS %.0f MiB, peak open files %d, accept-error lines %d, non-JSON log lines %d\n",
		float64(peakRSS.Load())/1024, peakFDs.Load(), acceptErrs, plain)
	return nil
}

// series is the timings of signed deliveries.
type series struct {
	lat  []time.Duration
	lost int
	errs []string
}

func (s series) String() string {
	if len(s.lat) == 0 {
		return fmt.Sprintf("0 answered, %d lost %v", s.lost, s.errs)
	}
	l := slices.Clone(s.lat)
	slices.Sort(l)
	return fmt.Sprintf("%d answered 200, %d lost; median %s, max %s; all %v", len(l), s.lost,
		l[len(l)/2].Round(time.Millisecond), l[len(l)-1].Round(time.Millisecond), roundAll(s.lat))
}

func roundAll(ds []time.Duration) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond).String()
	}
	return out
}

// probeSeries sends n signed deliveries, one started each second (each on
// its own connection, so one that hangs does not delay the next), and
// waits for all.
func probeSeries(addr string, n int, timeout time.Duration) series {
	var mu sync.Mutex
	var s series
	var wg sync.WaitGroup
	stamp := time.Now().UnixNano()
	for i := range n {
		if i > 0 {
			time.Sleep(time.Second)
		}
		wg.Go(func() {
			d, err := probe(addr, fmt.Sprintf("probe-%d-%d", stamp, i), timeout)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				s.lost++
				s.errs = append(s.errs, err.Error())
				return
			}
			s.lat = append(s.lat, d)
		})
	}
	wg.Wait()
	return s
}

// probe sends one signed delivery on a fresh connection and times it from
// the dial to the 200.
func probe(addr, jobID string, timeout time.Duration) (time.Duration, error) {
	body := []byte(`{"event":"job.completed","jobId":"` + jobID + `","status":"completed","totalProjects":1,` +
		`"completedProjects":1,"failedProjects":0,"projects":[{"projectId":"p","title":"Ad","status":"completed","videoUrl":"https://cdn.example/v.mp4"}]}`)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	client := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/webhooks/nouvel", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Nouvel-Signature", hex.EncodeToString(m.Sum(nil)))
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("after %s: %w", time.Since(start).Round(time.Millisecond), err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("status %d", resp.StatusCode)
	}
	return time.Since(start), nil
}

// attackChild keeps n attacking connections open to target until killed,
// printing "open N" every second.
func attackChild(target, mode string, n, src int) error {
	var open atomic.Int64
	pad := bytes.Repeat([]byte("a"), 8<<10)
	sig := strings.Repeat("ab", 32) // well-formed, wrong
	for i := range n {
		// Spread over source addresses so that ephemeral ports last.
		local := &net.TCPAddr{IP: net.IPv4(127, 0, byte(1+src), byte(2+i%200))}
		go func() {
			d := net.Dialer{Timeout: 30 * time.Second, LocalAddr: local}
			for {
				c, err := d.Dial("tcp", target)
				if err != nil {
					time.Sleep(200 * time.Millisecond)
					continue
				}
				open.Add(1)
				switch mode {
				case "slowbody":
					fmt.Fprintf(c, "POST /webhooks/nouvel HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
						"X-Nouvel-Signature: %s\r\nContent-Length: 1000000\r\n\r\n", sig)
				case "slowheader":
					io.WriteString(c, "POST /webhooks/nouvel HTTP/1.1\r\nHost: x\r\n")
					for j := 0; j < 128; j++ { // 128 header lines of 8 KiB: 1 MiB
						if _, err := fmt.Fprintf(c, "X-Pad-%d: %s\r\n", j, pad); err != nil {
							break
						}
					}
				}
				for {
					if _, err := c.Write([]byte("a")); err != nil {
						break
					}
					time.Sleep(time.Second)
				}
				c.Close()
				open.Add(-1)
			}
		}()
	}
	for {
		fmt.Println("open", open.Load())
		time.Sleep(time.Second)
	}
}

func freePort() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func awaitHealthy(url string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer 200 within %s", url, within)
}

// rssKiB is a process's resident set size, from /proc.
func rssKiB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	return 0
}

func openFiles(pid int) int64 {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0
	}
	return int64(len(ents))
}
