package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Outcome says what a report did to its job.
type Outcome string

// Outcomes of a delivery or a poll that reported a terminal state.
const (
	// OutcomeAccepted: the report ended the job.
	OutcomeAccepted Outcome = "accepted"
	// OutcomeDuplicate: the job had already ended, the same way.
	OutcomeDuplicate Outcome = "duplicate"
	// OutcomeConflict: the job had already ended differently; the first
	// report stands.
	OutcomeConflict Outcome = "conflict"
	// OutcomeInvalid: a signed delivery that is not a usable event.
	OutcomeInvalid Outcome = "invalid"
)

// Duplicate reports whether the job had already ended before this report.
func (o Outcome) Duplicate() bool { return o == OutcomeDuplicate || o == OutcomeConflict }

// WebhookDelivery is one delivery whose signature has been verified.
type WebhookDelivery struct {
	// Body is the exact bytes received.
	Body       []byte
	ReceivedAt time.Time
	// Attempt is the X-Nouvel-Attempt header, 1 when absent.
	Attempt int
	// Report is the parsed event; nil when the body is not a usable event.
	Report *Report
	// JobID is the job the body names, if any, even when Report is nil.
	JobID string
	// Problem says why the body is not usable when Report is nil.
	Problem string
}

// RecordWebhook commits a verified delivery: its raw bytes in the delivery
// log and, for a usable event, the job's terminal state and feed entry, all in
// one transaction. It returns only once that is durable. An error wrapping
// ErrUnavailable means nothing was stored.
func (s *Store) RecordWebhook(ctx context.Context, d WebhookDelivery) (Outcome, error) {
	if d.Report == nil {
		return OutcomeInvalid, s.write(ctx, func(t *txn) error {
			return t.insertDelivery(d, 0, OutcomeInvalid)
		})
	}
	if !IsTerminal(d.Report.Status) || !ValidJobID(d.Report.JobID) {
		return "", fmt.Errorf("%w: webhook report for %q with status %q", ErrInvalid, d.Report.JobID, d.Report.Status)
	}
	projects, err := encodeProjects(d.Report.Projects)
	if err != nil {
		return "", err
	}
	var outcome Outcome
	err = s.write(ctx, func(t *txn) error {
		var row int64
		var err error
		if outcome, row, err = t.endJob(d.Report, projects, SourceWebhook); err != nil {
			return err
		}
		return t.insertDelivery(d, row, outcome)
	})
	return outcome, err
}

func encodeProjects(p []Project) (string, error) {
	if len(p) == 0 {
		return "[]", nil
	}
	b, err := json.Marshal(p)
	if err != nil {
		return "", fmt.Errorf("%w: projects: %w", ErrInvalid, err)
	}
	return string(b), nil
}

// jobState is what deciding the fate of a report needs to know of its job.
type jobState struct {
	row                      int64
	status                   string
	terminal                 bool
	total, completed, failed int
}

func (j jobState) agrees(r *Report) bool {
	return j.status == r.Status && j.total == r.TotalProjects &&
		j.completed == r.CompletedProjects && j.failed == r.FailedProjects
}

// endJob applies a terminal report learned from source and returns what it
// did and the job's row. The first terminal report wins; a later one only
// bumps the webhook counter. A job not yet in the log, the common case for a
// webhook, takes a single insert.
func (t *txn) endJob(r *Report, projects, source string) (Outcome, int64, error) {
	webhooks := 0
	if source == SourceWebhook {
		webhooks = 1
	}
	now := t.now.UnixNano()
	var cur jobState
	err := t.stmt(t.stmts.insertEnded).QueryRowContext(t.ctx, r.JobID, r.Status, r.TotalProjects,
		r.CompletedProjects, r.FailedProjects, projects, source, r.Stage, webhooks, now, now, now).Scan(&cur.row)
	if err == nil {
		t.ended = true
		return OutcomeAccepted, cur.row, nil
	}
	if !errors.Is(err, sql.ErrNoRows) { // no row: the job was known
		return "", 0, err
	}
	err = t.stmt(t.stmts.jobState).QueryRowContext(t.ctx, r.JobID).
		Scan(&cur.row, &cur.status, &cur.terminal, &cur.total, &cur.completed, &cur.failed)
	if err != nil {
		return "", 0, err
	}
	if !cur.terminal {
		_, err = t.stmt(t.stmts.endJob).ExecContext(t.ctx, r.Status,
			r.TotalProjects, r.CompletedProjects, r.FailedProjects, projects, source, r.Stage,
			webhooks, now, now, cur.row)
		if err != nil {
			return "", 0, err
		}
		t.ended = true
		return OutcomeAccepted, cur.row, nil
	}
	if webhooks > 0 {
		if _, err = t.stmt(t.stmts.countWebhook).ExecContext(t.ctx, cur.row); err != nil {
			return "", 0, err
		}
	}
	if cur.agrees(r) {
		return OutcomeDuplicate, cur.row, nil
	}
	return OutcomeConflict, cur.row, nil
}

func (t *txn) insertDelivery(d WebhookDelivery, row int64, outcome Outcome) error {
	var jobRow, jobID any
	status := ""
	if row != 0 {
		jobRow = row
	}
	if d.Report != nil {
		jobID, status = d.Report.JobID, d.Report.Status
	} else if d.JobID != "" {
		jobID = d.JobID
	}
	_, err := t.stmt(t.stmts.insertDelivery).ExecContext(t.ctx, jobRow, jobID,
		d.ReceivedAt.UnixNano(), d.Attempt, status, string(outcome), d.Problem, d.Body)
	return err
}

// statements are the write path's hot statements, prepared once on the
// writer's connection.
type statements struct {
	jobState, insertEnded, endJob, countWebhook, insertDelivery *sql.Stmt
}

const nextSeq = `(SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs)`

func prepare(ctx context.Context, db *sql.DB) (*statements, error) {
	var s statements
	for _, p := range []struct {
		dst *(*sql.Stmt)
		sql string
	}{
		{&s.jobState, `SELECT id, status, terminal, total_projects, completed_projects, failed_projects
			FROM jobs WHERE job_id = ?`},
		{&s.insertEnded, `INSERT INTO jobs (job_id, status, terminal, total_projects, completed_projects,
			failed_projects, projects, source, progress, stage, webhook_deliveries, created_at, updated_at,
			terminal_at, seq) VALUES (?, ?, 1, ?, ?, ?, ?, ?, 100, ?, ?, ?, ?, ?, ` + nextSeq + `)
			ON CONFLICT (job_id) DO NOTHING RETURNING id`},
		{&s.endJob, `UPDATE jobs SET status = ?, terminal = 1, total_projects = ?, completed_projects = ?,
			failed_projects = ?, projects = ?, source = ?, progress = 100, stage = ?,
			webhook_deliveries = webhook_deliveries + ?, updated_at = ?, terminal_at = ?,
			next_poll_at = NULL, seq = ` + nextSeq + ` WHERE id = ?`},
		{&s.countWebhook, `UPDATE jobs SET webhook_deliveries = webhook_deliveries + 1 WHERE id = ?`},
		{&s.insertDelivery, `INSERT INTO deliveries (job_row, job_id, received_at, attempt, status, outcome, error, body)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`},
	} {
		stmt, err := db.PrepareContext(ctx, p.sql)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("prepare: %w", err)
		}
		*p.dst = stmt
	}
	return &s, nil
}

func (s *statements) close() {
	for _, st := range []*sql.Stmt{s.jobState, s.insertEnded, s.endJob, s.countWebhook, s.insertDelivery} {
		if st != nil {
			st.Close()
		}
	}
}
