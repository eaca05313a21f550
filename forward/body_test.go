package forward

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
)

// node returns the path of Node.js, or skips the test; with
// NOUVELHOOK_TEST_BROWSER set (CI installs Node.js) a missing one fails it.
func node(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("NOUVELHOOK_TEST_BROWSER") != "" {
			t.Fatal("node is not on PATH, and NOUVELHOOK_TEST_BROWSER is set")
		}
		t.Skip("node is not on PATH: the JSON.stringify comparison needs Node.js")
	}
	return p
}

// jsRestringify is what JavaScript's JSON.stringify(JSON.parse(b)) gives,
// as Nouvel's sample receiver computes it over a parsed body.
func jsRestringify(t *testing.T, b []byte) []byte {
	t.Helper()
	cmd := exec.Command(node(t), "-e", `
let s = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", d => s += d);
process.stdin.on("end", () => process.stdout.write(JSON.stringify(JSON.parse(s))));`)
	cmd.Stdin = bytes.NewReader(b)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	return out
}

func endedJob(id string, status store.Status, seq int64, title string) store.Job {
	at := time.Date(2026, 11, 27, 11, 30, 5, 123000000, time.FixedZone("CET", 3600))
	return store.Job{
		JobID: id, Status: status, Terminal: true, TotalProjects: 2, CompletedProjects: 1, FailedProjects: 1,
		Projects: []store.Project{
			{ProjectID: "p1", Title: title, Status: store.StatusCompleted, VideoURL: "https://cdn.example/v/1.mp4?a=1&b=2"},
			{ProjectID: "p2", Title: "second", Status: store.StatusFailed},
		},
		Source: store.SourcePoll, Seq: seq, WebhookMissed: true, TerminalAt: &at,
		// Fields of the job the app is not sent.
		Progress: 100, Stage: "done", PollCount: 3, LastError: "x",
	}
}

// TestBodyIsJSONStringifyOfItself: the bytes sent equal what JavaScript
// re-serialises them to, so a receiver that HMACs JSON.stringify(req.body)
// computes the same signature; with titles that Go would escape by
// default (<, >, &, U+2028, U+2029), an escaped backslash before "u2028",
// quotes, control characters and text outside ASCII.
func TestBodyIsJSONStringifyOfItself(t *testing.T) {
	titles := []string{
		"plain",
		"<b>Tom & Jerry</b> > all",
		"line\u2028sep\u2029para",
		`back\u2028slash \\ "quoted"`,
		"tab\tnew\nline\r\x01\x1f\x7f\b\f",
		"Crème brûlée — 日本語 🎬 Ωmega",
		"",
	}
	for _, title := range titles {
		b, err := Body(endedJob("job-1", store.StatusPartial, 42, title))
		if err != nil {
			t.Fatal(err)
		}
		if js := jsRestringify(t, b); !bytes.Equal(b, js) {
			t.Errorf("title %q:\n got %s\nwant %s (JSON.stringify)", title, b, js)
		}
		var back struct {
			Projects []store.Project `json:"projects"`
		}
		if err := json.Unmarshal(b, &back); err != nil || back.Projects[0].Title != title {
			t.Errorf("title %q: decodes to %+v, %v", title, back.Projects, err)
		}
	}
}

// TestBodyShape: Nouvel's webhook keys in Nouvel's order, then
// nouvelhook's, with the event named from the status and terminalAt in UTC.
func TestBodyShape(t *testing.T) {
	b, err := Body(endedJob("job-1", store.StatusPartial, 42, "<a & b>"))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"event":"job.completed","jobId":"job-1","status":"partial","totalProjects":2,"completedProjects":1,` +
		`"failedProjects":1,"projects":[{"projectId":"p1","title":"<a & b>","status":"completed",` +
		`"videoUrl":"https://cdn.example/v/1.mp4?a=1&b=2"},{"projectId":"p2","title":"second","status":"failed",` +
		`"videoUrl":""}],"source":"poll","seq":42,"webhookMissed":true,"terminalAt":"2026-11-27T10:30:05.123Z"}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}

	for _, c := range []struct {
		status store.Status
		event  string
	}{
		{store.StatusCompleted, EventCompleted}, {store.StatusPartial, EventCompleted},
		{store.StatusFailed, EventCompleted}, {store.StatusCancelled, EventCompleted},
		{store.StatusExpired, EventExpired}, {store.StatusNotFound, EventNotFound},
	} {
		j := endedJob("j", c.status, 1, "t")
		j.Projects = nil
		b, err := Body(j)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(b), `{"event":"`+c.event+`","jobId":"j","status":"`+string(c.status)+`"`) ||
			!strings.Contains(string(b), `"projects":[]`) {
			t.Errorf("status %s: got %s, want event %s and projects []", c.status, b, c.event)
		}
	}
}

// TestBodyRefusesJobNotEnded: only an ended job has a forward.
func TestBodyRefusesJobNotEnded(t *testing.T) {
	for _, j := range []store.Job{
		{JobID: "r", Status: store.StatusRunning},
		{JobID: "c", Status: store.StatusCompleted}, // no terminalAt
	} {
		if b, err := Body(j); err == nil || !strings.Contains(err.Error(), `"`+j.JobID+`"`) {
			t.Errorf("job %s %s: got %s, %v; want an error naming the job", j.JobID, j.Status, b, err)
		}
	}
}
