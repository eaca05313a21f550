package sqlite

import (
	"context"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// A copy moves every table and column of a log: a migration that adds one
// fails this test until the copy knows what to do with it.
func TestCopyKnowsEveryTableAndColumn(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "nh.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	names := func(query string) []string {
		t.Helper()
		rows, err := s.rdb.QueryContext(ctx, query)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var got []string
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				t.Fatal(err)
			}
			got = append(got, n)
		}
		slices.Sort(got)
		return got
	}
	columns := func(list string) []string {
		var got []string
		for _, c := range strings.Split(list, ",") {
			got = append(got, strings.TrimSpace(c))
		}
		slices.Sort(got)
		return got
	}
	for _, c := range []struct {
		what      string
		got, want []string
	}{
		{"tables", names(`SELECT name FROM sqlite_master WHERE type = 'table'`), slices.Sorted(maps.Keys(copyTables))},
		{"jobs columns", names(`SELECT name FROM pragma_table_info('jobs')`), columns(jobRowColumns)},
		{"deliveries columns", names(`SELECT name FROM pragma_table_info('deliveries')`), columns(deliveryRowColumns)},
		{"forwards columns", names(`SELECT name FROM pragma_table_info('forwards')`), columns(forwardRowColumns)},
		{"forward_attempts columns", names(`SELECT name FROM pragma_table_info('forward_attempts')`), columns(forwardAttemptRowColumns)},
		{"polls columns", names(`SELECT name FROM pragma_table_info('polls')`), columns(pollRowColumns)},
	} {
		if !slices.Equal(c.got, c.want) {
			t.Errorf("%s: the schema has %v, the copy knows %v", c.what, c.got, c.want)
		}
	}
}
