package postgres

import (
	"context"
	"maps"
	"slices"
	"testing"
)

// A copy moves every table and column of a log: a migration that adds one
// fails this test until the copy knows what to do with it.
func TestCopyKnowsEveryTableAndColumn(t *testing.T) {
	ctx := context.Background()
	s := openCopyStore(t, freshSchema(t))
	names := func(query string, args ...any) []string {
		t.Helper()
		rows, err := s.pool.Query(ctx, query, args...)
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
	columnsOf := `SELECT column_name::text FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = $1`
	for _, c := range []struct {
		what      string
		got, want []string
	}{
		{"tables", names(`SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema()`),
			slices.Sorted(maps.Keys(copyTables))},
		{"jobs columns", names(columnsOf, "jobs"), slices.Sorted(slices.Values(jobRowNames))},
		{"deliveries columns", names(columnsOf, "deliveries"), slices.Sorted(slices.Values(deliveryRowNames))},
		{"forwards columns", names(columnsOf, "forwards"), slices.Sorted(slices.Values(forwardRowNames))},
		{"forward_attempts columns", names(columnsOf, "forward_attempts"),
			slices.Sorted(slices.Values(forwardAttemptRowNames))},
		{"polls columns", names(columnsOf, "polls"), slices.Sorted(slices.Values(pollRowNames))},
		{"forward_pause columns", names(columnsOf, "forward_pause"), []string{"one", "reason"}},
	} {
		if !slices.Equal(c.got, c.want) {
			t.Errorf("%s: the schema has %v, the copy knows %v", c.what, c.got, c.want)
		}
	}
}
