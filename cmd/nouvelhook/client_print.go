package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
)

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeTable writes rows aligned in columns, each line after indent.
func writeTable(w io.Writer, indent string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, indent+strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// cell makes s fit a table cell: titles and errors come from outside and
// may hold tabs or newlines, and an empty cell would hide a column.
func cell(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if s == "" {
		return "-"
	}
	return s
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Format(time.RFC3339)
}

func writeJobsTable(w io.Writer, jobs []store.Job) error {
	rows := [][]string{{"JOB ID", "STATUS", "SOURCE", "PROJECTS", "DELIVERIES", "UPDATED"}}
	for _, j := range jobs {
		rows = append(rows, []string{j.JobID, string(j.Status), cell(j.Source),
			fmt.Sprintf("%d/%d", j.CompletedProjects, j.TotalProjects),
			strconv.Itoa(j.WebhookDeliveries), formatTime(j.UpdatedAt)})
	}
	return writeTable(w, "", rows)
}

func writeForwardsTable(w io.Writer, forwards []store.QueuedForward) error {
	rows := [][]string{{"JOB ID", "SEQ", "STATE", "ATTEMPTS", "LAST STATUS", "NEXT ATTEMPT", "DELIVERED", "LAST ERROR"}}
	for _, f := range forwards {
		rows = append(rows, []string{f.JobID, strconv.FormatInt(f.Seq, 10), string(f.State), strconv.Itoa(f.Attempts),
			httpStatus(f.LastStatus), formatTimePtr(f.NextAttemptAt), formatTimePtr(f.DeliveredAt), cell(f.LastError)})
	}
	return writeTable(w, "", rows)
}

// httpStatus writes an attempt's HTTP status, "-" for none.
func httpStatus(code int) string {
	if code == 0 {
		return "-"
	}
	return strconv.Itoa(code)
}

func formatTimePtr(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return formatTime(*t)
}

// forwardSummary is a job's forward in one line, "-" when none was queued.
func forwardSummary(f *store.Forward) string {
	if f == nil {
		return "-"
	}
	s := fmt.Sprintf("%s, %d attempts", f.State, f.Attempts)
	if f.Attempts == 1 {
		s = fmt.Sprintf("%s, 1 attempt", f.State)
	}
	if f.LastStatus != 0 {
		s += ", last status " + strconv.Itoa(f.LastStatus)
	}
	if f.LastError != "" {
		s += ", last error: " + cell(f.LastError)
	}
	if f.NextAttemptAt != nil {
		s += ", next " + formatTime(*f.NextAttemptAt)
	}
	if f.DeliveredAt != nil {
		s += ", delivered " + formatTime(*f.DeliveredAt)
	}
	return s
}

// writeJob writes every field of j, then its projects and deliveries.
func writeJob(w io.Writer, j store.Job) error {
	terminalAt, seq := formatTimePtr(j.TerminalAt), "-"
	if j.Seq > 0 {
		seq = strconv.FormatInt(j.Seq, 10)
	}
	fields := [][]string{
		{"Job ID:", j.JobID},
		{"Status:", string(j.Status)},
		{"Terminal:", strconv.FormatBool(j.Terminal)},
		{"Source:", cell(j.Source)},
		{"Projects:", fmt.Sprintf("%d completed, %d failed, %d total", j.CompletedProjects, j.FailedProjects, j.TotalProjects)},
		{"Progress:", fmt.Sprintf("%d%%", j.Progress)},
		{"Stage:", cell(j.Stage)},
		{"Webhook deliveries:", strconv.Itoa(j.WebhookDeliveries)},
		{"Webhook missed:", strconv.FormatBool(j.WebhookMissed)},
		{"Poll count:", strconv.Itoa(j.PollCount)},
		{"Last error:", cell(j.LastError)},
		{"Created:", formatTime(j.CreatedAt)},
		{"Updated:", formatTime(j.UpdatedAt)},
		{"Terminal at:", terminalAt},
		{"Seq:", seq},
		{"Forward:", forwardSummary(j.Forward)},
	}
	if err := writeTable(w, "", fields); err != nil {
		return err
	}
	if err := writeSection(w, "Projects", projectRows(j.Projects)); err != nil {
		return err
	}
	return writeSection(w, deliveriesTitle(j), deliveryRows(j.Deliveries))
}

// deliveriesTitle heads the deliveries table, saying so when the service
// listed only the last of them: it lists at most store.MaxDeliveries, and
// counts in DeliveriesTotal every copy received, those not listed included.
func deliveriesTitle(j store.Job) string {
	listed := 0
	for _, d := range j.Deliveries {
		listed += max(d.Copies, 1)
	}
	if j.DeliveriesTotal > listed {
		return fmt.Sprintf("Deliveries (the last %d listed; %d received in all)", len(j.Deliveries), j.DeliveriesTotal)
	}
	return "Deliveries"
}

// writeSection writes a titled table; rows[0] is its header.
func writeSection(w io.Writer, title string, rows [][]string) error {
	fmt.Fprintf(w, "\n%s:\n", title)
	if len(rows) == 1 {
		_, err := fmt.Fprintln(w, "  none")
		return err
	}
	return writeTable(w, "  ", rows)
}

func projectRows(ps []store.Project) [][]string {
	rows := [][]string{{"PROJECT ID", "TITLE", "STATUS", "VIDEO URL"}}
	for _, p := range ps {
		rows = append(rows, []string{cell(p.ProjectID), cell(p.Title), cell(string(p.Status)), cell(p.VideoURL)})
	}
	return rows
}

func deliveryRows(ds []store.Delivery) [][]string {
	// COPIES: how many times these exact bytes came (a retry or a replay);
	// RECEIVED and the rest are the first copy's.
	rows := [][]string{{"RECEIVED", "ATTEMPT", "DUPLICATE", "STATUS", "COPIES"}}
	for _, d := range ds {
		rows = append(rows, []string{formatTime(d.ReceivedAt), strconv.Itoa(d.Attempt),
			strconv.FormatBool(d.Duplicate), cell(string(d.Status)), strconv.Itoa(max(d.Copies, 1))})
	}
	return rows
}
