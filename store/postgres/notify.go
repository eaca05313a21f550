package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nouvelhook/nouvelhook/store"
)

// tailSize is how many of the newest feed events the shared tail keeps at
// least; it holds up to twice as many between trims. A waiter whose cursor
// is older than the tail reads the store itself.
const tailSize = 2048

// feedLinger is how long a feed waiter woken by a commit waits for more
// before it answers, so that a busy feed answers in batches.
const feedLinger = 50 * time.Millisecond

// feed is the newest part of the change feed, refreshed by feedLoop alone,
// and the waiters it wakes: feed waiters take ch, which a refresh that found
// new events closes; job waiters are filed by job id and woken only when
// their job is among those events.
type feed struct {
	mu     sync.Mutex
	ch     chan struct{}
	ready  bool         // base and last were read from the store
	base   int64        // the tail has every event with seq > base ...
	last   int64        // ... up to last
	events []*feedEntry // base < seq <= last, ascending
	jobs   map[string][]chan struct{}

	// feedWaiters counts the feed waiters; with none, and no job waiters,
	// feedLoop skips its reads (stale notes that it did), so a replica
	// nobody waits on does not read every job that ends.
	feedWaiters atomic.Int64
	stale       atomic.Bool
	// reads counts the store reads made for waiters, so a test can tell
	// one query per commit from one per waiter.
	reads atomic.Int64
	// parked counts the waiters blocked until a refresh wakes them.
	parked atomic.Int64
}

// idle reports whether nobody waits on the feed.
func (f *feed) idle() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.feedWaiters.Load() == 0 && len(f.jobs) == 0
}

func (f *feed) init() {
	f.ch = make(chan struct{})
	f.jobs = map[string][]chan struct{}{}
}

// feedEntry is one event of the tail; its JSON is encoded once, by the
// first event stream that sends it, for every stream.
type feedEntry struct {
	job  store.Job
	once sync.Once
	data []byte
	err  error
}

func (e *feedEntry) json() ([]byte, error) {
	e.once.Do(func() { e.data, e.err = json.Marshal(e.job) })
	return e.data, e.err
}

// kick asks feedLoop for a refresh; kicks while one is pending merge.
func (s *Store) kick() {
	select {
	case s.kickCh <- struct{}{}:
	default:
	}
}

// wakeFeed has the tail refreshed now if feedLoop skipped reads while
// nobody waited, so a waiter that just came does not wait for the next tick
// to see what ended meanwhile.
func (s *Store) wakeFeed() {
	if s.feed.stale.Swap(false) {
		s.kick()
	}
}

// feedLoop refreshes the tail when kicked (a local end, a notification)
// and every backstop interval whatever happens.
func (s *Store) feedLoop(ctx context.Context) {
	s.loop(ctx, s.kickCh, "feed refresh failed", func(ctx context.Context, _ bool) error {
		// stale is set before idle looks, so a waiter that comes just
		// after either is counted by idle or finds stale set and kicks.
		s.feed.stale.Store(true)
		if s.feed.idle() {
			return nil
		}
		s.feed.stale.Store(false)
		return s.refresh(ctx)
	})
}

// loop runs fn each time kick fires (kicked true) and every backstop
// interval (false), each run bounded by writeTimeout, until ctx ends; it
// logs a failure as msg, at most once a minute.
func (s *Store) loop(ctx context.Context, kick <-chan struct{}, msg string, fn func(ctx context.Context, kicked bool) error) {
	defer s.wg.Done()
	tick := time.NewTicker(backstop)
	defer tick.Stop()
	var lastLog time.Time
	for {
		kicked := false
		select {
		case <-ctx.Done():
			return
		case <-kick:
			kicked = true
		case <-tick.C:
		}
		rctx, cancel := context.WithTimeout(ctx, writeTimeout)
		err := fn(rctx, kicked)
		cancel()
		if err != nil && ctx.Err() == nil && time.Since(lastLog) > time.Minute {
			lastLog = time.Now()
			s.log.Warn().Str("error", s.scrub(err)).Msg(msg)
		}
	}
}

// listenLoop holds a connection of its own that LISTENs on the feed's
// channel and kicks a refresh on each notification. When the connection
// fails it reconnects, with backoff up to 30 s, and kicks once reconnected,
// as notifications sent meanwhile are lost; the backstop covers the gap.
func (s *Store) listenLoop(ctx context.Context) {
	defer s.wg.Done()
	wait := time.Second
	var lastLog time.Time
	for {
		err := s.listenOnce(ctx, func() { wait = time.Second })
		if ctx.Err() != nil {
			return
		}
		if time.Since(lastLog) > time.Minute {
			lastLog = time.Now()
			s.log.Warn().Str("error", s.scrub(err)).Msg("feed listener lost its connection")
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, 30*time.Second)
	}
}

func (s *Store) listenOnce(ctx context.Context, connected func()) error {
	conn, err := pgx.ConnectConfig(ctx, s.listen)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `LISTEN `+feedChannel); err != nil {
		return err
	}
	connected()
	s.kick()
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		s.kick()
	}
}

// refresh reads the events committed since the tail's last, with one query
// for all waiters, adds them to the tail, and wakes the feed waiters and the
// waiters of the jobs among them. The first refresh, and one that finds more
// than twice the tail's size, starts the tail over at the newest seq (and
// wakes every job waiter, to read its job itself).
func (s *Store) refresh(ctx context.Context) error {
	f := &s.feed
	f.mu.Lock()
	ready, from := f.ready, f.last
	f.mu.Unlock()
	var got []store.Job
	last, restart := from, !ready
	for !restart {
		f.reads.Add(1)
		page, end, err := s.Events(ctx, last, store.MaxLimit)
		if err != nil {
			return err
		}
		got, last = append(got, page...), end
		if len(page) < store.MaxLimit {
			break
		}
		restart = len(got) > 2*tailSize
	}
	if restart {
		f.reads.Add(1)
		if err := s.pool.QueryRow(ctx, `SELECT seq FROM feed_counter`).Scan(&last); err != nil {
			return err
		}
	}
	if len(got) == 0 && !restart {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if restart {
		f.ready, f.base, f.last, f.events = true, last, last, nil
		for id, ws := range f.jobs {
			for _, w := range ws {
				close(w)
			}
			delete(f.jobs, id)
		}
	} else {
		for _, j := range got {
			f.events = append(f.events, &feedEntry{job: j})
			for _, w := range f.jobs[j.JobID] {
				close(w)
			}
			delete(f.jobs, j.JobID)
		}
		f.last = last
		if len(f.events) > 2*tailSize {
			drop := len(f.events) - tailSize
			f.base = f.events[drop-1].job.Seq
			f.events = append([]*feedEntry(nil), f.events[drop:]...)
		}
	}
	close(f.ch)
	f.ch = make(chan struct{})
	return nil
}

// after returns the channel the next refresh closes, and up to limit
// entries with seq > cursor and the seq of the last one (cursor when none);
// ok is false when the tail does not hold every event after cursor.
func (f *feed) after(cursor int64, limit int) (changed <-chan struct{}, entries []*feedEntry, last int64, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.ready || cursor < f.base {
		return f.ch, nil, 0, false
	}
	i := sort.Search(len(f.events), func(i int) bool { return f.events[i].job.Seq > cursor })
	end := min(len(f.events), i+limit)
	entries, last = slices.Clone(f.events[i:end]), cursor
	if len(entries) > 0 {
		last = entries[len(entries)-1].job.Seq
	}
	return f.ch, entries, last, true
}

// sleep blocks until changed is closed or ctx ends, and reports whether it
// was changed.
func (f *feed) sleep(ctx context.Context, changed <-chan struct{}) bool {
	f.parked.Add(1)
	defer f.parked.Add(-1)
	select {
	case <-changed:
		return true
	case <-ctx.Done():
		return false
	}
}

// watch files a waiter for jobID: any refresh that finishes after it and
// saw the job end closes the channel. The caller reads the job after
// watch, so an end no refresh saw yet is in that read.
func (f *feed) watch(jobID string) chan struct{} {
	w := make(chan struct{})
	f.mu.Lock()
	defer f.mu.Unlock()
	f.jobs[jobID] = append(f.jobs[jobID], w)
	return w
}

// unwatch removes w, if a wake-up has not already.
func (f *feed) unwatch(jobID string, w chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ws := slices.DeleteFunc(f.jobs[jobID], func(o chan struct{}) bool { return o == w })
	if len(ws) == 0 {
		delete(f.jobs, jobID)
	} else {
		f.jobs[jobID] = ws
	}
}

// WaitJob returns the job as soon as it is terminal, or as it stands when
// ctx ends (a deadline is not an error). A job not yet in the log is waited
// for too; it is store.ErrNotFound only if it is still unknown at the end.
// It reads the job once, then sleeps until a refresh of the feed sees the
// job end, on this replica or another: commits that end other jobs cost it
// nothing.
func (s *Store) WaitJob(ctx context.Context, jobID string) (store.Job, error) {
	rctx := context.WithoutCancel(ctx)
	for {
		w := s.feed.watch(jobID)
		s.wakeFeed()
		s.feed.reads.Add(1)
		j, err := s.Job(rctx, jobID)
		if (err == nil && j.Terminal) || (err != nil && !errors.Is(err, store.ErrNotFound)) {
			s.feed.unwatch(jobID, w)
			return j, err
		}
		if !s.feed.sleep(ctx, w) {
			s.feed.unwatch(jobID, w)
			return s.Job(rctx, jobID)
		}
	}
}

// WaitEvents is Events, but when there are none yet it waits for the first
// until ctx ends, then answers as Events would. Events come from the shared
// tail of the feed; only a cursor older than the tail reads the store. An
// event from the tail shows its job as it was read just after it ended.
func (s *Store) WaitEvents(ctx context.Context, after int64, limit int) ([]store.Job, int64, error) {
	entries, last, err := s.waitFeed(ctx, after, limit)
	if err != nil {
		return nil, 0, err
	}
	jobs := make([]store.Job, len(entries))
	for i, e := range entries {
		jobs[i] = e.job
	}
	return jobs, last, nil
}

// WaitFeed is WaitEvents with each job already encoded, once for all
// readers.
func (s *Store) WaitFeed(ctx context.Context, after int64, limit int) ([]store.FeedEvent, int64, error) {
	entries, last, err := s.waitFeed(ctx, after, limit)
	if err != nil {
		return nil, 0, err
	}
	events := make([]store.FeedEvent, len(entries))
	for i, e := range entries {
		data, err := e.json()
		if err != nil {
			return nil, 0, err
		}
		events[i] = store.FeedEvent{Seq: e.job.Seq, JSON: data}
	}
	return events, last, nil
}

func (s *Store) waitFeed(ctx context.Context, after int64, limit int) ([]*feedEntry, int64, error) {
	if limit < 1 || limit > store.MaxLimit || after < 0 {
		_, _, err := s.Events(ctx, after, limit) // the same store.ErrInvalid
		return nil, 0, err
	}
	s.feed.feedWaiters.Add(1)
	defer s.feed.feedWaiters.Add(-1)
	s.wakeFeed()
	for {
		changed, entries, last, ok := s.feed.after(after, limit)
		if !ok {
			s.feed.reads.Add(1)
			jobs, end, err := s.Events(context.WithoutCancel(ctx), after, limit)
			if err != nil {
				return nil, 0, err
			}
			entries, last = make([]*feedEntry, len(jobs)), end
			for i, j := range jobs {
				entries[i] = &feedEntry{job: j}
			}
		}
		if len(entries) > 0 {
			return entries, last, nil
		}
		if !s.feed.sleep(ctx, changed) {
			return entries, last, nil
		}
		t := time.NewTimer(feedLinger)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
}
