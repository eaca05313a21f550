package sqlite

import (
	"context"
	"encoding/json"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
)

// tailSize is how many of the newest change-feed entries the shared tail
// keeps at least; it holds up to twice as many between trims. A waiter whose
// cursor is older than the tail reads the store itself.
const tailSize = 2048

// notifier wakes waiters on the change feed and keeps a shared tail of it.
//
// Without it every waiter re-read the store after every commit that ended a
// job: with thousands of long-polls and event streams open, one commit cost
// thousands of queries on the four-connection read pool. Now:
//   - feed waiters (WaitEvents) take the current channel, which broadcast
//     closes; woken, they read the new events from the tail, which one of
//     them refreshes from the store for all (gen counts the broadcasts, so a
//     waiter can ask the tail to be at least as new as its channel);
//   - job waiters (WaitJob) are filed by job id and woken only when their
//     job enters the feed. When there are job waiters, broadcast starts a
//     refresh, which reads only the ids of the jobs that ended since its
//     cursor, for all of them.
type notifier struct {
	mu  sync.Mutex
	ch  chan struct{}
	gen uint64

	store      *Store // set by the first job waiter, for refresh
	jobs       map[string][]*jobWaiter
	refreshing bool

	// cursorMu serializes the reads of ended job ids; cursor is the seq
	// they have been read up to, once cursorReady.
	cursorMu    sync.Mutex
	cursor      int64
	cursorReady bool

	tail feedTail
	// lingerFor is feedLinger; tests shorten it.
	lingerFor time.Duration
	// parked counts waiters blocked until a commit wakes them, and woken
	// the job waiters woken so far; tests read them.
	parked, woken atomic.Int64
}

// jobWaiter is one WaitJob, woken by closing ch.
type jobWaiter struct {
	jobID string
	ch    chan struct{}
}

func newNotifier() *notifier {
	return &notifier{ch: make(chan struct{}), jobs: map[string][]*jobWaiter{}, tail: feedTail{size: tailSize},
		lingerFor: feedLinger}
}

// linger waits lingerFor, or until ctx ends.
func (n *notifier) linger(ctx context.Context) {
	if n.lingerFor <= 0 {
		return
	}
	t := time.NewTimer(n.lingerFor)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// sleep blocks until changed is closed or ctx ends, and reports whether it
// was changed.
func (n *notifier) sleep(ctx context.Context, changed <-chan struct{}) bool {
	n.parked.Add(1)
	defer n.parked.Add(-1)
	select {
	case <-changed:
		return true
	case <-ctx.Done():
		return false
	}
}

// wait returns the channel the next broadcast closes and the number of
// broadcasts made before it.
func (n *notifier) wait() (<-chan struct{}, uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ch, n.gen
}

// broadcast wakes every feed waiter, and has the tail refreshed for the job
// waiters. The writer calls it after a commit that ended a job, so the
// commit is visible to any read that starts after.
func (n *notifier) broadcast() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.gen++
	close(n.ch)
	n.ch = make(chan struct{})
	if len(n.jobs) > 0 && !n.refreshing {
		n.refreshing = true
		go n.refresh()
	}
}

// refresh wakes the job waiters whose jobs ended, until no broadcast came
// meanwhile.
func (n *notifier) refresh() {
	for {
		gen := n.generation()
		n.scanJobs()
		n.mu.Lock()
		if n.gen == gen || len(n.jobs) == 0 {
			n.refreshing = false
			n.mu.Unlock()
			return
		}
		n.mu.Unlock()
	}
}

// jobScanLimit bounds one read of ended job ids. More than that since the
// cursor, as after a long time without job waiters, and the cursor skips to
// the newest seq, waking every job waiter to read its job itself.
const jobScanLimit = 1000

// scanJobs reads the ids of the jobs that ended since the cursor and wakes
// their waiters. If the store cannot be read it wakes every job waiter, to
// read its job itself.
func (n *notifier) scanJobs() {
	n.cursorMu.Lock()
	defer n.cursorMu.Unlock()
	ctx := context.Background()
	ids, last, err := n.endedSince(ctx, n.cursor)
	if err == nil && len(ids) == jobScanLimit {
		err = n.store.rdb.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM jobs`).Scan(&last)
		n.tail.reads.Add(1)
		if err == nil {
			n.cursor = last
		}
		n.wakeAllJobs()
		return
	}
	if err != nil {
		n.wakeAllJobs()
		return
	}
	n.wakeJobs(ids)
	n.cursor = last
}

// endedSince returns the ids of up to jobScanLimit jobs that ended with a
// seq above after, and the last seq read (after when none).
func (n *notifier) endedSince(ctx context.Context, after int64) (ids []string, last int64, err error) {
	n.tail.reads.Add(1)
	rows, err := n.store.rdb.QueryContext(ctx, `SELECT job_id, seq FROM jobs WHERE seq > ? ORDER BY seq LIMIT ?`,
		after, jobScanLimit)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	last = after
	for rows.Next() {
		var id string
		if err := rows.Scan(&id, &last); err != nil {
			return nil, 0, err
		}
		ids = append(ids, id)
	}
	return ids, last, rows.Err()
}

// startCursor reads the newest seq as the cursor of ended job ids, once. A
// job waiter calls it before it reads its job, so that any end the read
// does not see comes after the cursor.
func (n *notifier) startCursor(ctx context.Context, s *Store) error {
	n.cursorMu.Lock()
	defer n.cursorMu.Unlock()
	if n.cursorReady {
		return nil
	}
	n.tail.reads.Add(1)
	if err := s.rdb.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM jobs`).Scan(&n.cursor); err != nil {
		return err
	}
	n.cursorReady = true
	return nil
}

// watch files a waiter for jobID. Any refresh that finishes after it
// returns and saw the job end closes w.ch; the caller reads the job after
// watch, so an end no refresh saw yet is in that read.
func (n *notifier) watch(s *Store, jobID string) *jobWaiter {
	w := &jobWaiter{jobID: jobID, ch: make(chan struct{})}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.store == nil {
		n.store = s
	}
	n.jobs[jobID] = append(n.jobs[jobID], w)
	return w
}

// unwatch removes w, if a wake-up has not already.
func (n *notifier) unwatch(w *jobWaiter) {
	n.mu.Lock()
	defer n.mu.Unlock()
	ws := n.jobs[w.jobID]
	for i, o := range ws {
		if o == w {
			ws = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(n.jobs, w.jobID)
	} else {
		n.jobs[w.jobID] = ws
	}
}

// wakeAllJobs wakes every job waiter, to read its job itself.
func (n *notifier) wakeAllJobs() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for id, ws := range n.jobs {
		for _, w := range ws {
			close(w.ch)
			n.woken.Add(1)
		}
		delete(n.jobs, id)
	}
}

// wakeJobs wakes the waiters of these jobs, which just ended.
func (n *notifier) wakeJobs(ids []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.jobs) == 0 {
		return
	}
	for _, id := range ids {
		for _, w := range n.jobs[id] {
			close(w.ch)
			n.woken.Add(1)
		}
		delete(n.jobs, id)
	}
}

// generation is the number of broadcasts made so far.
func (n *notifier) generation() uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.gen
}

// feedTail is the newest part of the change feed, in seq order, read from
// the store once per wake-up and shared by every waiter.
//
// It holds every event with base < seq <= last: seqs are given in commit
// order by the single writer, so a read of seq > last sees every event
// committed before it. It starts from the store's newest seq, not from
// nothing, so a restart or another process's commits leave no gap.
type feedTail struct {
	size   int // tailSize; smaller in tests
	mu     sync.Mutex
	ready  bool         // base and last were read from the store
	base   int64        // the tail has every event with seq > base ...
	last   int64        // ... up to last
	gen    uint64       // broadcasts made before the newest read started
	events []*feedEntry // base < seq <= last, ascending
	// fetching is the read in flight, if any: one at a time, the others wait
	// for it instead of querying themselves.
	fetching *tailFetch

	// reads counts the store reads made for waiters (the tail's and the
	// fallbacks'), so a test can tell one query per commit from one per
	// waiter.
	reads atomic.Int64
}

type tailFetch struct {
	done chan struct{}
	err  error
}

// catchUp returns once the tail holds every event committed before the
// gen-th broadcast. At most one goroutine reads the store at a time; the
// others wait for its result. The read is not cancelled with ctx, as other
// waiters share it.
func (n *notifier) catchUp(ctx context.Context, s *Store, gen uint64) error {
	t := &n.tail
	for {
		t.mu.Lock()
		if t.ready && t.gen >= gen {
			t.mu.Unlock()
			return nil
		}
		if f := t.fetching; f != nil {
			t.mu.Unlock()
			<-f.done
			if f.err != nil {
				return f.err
			}
			continue
		}
		f := &tailFetch{done: make(chan struct{})}
		t.fetching = f
		ready, from := t.ready, t.last
		t.mu.Unlock()

		// Every commit whose broadcast is counted in now is visible to the
		// reads below, which start after.
		now := n.generation()
		events, base, last, restart, err := n.read(context.WithoutCancel(ctx), s, ready, from)

		t.mu.Lock()
		if err == nil {
			if restart {
				t.ready, t.base, t.events = true, base, nil
			}
			for _, j := range events {
				t.events = append(t.events, newFeedEntry(j))
			}
			t.last, t.gen = last, max(t.gen, now)
			t.trim()
		}
		t.fetching, f.err = nil, err
		close(f.done)
		t.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// read returns the events after from, oldest first, and the seq of the last
// one. It starts over from the store's newest seq (restart, and base is that
// seq) before the first read, and when more than twice the tail's size
// ended since from, as after a long time without waiters: the tail would
// keep only the newest of them anyway.
func (n *notifier) read(ctx context.Context, s *Store, ready bool, from int64) (events []store.Job, base, last int64, restart bool, err error) {
	last = from
	for ready {
		n.tail.reads.Add(1)
		page, end, err := s.Events(ctx, last, store.MaxLimit)
		if err != nil {
			return nil, 0, 0, false, err
		}
		events, last = append(events, page...), end
		if len(page) < store.MaxLimit {
			return events, from, last, false, nil
		}
		ready = len(events) <= 2*n.tail.size
	}
	n.tail.reads.Add(1)
	if err := s.rdb.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM jobs`).Scan(&last); err != nil {
		return nil, 0, 0, false, err
	}
	return nil, last, last, true, nil
}

// trim drops the oldest events once the tail holds twice its size, so the
// cost of dropping is spread over many appends. Call with t.mu held.
func (t *feedTail) trim() {
	if len(t.events) <= 2*t.size {
		return
	}
	drop := len(t.events) - t.size
	t.base = t.events[drop-1].job.Seq
	t.events = append([]*feedEntry(nil), t.events[drop:]...)
}

// after returns up to limit entries with seq > cursor and the seq of the
// last one (cursor when none); ok is false when the tail no longer holds
// every event after cursor, and the caller must read the store.
func (t *feedTail) after(cursor int64, limit int) (entries []*feedEntry, last int64, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.ready || cursor < t.base {
		return nil, 0, false
	}
	i := sort.Search(len(t.events), func(i int) bool { return t.events[i].job.Seq > cursor })
	end := min(len(t.events), i+limit)
	entries, last = slices.Clone(t.events[i:end]), cursor
	if len(entries) > 0 {
		last = entries[len(entries)-1].job.Seq
	}
	return entries, last, true
}

// feedEntry is one event of the tail. Its JSON is encoded once, by the
// first event stream that sends it, for every stream.
type feedEntry struct {
	job  store.Job
	once sync.Once
	data []byte
	err  error
}

func newFeedEntry(j store.Job) *feedEntry { return &feedEntry{job: j} }

func (e *feedEntry) json() ([]byte, error) {
	e.once.Do(func() { e.data, e.err = json.Marshal(e.job) })
	return e.data, e.err
}
