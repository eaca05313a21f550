// Package postgres keeps nouvelhook's job log in Postgres (pgx v5, pgxpool),
// so that any number of serve replicas share one log.
//
// Every write returns only once the transaction holding it has committed, so
// a 200 for a webhook means committed in Postgres. Writes queued at the same
// moment share one transaction (group commit, as in the SQLite backend), so
// that concurrent webhooks pay for one commit and one turn on the counter
// rows between them.
//
// The change feed's seq is gap-free and in the order ends become visible,
// across writers and replicas. A bigserial would not do: sequence values are
// handed out when a row is inserted but become visible when its transaction
// commits, so seq 8 can commit after 9, and a reader that saw 9 and moved
// its cursor past it would never see 8. Nor does the transaction that ends a
// job take its seq itself: that would hold one counter row locked from its
// first end to its COMMIT, so that no two ending transactions could commit
// at once. Instead it commits the job with a row in feed (job_row, seq)
// whose seq is NULL, and its forward with seq NULL too, and the sequencer
// (sequence.go) numbers the ends that are visible: one short transaction
// that locks feed_counter's row, then, in a statement whose snapshot is
// taken once it holds the lock, gives the committed feed rows with no seq
// the numbers after feed_counter's (oldest terminal_at, then row, first),
// sets their forwards' seqs, moves feed_counter to the last and sends one
// NOTIFY. The seq is kept in feed rather than on the job's row, as an
// update of the job's row would rewrite every index of jobs. It sees only
// committed ends, so no end can later take a number below one given out;
// the row lock makes runs, on any replica, one after the other, and each run
// starts from where the last committed one ended, so none is skipped or
// given twice; and a run commits all its numbers at once. Hence any snapshot
// that sees seq N sees every seq below it, and an end that commits later
// gets a number above N. A run looks only at the ends of transactions that
// were not over when the last complete run began (feed_counter's floor, a
// transaction id: see sequenceSQL), so its cost follows the ends in flight,
// not the log. The sequencer runs on this replica a moment after
// its writers commit an end, once a second whatever happens (for ends a
// replica committed but did not number before it stopped), and, first,
// in every read that shows seqs (Events, a job that ended, Stats, claims of
// forwards), so that a read after a write sees its seq.
//
// Waits (WaitJob, WaitEvents, WaitFeed) sleep on a shared tail of the feed,
// refreshed by one goroutine per store: after a local commit that ended a
// job, on a NOTIFY nouvelhook_feed from any replica (sent by the ending
// transaction, so delivered at its commit), and once a second whatever
// happens, so a lost notification delays a wake-up by a second at most. A
// refresh is one query for all waiters, not one per waiter.
package postgres

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/nouvelhook/nouvelhook/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

const (
	// writeTimeout bounds one write, from its call to COMMIT, so that a
	// Postgres that stalls turns into a 503 that Nouvel sees, within its 5 s,
	// and retries, rather than a webhook that never answers. It is longer
	// than idleInTransaction, so a write waiting on the rows of a stalled
	// replica's transaction outlives it, and commits once Postgres ends it.
	writeTimeout = 4 * time.Second
	// connectTimeout bounds opening one connection, unless the URL sets
	// connect_timeout.
	connectTimeout = 2 * time.Second
	// backstop is how often the feed is read whatever notifications say.
	backstop = time.Second
	// feedChannel is the LISTEN/NOTIFY channel of the change feed.
	feedChannel = "nouvelhook_feed"
)

var _ store.Store = (*Store)(nil)

// Options are the store's dependencies; the zero value is usable.
type Options struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives write and listener errors; the zero value discards
	// them.
	Logger zerolog.Logger
	// Forward turns forwarding on: the transaction that ends a job also
	// queues its forward to the app (NOUVELHOOK_FORWARD_URL is set).
	Forward bool
	// MaxBody is the largest delivery body the store is given
	// (NOUVELHOOK_MAX_BODY). After a failed commit, Ping writes this much
	// to prove Postgres has room again. Zero means 1 MiB.
	MaxBody int64

	// noListen turns LISTEN off, leaving waits to the polling backstop;
	// tests use it to show the backstop alone wakes waiters.
	noListen bool
}

// Store is the Postgres-backed job log. It is safe for concurrent use, by
// any number of Stores on the same database and schema.
type Store struct {
	pool   *pgxpool.Pool
	listen *pgx.ConnConfig
	now    func() time.Time
	log    zerolog.Logger
	url    string // redacted
	secret string // the password, scrubbed from every error
	// forward: the transaction that ends a job queues its forward.
	forward bool
	maxBody int

	closed      atomic.Bool
	closeMu     sync.RWMutex // held to queue a write, so Close can close ops and ends
	ops, ends   chan *op     // the queues of writeLoop: see enqueue
	writersDone sync.WaitGroup
	cancel      context.CancelFunc
	wg          sync.WaitGroup
	kickCh      chan struct{}
	feed        feed
	// seqMu is held by this replica's runs of the sequencer, seqCh kicks
	// seqLoop (see sequence.go).
	seqMu  sync.Mutex
	seqCh  chan struct{}
	health health
}

// Open connects to the Postgres database at url (postgres://user:pass@host/db
// or key=value form; pgxpool's pool_* parameters apply), runs any migrations
// not yet applied, and starts the feed's listener. Close releases it. An
// unreachable database is an error wrapping store.ErrUnavailable, naming the
// URL with its password masked; a URL that does not parse wraps
// store.ErrInvalid.
// idleInTransaction is how long Postgres lets a session sit in an open
// transaction before it ends it: long enough for any write this store
// makes, short enough that other replicas' webhooks still get their 200
// within Nouvel's 5 s.
const idleInTransaction = "2s"

func Open(ctx context.Context, dbURL string, opts Options) (*Store, error) {
	shown := Redact(dbURL)
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, store.Errorf(store.EINVALID, "postgres URL %s: %s", shown,
			scrub(err.Error(), urlPassword(dbURL)))
	}
	secret := cfg.ConnConfig.Password
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = connectTimeout
	}
	// A replica that stalls or is frozen in the middle of a write holds the
	// counter rows every replica's ending transaction needs; without a limit
	// its session keeps them until TCP gives up, hours later, and every
	// other replica answers 503 meanwhile. A URL may set its own value.
	if _, ok := cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"]; !ok {
		cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = idleInTransaction
	}
	s := &Store{
		listen: cfg.ConnConfig.Copy(), now: opts.Now, log: opts.Logger, url: shown, secret: secret,
		forward: opts.Forward,
		kickCh:  make(chan struct{}, 1), ops: make(chan *op, maxBatch), ends: make(chan *op, maxBatch), seqCh: make(chan struct{}, 1),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.maxBody = int(opts.MaxBody); s.maxBody <= 0 {
		s.maxBody = 1 << 20
	}
	s.feed.init()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, s.openErr(err)
	}
	s.pool = pool
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, s.openErr(err)
	}
	lctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	// Ends a replica committed but did not number before it stopped.
	if err := s.sequenced(ctx); err != nil {
		cancel()
		pool.Close()
		return nil, s.openErr(err)
	}
	if err := s.refresh(ctx); err != nil {
		cancel()
		pool.Close()
		return nil, s.openErr(err)
	}
	s.writersDone.Add(2)
	go s.writeLoop(s.ends)
	go s.writeLoop(s.ops)
	s.wg.Add(2)
	go s.feedLoop(lctx)
	go s.seqLoop(lctx)
	if !opts.noListen {
		s.wg.Add(1)
		go s.listenLoop(lctx)
	}
	return s, nil
}

// Close stops taking writes, commits those already queued, stops the
// listener and closes the pool. Later writes fail with store.ErrUnavailable.
func (s *Store) Close() error {
	s.closeMu.Lock()
	if s.closed.Swap(true) {
		s.closeMu.Unlock()
		return nil
	}
	close(s.ops)
	close(s.ends)
	s.closeMu.Unlock()
	s.writersDone.Wait()
	s.cancel()
	s.wg.Wait()
	s.pool.Close()
	return nil
}

// openErr is err from opening the store, scrubbed and naming the URL.
func (s *Store) openErr(err error) error {
	if errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrInvalid) {
		return err
	}
	return store.Errorf(store.EUNAVAILABLE, "store unavailable: postgres %s: %s", s.url, s.scrub(err))
}

// Redact returns the URL with its password, if any, masked, for logs and
// errors.
func Redact(dbURL string) string {
	u, err := url.Parse(dbURL)
	if err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		q := u.Query()
		for _, k := range []string{"password", "sslpassword"} {
			if q.Has(k) {
				q.Set(k, "xxxxx")
			}
		}
		u.RawQuery = q.Encode()
		return u.Redacted()
	}
	if strings.Contains(dbURL, "://") {
		return "(a postgres URL that does not parse)"
	}
	return kvPassword.ReplaceAllString(dbURL, "${1}xxxxx")
}

var kvPassword = regexp.MustCompile(`(password\s*=\s*)('[^']*'|\S*)`)

// urlPassword is the password of a URL that pgx could not parse, if any.
func urlPassword(dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		return ""
	}
	p, _ := u.User.Password()
	return p
}

// scrub removes secret from msg; a password of fewer than 3 bytes is too
// likely to be part of ordinary words to be cut out.
func scrub(msg, secret string) string {
	if len(secret) < 3 {
		return msg
	}
	return strings.ReplaceAll(msg, secret, "xxxxx")
}

func (s *Store) scrub(err error) string { return scrub(strings.TrimSpace(err.Error()), s.secret) }

// dbErr turns an error of a read into one safe to show: the caller's own
// cancellation stays as it is, anything else wraps store.ErrUnavailable.
func (s *Store) dbErr(err error) error {
	if err == nil || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) ||
		errors.Is(err, store.ErrUnavailable) {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return store.Errorf(store.EUNAVAILABLE, "store unavailable: %s", s.scrub(err))
}

// migrate applies, in name order, each embedded migration not yet recorded
// in schema_migrations, each with its record in one transaction, so a failed
// one leaves nothing behind and is simply tried again at the next start. It
// holds a session advisory lock, keyed by the schema, on one connection
// throughout, so replicas that start together migrate once.
func (s *Store) migrate(ctx context.Context) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	const key = `hashtext('nouvelhook migrations ' || current_schema())`
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(`+key+`)`); err != nil {
		return fmt.Errorf("migration lock: %w", err)
	}
	defer func() {
		// A connection that failed loses the lock with its session.
		_, _ = conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(`+key+`)`)
	}()
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		name text PRIMARY KEY, applied_at bigint NOT NULL)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		if err := migrateOne(ctx, conn.Conn(), name); err != nil {
			return fmt.Errorf("migration %s: %w", name, err)
		}
	}
	return nil
}

func migrateOne(ctx context.Context, conn *pgx.Conn, name string) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var done bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE name = $1)`, name).
		Scan(&done); err != nil {
		return err
	}
	if done {
		return nil
	}
	body, err := migrations.ReadFile(name)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, string(body)); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (name, applied_at) VALUES ($1, $2)`,
		name, time.Now().UnixNano()); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// Ping reports whether the store takes deliveries, and returns the
// failure, wrapping store.ErrUnavailable, when it does not. From a commit
// that fails because Postgres cannot take it (unreachable, out of disk or
// of connections, read-only) until a write at least as large as a delivery
// commits again, it reports that failure: a small write can still fit where
// a delivery does not. While failing, each Ping tries such a write itself
// (the larger of Options.MaxBody and the delivery that failed, of bytes
// that do not compress) and reports ready once it commits; a delivery that
// commits clears it too. Otherwise Ping commits one small row. Concurrent
// Pings share one write.
func (s *Store) Ping(ctx context.Context) error {
	h := &s.health
	h.mu.Lock()
	f := h.flight
	if f == nil {
		f = &pingFlight{done: make(chan struct{})}
		h.flight = f
		size := 0
		if h.failed != "" {
			size = max(h.need, s.maxBody)
		}
		go func() {
			f.err = s.probe(size)
			h.mu.Lock()
			h.flight = nil
			h.mu.Unlock()
			close(f.done)
		}()
	}
	h.mu.Unlock()
	select {
	case <-f.done:
		if err := s.Failed(); err != nil {
			return err
		}
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// probe commits a readiness write through the writers: a small row when
// size is 0, else size bytes, removed again once committed.
func (s *Store) probe(size int) error {
	ctx := context.Background() // a Ping that gives up leaves the probe to finish
	if size == 0 {
		return s.write(ctx, func(t *txn) error {
			_, err := t.tx.Exec(t.ctx, `INSERT INTO meta (key, value) VALUES ('ping', $1)
				ON CONFLICT (key) DO UPDATE SET value = excluded.value`, t.now.Format(time.RFC3339Nano))
			return err
		})
	}
	// Random bytes, base64: text Postgres cannot compress below size.
	raw := make([]byte, size*3/4+3)
	rand.Read(raw)
	value := base64.StdEncoding.EncodeToString(raw)[:size]
	err := s.enqueue(ctx, &op{probe: size, fn: func(t *txn) error {
		_, err := t.tx.Exec(t.ctx, `INSERT INTO meta (key, value) VALUES ('probe', $1)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`, value)
		return err
	}})
	if err != nil {
		return err
	}
	// The probe proved the room; giving it back is an ordinary write.
	return s.write(ctx, func(t *txn) error {
		_, err := t.tx.Exec(t.ctx, `DELETE FROM meta WHERE key = 'probe'`)
		return err
	})
}

// Failed reports, without writing, whether the last write failed because
// Postgres could not be reached or could not store it, or the store is
// closed: the error Ping would start from. nil does not prove the store can
// commit; only Ping's write does.
func (s *Store) Failed() error {
	if s.closed.Load() {
		return store.Errorf(store.EUNAVAILABLE, "store unavailable: store is closed")
	}
	return s.health.err()
}

// health is what readiness knows of the writes so far.
type health struct {
	mu sync.Mutex
	// failed is the first failure, scrubbed, since a write at least need
	// bytes large (the largest write of the batch that failed) last
	// committed, and at when it happened; "" when healthy.
	failed string
	at     time.Time
	need   int
	flight *pingFlight
}

type pingFlight struct {
	done chan struct{}
	err  error
}

// observe updates readiness with the outcome of a batch whose largest
// write was size bytes.
func (h *health) observe(now time.Time, err error, msg string, size int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case err == nil:
		if size > 0 && size >= h.need {
			h.failed, h.need = "", 0
		}
	case h.failed == "" && unreachable(err):
		h.failed, h.at, h.need = msg, now, size
	}
}

func (h *health) err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failed == "" {
		return nil
	}
	return store.Errorf(store.EUNAVAILABLE, "store unavailable: postgres writes have failed since %s: %s",
		h.at.Format(time.RFC3339), h.failed)
}

// unreachable reports whether err says Postgres cannot take writes now,
// rather than that one statement was wrong: no connection, a timeout, or a
// server error about connections, resources, a shutdown or read-only mode.
func unreachable(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return true
	}
	if len(pe.Code) < 2 {
		return false
	}
	switch pe.Code[:2] {
	case "08", "53", "57", "58":
		return true
	}
	return pe.Code == "25006" // read_only_sql_transaction: a standby
}
