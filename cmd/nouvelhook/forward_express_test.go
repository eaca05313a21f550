package main

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// expressDir holds Nouvel's sample Express receiver as its docs write it
// (it checks the HMAC of JSON.stringify(req.body), not of the bytes
// received), with express installed by `npm ci` from the committed lock.
const expressDir = "testdata/express"

// startExpress runs the sample receiver with node on a free port and
// returns its webhook URL and its output. Without node or the installed
// fixture the test is skipped, except in CI (CI or NOUVELHOOK_TEST_BROWSER
// set), where it fails.
func startExpress(t *testing.T, secret string) (string, *syncBuffer) {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("CI") != "" || os.Getenv("NOUVELHOOK_TEST_BROWSER") != "" {
			t.Fatalf(format, args...)
		}
		t.Skipf(format+" (run `npm ci` in cmd/nouvelhook/"+expressDir+")", args...)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("no node to run the Express receiver: %v", err)
	}
	if _, err := os.Stat(filepath.Join(expressDir, "node_modules", "express", "package.json")); err != nil {
		missing("express is not installed in %s: %v", expressDir, err)
	}
	out := &syncBuffer{}
	cmd := exec.Command(node, "server.js")
	cmd.Dir = expressDir
	cmd.Env = append(crashEnviron(), "PORT=0", "NOUVEL_WEBHOOK_SECRET="+secret)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start node: %v", err)
	}
	exited := make(chan struct{})
	port := make(chan string, 1)
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(io.TeeReader(stdout, out))
		re := regexp.MustCompile(`listening on port (\d+)`)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case port <- m[1]:
				default:
				}
			}
		}
		cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	select {
	case p := <-port:
		return "http://127.0.0.1:" + p + "/webhooks/nouvel", out
	case <-exited:
		t.Fatalf("the Express receiver exited before listening:\n%s", out)
	case <-time.After(20 * time.Second):
		t.Fatalf("the Express receiver did not listen within 20 s:\n%s", out)
	}
	return "", nil
}

// nouvelhook in front of the app as Nouvel's docs write it: the Express
// receiver re-serialises the body it parsed and checks the HMAC of that,
// so a forward is accepted only if its bytes are exactly what JavaScript's
// JSON.stringify writes. Each job ended by a signed webhook reaches the
// handler, which answers 200 and logs it; the titles hold what an encoder
// might escape differently (<, >, &, quotes, accents, U+2028). /metrics
// counts them.
func TestForwardToExpressReceiver(t *testing.T) {
	hook, out := startExpress(t, testSecret)
	s := startService(t, map[string]string{"NOUVELHOOK_FORWARD_URL": hook})

	jobs := []struct {
		id, body, log string
	}{
		{
			id: "express-job-1",
			body: `{"event":"job.completed","jobId":"express-job-1","status":"completed","totalProjects":1,` +
				`"completedProjects":1,"failedProjects":0,"projects":[{"projectId":"p1",` +
				`"title":"Caf\u00e9 \"Spring\" <Sale> & more\u2028today","status":"completed",` +
				`"videoUrl":"https://cdn.example/v/1.mp4?sig=a&b=<c>"}]}`,
			log: "Job express-job-1 completed: 1 video(s)",
		},
		{
			id: "clx8k9v2t0001qz8x7r4e5w6m",
			body: `{"event":"job.completed","jobId":"clx8k9v2t0001qz8x7r4e5w6m","status":"partial","totalProjects":2,` +
				`"completedProjects":1,"failedProjects":1,"projects":[` +
				`{"projectId":"p1","title":"Ad 1","status":"completed","videoUrl":"https://cdn.example/v/2.mp4"},` +
				`{"projectId":"p2","title":"Ad 2","status":"failed","videoUrl":null}]}`,
			log: "Job clx8k9v2t0001qz8x7r4e5w6m partial: 2 video(s)",
		},
	}
	for _, j := range jobs {
		body := []byte(j.body)
		if code, ans := s.deliver(body, sign(testSecret, body)); code != http.StatusOK {
			t.Fatalf("deliver %s: got %d %s, want 200", j.id, code, ans)
		}
	}
	for _, j := range jobs {
		var got jobForward
		ok := waitFor(20*time.Second, func() bool {
			s.adminGet("/v1/jobs/"+j.id, &got)
			return got.Forward != nil && got.Forward.State != "pending"
		})
		if !ok || got.Forward.State != "delivered" || got.Forward.LastStatus != http.StatusOK || got.Forward.Attempts != 1 {
			t.Errorf("%v; want delivered at the first attempt, the Express handler answering 200\nExpress output:\n%s", got, out)
		}
		if !waitFor(5*time.Second, func() bool { return strings.Contains(out.String(), j.log+"\n") }) {
			t.Errorf("the Express handler did not log %q:\n%s", j.log, out)
		}
	}
	// The service's metrics count them, as served on the admin listener.
	req, err := http.NewRequest(http.MethodGet, s.Admin+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, metrics := do(t, req); !strings.Contains(metrics, "\nnouvelhook_forwards_total{outcome=\"delivered\"} 2\n") ||
		!strings.Contains(metrics, "\nnouvelhook_forward_queue_depth 0\n") {
		t.Errorf("GET /metrics: want 2 forwards delivered and none waiting, got:\n%s", grepLines(metrics, "nouvelhook_forward"))
	}
	if strings.Contains(out.String(), "Error") {
		t.Errorf("the Express handler failed:\n%s", out)
	}
	if !strings.Contains(out.String(), "  Café \"Spring\" <Sale> & more\u2028today: https://cdn.example/v/1.mp4?sig=a&b=<c>\n") {
		t.Errorf("the Express handler did not log the first job's project as sent:\n%s", out)
	}
}

// grepLines returns the lines of text that contain sub.
func grepLines(text, sub string) string {
	var out []string
	for line := range strings.Lines(text) {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "")
}
