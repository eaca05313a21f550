package nouveltest

import (
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
)

// videoBase is where finished videos claim to live. The address is only
// ever a string; nothing fetches it.
const videoBase = "https://cdn.nouvel.example/videos/"

// finishedStage is the stage a terminal job reports.
const finishedStage = "finished"

// runningStages are reported in turn as a running job's progress rises.
var runningStages = [...]string{"scraping", "scripting", "generating", "rendering"}

// JobSpec describes a job for AddJob.
type JobSpec struct {
	// ID is the job id, any opaque string; "" generates one.
	ID string
	// Outcome is the terminal status: completed, partial, failed or
	// cancelled; "" is completed.
	Outcome store.Status
	// Polls is how many polls the job needs to end: the Polls-th poll
	// answers the terminal state and sends the webhook. Less than 1 is 1.
	Polls int
	// Projects is the number of videos; less than 1 is 1, and a partial
	// outcome needs at least 2.
	Projects int
	// WebhookURL is the job's public webhookUrl; "" sends no webhook.
	WebhookURL string
	// Runtime, when set, makes the job end by time instead of by count:
	// it is done Runtime after AddJob (on Options.Now), and the first poll
	// from then on answers the end and sends the webhook. Polls is then
	// ignored.
	Runtime time.Duration
}

// JobView is Nouvel's truth about a job, for tests to compare a job log
// against. The counts and Projects are those of the outcome, already known
// before the job ends, exactly as the webhook reports them.
type JobView struct {
	ID         string
	Status     store.Status // as a poll would now see it: pending, running or Outcome
	Outcome    store.Status
	WebhookURL string
	// Polls counts the polls answered so far; PollsNeeded is JobSpec.Polls.
	Polls       int
	PollsNeeded int

	TotalProjects     int
	CompletedProjects int
	FailedProjects    int
	Projects          []store.Project

	// WebhookDropped is true once the job has ended with its webhook
	// dropped on purpose; WebhookAttempts counts the attempts made, and
	// WebhookDelivered says whether one was answered 2xx.
	WebhookDropped   bool
	WebhookAttempts  int
	WebhookDelivered bool

	// DoneAt is when a job with a Runtime was done at Nouvel; EndedAt is
	// when a poll first answered its end (zero until then).
	DoneAt, EndedAt time.Time
}

type job struct {
	spec     JobSpec
	polls    int
	projects []project // in their final state
	aspect   string
	drop     bool // decided once, when the job is made
	added    time.Time
	endedAt  time.Time // when a poll first answered the end

	dropped   bool
	attempts  int
	delivered bool
}

type project struct {
	store.Project
	source string // the product page the video is about
}

// AddJob adds a job and returns its id. Adding an id again replaces that
// job. It panics on an Outcome that is not a terminal Nouvel status, as
// that is a mistake in the calling code.
func (s *Server) AddJob(spec JobSpec) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addJobLocked(spec, nil, "")
}

// addJobLocked adds a job whose projects are about sources (several
// variants of each, in turn); nil sources get made-up product pages.
func (s *Server) addJobLocked(spec JobSpec, sources []string, aspect string) string {
	spec = normalize(spec)
	if spec.ID == "" {
		spec.ID = s.newIDLocked()
	}
	j := &job{spec: spec, aspect: aspect, projects: makeProjects(spec, sources), added: s.opts.Now()}
	if j.aspect == "" {
		j.aspect = "9:16"
	}
	if spec.WebhookURL != "" {
		j.drop = s.rand.Float64() < s.opts.DropRate
	}
	s.jobs[spec.ID] = j
	return spec.ID
}

func normalize(spec JobSpec) JobSpec {
	switch {
	case spec.Outcome == "":
		spec.Outcome = store.StatusCompleted
	case !spec.Outcome.Terminal() || spec.Outcome.Local():
		panic(fmt.Sprintf("nouveltest: job outcome %q is not completed, partial, failed or cancelled", spec.Outcome))
	}
	spec.Polls = max(spec.Polls, 1)
	spec.Projects = max(spec.Projects, 1)
	if spec.Outcome == store.StatusPartial {
		spec.Projects = max(spec.Projects, 2)
	}
	return spec
}

// makeProjects builds a job's projects in their final state. A partial job
// completes its first half (rounded up) and fails the rest; a cancelled one
// ends every project cancelled, neither completed nor failed.
func makeProjects(spec JobSpec, sources []string) []project {
	ps := make([]project, spec.Projects)
	perSource := max(spec.Projects/max(len(sources), 1), 1)
	for i := range ps {
		p := &ps[i]
		p.ProjectID = fmt.Sprintf("%s-p%d", spec.ID, i+1)
		p.Title = fmt.Sprintf("Video %d", i+1)
		p.Status = spec.Outcome
		switch {
		case spec.Outcome == store.StatusPartial && i < (spec.Projects+1)/2:
			p.Status = store.StatusCompleted
		case spec.Outcome == store.StatusPartial:
			p.Status = store.StatusFailed
		}
		if p.Status == store.StatusCompleted {
			p.VideoURL = videoBase + p.ProjectID + ".mp4"
		}
		p.source = fmt.Sprintf("https://shop.example/products/%d", i+1)
		if n := i / perSource; n < len(sources) {
			p.source = sources[n]
		}
	}
	return ps
}

// Polls reports how many polls of jobID have been answered; 0 for an
// unknown job.
func (s *Server) Polls(jobID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j, ok := s.jobs[jobID]; ok {
		return j.polls
	}
	return 0
}

// Job reports Nouvel's truth about jobID, and false if there is no such job.
func (s *Server) Job(jobID string) (JobView, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[jobID]
	if !ok {
		return JobView{}, false
	}
	done, failed := j.counts()
	v := JobView{
		ID: j.spec.ID, Status: j.status(), Outcome: j.spec.Outcome, WebhookURL: j.spec.WebhookURL,
		Polls: j.polls, PollsNeeded: j.spec.Polls,
		TotalProjects: len(j.projects), CompletedProjects: done, FailedProjects: failed,
		WebhookDropped: j.dropped, WebhookAttempts: j.attempts, WebhookDelivered: j.delivered,
		EndedAt: j.endedAt,
	}
	if j.spec.Runtime > 0 {
		v.DoneAt = j.added.Add(j.spec.Runtime)
	}
	for _, p := range j.projects {
		v.Projects = append(v.Projects, p.Project)
	}
	return v, true
}

// status is what a poll would now see. A job is pending until first polled.
func (j *job) status() store.Status {
	switch {
	case !j.endedAt.IsZero():
		return j.spec.Outcome
	case j.polls == 0:
		return store.StatusPending
	}
	return store.StatusRunning
}

// poll counts a poll at now and reports whether it is the one that finds
// the job ended.
func (j *job) poll(now time.Time) bool {
	j.polls++
	if !j.endedAt.IsZero() {
		return false
	}
	if j.spec.Runtime > 0 && now.Before(j.added.Add(j.spec.Runtime)) ||
		j.spec.Runtime == 0 && j.polls < j.spec.Polls {
		return false
	}
	j.endedAt = now
	return true
}

// progress is the share done, 0 to 100, as a running poll reports it.
func (j *job) progress(now time.Time) float64 {
	share := float64(j.polls) / float64(j.spec.Polls)
	if j.spec.Runtime > 0 {
		share = float64(now.Sub(j.added)) / float64(j.spec.Runtime)
	}
	return math.Round(1000*min(share, 0.99)) / 10
}

// counts reports the outcome's completed and failed projects.
func (j *job) counts() (completed, failed int) {
	for _, p := range j.projects {
		switch p.Status {
		case store.StatusCompleted:
			completed++
		case store.StatusFailed:
			failed++
		}
	}
	return completed, failed
}

func (s *Server) handleGetJob(w http.ResponseWriter, r *http.Request) {
	if !allowMethod(w, r, http.MethodGet) {
		return
	}
	s.mu.Lock()
	j, ok := s.jobs[r.PathValue("jobId")]
	if !ok {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, "Job not found")
		return
	}
	now := s.opts.Now()
	var hook *outgoing
	if j.poll(now) {
		hook = s.endedLocked(j)
	}
	answer := j.answer(now)
	s.mu.Unlock()

	if hook != nil {
		s.deliver(hook) // Nouvel sends the webhook during the poll
	}
	writeJSON(w, http.StatusOK, answer)
}

// jobAnswer is Nouvel's GET /api/v1/jobs/{jobId} answer.
type jobAnswer struct {
	JobID             string          `json:"jobId"`
	Status            store.Status    `json:"status"`
	OverallProgress   float64         `json:"overallProgress"`
	Stage             string          `json:"stage"`
	TotalProjects     int             `json:"totalProjects"`
	CompletedProjects int             `json:"completedProjects"`
	FailedProjects    int             `json:"failedProjects"`
	Projects          []projectAnswer `json:"projects"`
	CompletedDetails  []detailAnswer  `json:"completedDetails"`
}

type projectAnswer struct {
	ID       string       `json:"id"`
	Title    string       `json:"title"`
	Status   store.Status `json:"status"`
	Progress float64      `json:"progress"`
}

type detailAnswer struct {
	ProjectID       string       `json:"projectId"`
	Title           string       `json:"title"`
	URL             string       `json:"url"`
	FinalOutputURL  string       `json:"finalOutputUrl"`
	Status          store.Status `json:"status"`
	AspectRatio     string       `json:"aspectRatio"`
	DurationSeconds float64      `json:"durationSeconds"`
	SceneCount      int          `json:"sceneCount"`
	Script          string       `json:"script"`
	Description     string       `json:"description"`
}

// answer is the job as a poll now sees it. While running, progress is a
// float with one decimal, as Nouvel's is, and counts stay at zero;
// completedDetails lists the completed projects once the job has ended.
func (j *job) answer(now time.Time) jobAnswer {
	a := jobAnswer{
		JobID: j.spec.ID, Status: j.status(), TotalProjects: len(j.projects),
		Projects: make([]projectAnswer, 0, len(j.projects)), CompletedDetails: []detailAnswer{},
	}
	if a.Status == store.StatusPending || a.Status == store.StatusRunning {
		a.OverallProgress = j.progress(now)
		a.Stage = runningStages[min(int(a.OverallProgress)/25, len(runningStages)-1)]
		for _, p := range j.projects {
			a.Projects = append(a.Projects, projectAnswer{ID: p.ProjectID, Title: p.Title, Status: a.Status, Progress: a.OverallProgress})
		}
		return a
	}
	a.OverallProgress, a.Stage = 100, finishedStage
	a.CompletedProjects, a.FailedProjects = j.counts()
	for _, p := range j.projects {
		pa := projectAnswer{ID: p.ProjectID, Title: p.Title, Status: p.Status}
		if p.Status == store.StatusCompleted {
			pa.Progress = 100
			a.CompletedDetails = append(a.CompletedDetails, j.detail(p))
		}
		a.Projects = append(a.Projects, pa)
	}
	return a
}

func (j *job) detail(p project) detailAnswer {
	return detailAnswer{
		ProjectID: p.ProjectID, Title: p.Title, URL: p.source, FinalOutputURL: p.VideoURL,
		Status: p.Status, AspectRatio: j.aspect, DurationSeconds: 30, SceneCount: 5,
		Script:      "Scene 1: the product, up close.",
		Description: "A short video about " + p.source,
	}
}
