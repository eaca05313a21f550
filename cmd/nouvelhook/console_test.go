package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nouvelhook/nouvelhook/reconcile/nouveltest"
	"github.com/nouvelhook/nouvelhook/store"
)

// e2eDir is the console's browser tests, from this package's folder.
const e2eDir = "../../handler/console/e2e"

// consoleTools finds node, Chromium and the browser tests' installed
// packages. Without them the test skips, unless NOUVELHOOK_TEST_BROWSER=1
// (as CI sets it) makes that a failure.
func consoleTools(t *testing.T) (node, chromium, dir string) {
	t.Helper()
	missing := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		if os.Getenv("NOUVELHOOK_TEST_BROWSER") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg + " (set NOUVELHOOK_TEST_BROWSER=1 to fail instead)")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("no node command: apt-get install nodejs npm")
	}
	chromium = os.Getenv("NOUVELHOOK_CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		missing("no browser at %s: apt-get install chromium", chromium)
	}
	dir, err = filepath.Abs(e2eDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core")); err != nil {
		missing("playwright-core is not installed: run npm ci in handler/console/e2e")
	}
	return node, chromium, dir
}

// forwardApp stands in for the app forwards go to: it answers a job's
// forwards with the statuses refuse[jobId] lists, in turn, then 200, and
// keeps what it answered.
type forwardApp struct {
	mu       sync.Mutex
	refuse   map[string][]int
	answered map[string][]int
}

func (a *forwardApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body struct {
		JobID string `json:"jobId"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil || body.JobID == "" {
		http.Error(w, "body is not a forward", http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	status := http.StatusOK
	if n := len(a.answered[body.JobID]); n < len(a.refuse[body.JobID]) {
		status = a.refuse[body.JobID][n]
	}
	a.answered[body.JobID] = append(a.answered[body.JobID], status)
	a.mu.Unlock()
	w.WriteHeader(status)
}

func (a *forwardApp) statuses(jobID string) []int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.answered[jobID])
}

// consoleEvent is a signed webhook body for jobID.
func consoleEvent(jobID, status, title, videoURL string) []byte {
	b, err := json.Marshal(map[string]any{
		"event": "job.completed", "jobId": jobID, "status": status,
		"totalProjects": 1, "completedProjects": 1, "failedProjects": 0,
		"projects": []map[string]string{{"projectId": "p-" + jobID, "title": title, "status": "completed", "videoUrl": videoURL}},
	})
	if err != nil {
		panic(err)
	}
	return b
}

// postSigned delivers body to a service's webhook path and wants a 200.
func postSigned(t *testing.T, public string, body []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, public+"/webhooks/nouvel", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Nouvel-Signature", sign(testSecret, body))
	if code, ans := do(t, req); code != http.StatusOK {
		t.Fatalf("webhook: got %d %s, want 200", code, ans)
	}
}

// TestConsole runs the console in headless Chromium against the built
// binary on a real SQLite file, with the stand-in Nouvel polled for a
// running job, a local server for the videos, and a local app that
// refuses some forwards. Each case is one run of
// handler/console/e2e/console.test.mjs; screenshots go to
// $NOUVELHOOK_SCREENSHOTS (a temp dir when unset).
func TestConsole(t *testing.T) {
	node, chromium, dir := consoleTools(t)
	shots := os.Getenv("NOUVELHOOK_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	} else if abs, err := filepath.Abs(shots); err == nil {
		shots = abs
	}
	bin := buildNouvelhook(t)

	videos := httptest.NewServer(http.FileServer(http.Dir(filepath.Join(dir, "testdata"))))
	defer videos.Close()
	videoURL := videos.URL + "/clip.webm"

	const forwardJob, forwardJobPage, goneJob = "fwd-queue-retry", "fwd-page-retry", "fwd-gone"
	app := &forwardApp{answered: map[string][]int{}, refuse: map[string][]int{
		forwardJob: {503, 503}, forwardJobPage: {503, 503}, goneJob: {410},
	}}
	appSrv := httptest.NewServer(app)
	defer appSrv.Close()

	nouvel := nouveltest.New(nouveltest.Options{APIKey: "nvl_console", WebhookSecret: testSecret})
	defer nouvel.Close()
	running := nouvel.AddJob(nouveltest.JobSpec{ID: "still-running", Polls: 1 << 20})
	byPoll := nouvel.AddJob(nouveltest.JobSpec{ID: "ended-by-poll", Polls: 2, Outcome: store.StatusPartial, Projects: 2})

	svc := startChild(t, bin, filepath.Join(t.TempDir(), "console.db"),
		"NOUVEL_API_KEY=nvl_console", "NOUVEL_API_BASE_URL="+nouvel.URL(), "NOUVELHOOK_POLL_INTERVAL=1s",
		"NOUVELHOOK_FORWARD_URL="+appSrv.URL, "NOUVELHOOK_FORWARD_SCHEDULE=300ms")

	// The log, oldest first: two tracked jobs, the two whose forwards fail
	// at first, 55 more so that the list has a second page, and last the
	// job with a playable video, delivered once more with another status.
	var created []string
	for _, id := range []string{running, byPoll} {
		req, _ := http.NewRequest(http.MethodPost, svc.admin+"/v1/jobs", strings.NewReader(`{"jobId":"`+id+`"}`))
		req.Header.Set("Content-Type", "application/json")
		if code, ans := do(t, req); code != http.StatusCreated {
			t.Fatalf("track %s: got %d %s, want 201", id, code, ans)
		}
		created = append(created, id)
	}
	for _, id := range []string{forwardJob, forwardJobPage} {
		postSigned(t, svc.public, consoleEvent(id, "completed", "Forwarded ad", ""))
		created = append(created, id)
	}
	statuses := []string{"completed", "failed", "partial", "cancelled", "completed"}
	for i := range 55 {
		id := fmt.Sprintf("job-%02d-%s", i, statuses[i%len(statuses)])
		postSigned(t, svc.public, consoleEvent(id, statuses[i%len(statuses)], fmt.Sprintf("Ad %d", i), videoURL))
		created = append(created, id)
	}
	const videoJob = "clx8k9v2t0001qz8x7r4e5w6m"
	videoBody := consoleEvent(videoJob, "completed", "Spring sale", videoURL)
	postSigned(t, svc.public, videoBody)
	postSigned(t, svc.public, consoleEvent(videoJob, "failed", "Spring sale", videoURL))
	created = append(created, videoJob)
	newestFirst := slices.Clone(created)
	slices.Reverse(newestFirst)

	// The token case has a service of its own.
	const token = "console-test-token"
	guarded := startChild(t, bin, filepath.Join(t.TempDir(), "guarded.db"), "NOUVELHOOK_ADMIN_TOKEN="+token)
	postSigned(t, guarded.public, consoleEvent("guarded-job", "completed", "Ad", videoURL))

	env := append(crashEnviron(),
		"CHROMIUM="+chromium,
		"SCREENSHOTS="+shots,
		"CONSOLE_URL="+svc.admin,
		"PUBLIC_URL="+svc.public,
		"WEBHOOK_SECRET="+testSecret,
		"JOBS="+strings.Join(newestFirst, ","),
		"FAILED_JOB=job-01-failed",
		"PENDING_JOB="+running,
		"POLL_JOB="+byPoll,
		"VIDEO_JOB="+videoJob,
		"VIDEO_URL="+videoURL,
		"VIDEO_BODY="+string(videoBody),
		"FORWARD_JOB="+forwardJob,
		"FORWARD_JOB_PAGE="+forwardJobPage,
		"GONE_JOB="+goneJob,
		"TOKEN_CONSOLE_URL="+guarded.admin,
		"ADMIN_TOKEN="+token,
	)
	browse := func(t *testing.T, name string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, node, "console.test.mjs", name)
		cmd.Dir, cmd.Env = dir, env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("browser case %s: %v\n%s\nservice log:\n%s", name, err, out, logTail(svc.log))
		}
		t.Logf("%s", bytes.TrimSpace(out))
	}

	// list first: it counts the jobs, and live adds one.
	t.Run("list", func(t *testing.T) { browse(t, "list") })
	t.Run("live", func(t *testing.T) { browse(t, "live") })
	t.Run("filter_search", func(t *testing.T) { browse(t, "filter_search") })
	t.Run("video", func(t *testing.T) { browse(t, "video") })
	t.Run("polled", func(t *testing.T) { browse(t, "polled") })
	t.Run("token", func(t *testing.T) { browse(t, "token") })
	forwarding := func(t *testing.T) {
		var stats struct {
			Forwards json.RawMessage `json:"forwards"`
		}
		svc.adminGet(t, "/v1/stats", &stats)
		if len(stats.Forwards) == 0 || string(stats.Forwards) == "null" {
			t.Skip("serve does not forward yet: /v1/stats has no forwards")
		}
	}
	t.Run("forward_retry", func(t *testing.T) {
		forwarding(t)
		browse(t, "forward_retry")
		for _, id := range []string{forwardJob, forwardJobPage} {
			want := []int{503, 503, 200}
			if got := app.statuses(id); !slices.Equal(got, want) {
				t.Errorf("the app answered %s's forwards %v; want %v (two failures, then the retry)", id, got, want)
			}
		}
	})
	// Last: a 410 pauses all forwarding until Resume.
	t.Run("pause_resume", func(t *testing.T) {
		forwarding(t)
		postSigned(t, svc.public, consoleEvent(goneJob, "completed", "Gone ad", videoURL))
		browse(t, "pause_resume")
		if got, want := app.statuses(goneJob), []int{410, 200}; !slices.Equal(got, want) {
			t.Errorf("the app answered %s's forwards %v; want %v (410, then the one after Resume)", goneJob, got, want)
		}
	})
}
