package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/contactledger/ledger/ledger"
)

var _ ledger.LogCounter = (*Store)(nil)

// CountLog counts a workspace's events after q.After that match q, up to
// q.Limit when it is set (a webhook subscription's lag), under the same
// rule as ReadLog: only transactions older than every running one.
func (s *Store) CountLog(ctx context.Context, q ledger.LogQuery) (int64, error) {
	args := []any{q.Workspace, strconv.FormatUint(q.After.Commit, 10), int64(q.After.Prepare)}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	where := []string{"workspace = $1", "(tx, seq) > ($2::text::xid8, $3::bigint)", "tx < pg_snapshot_xmin(pg_current_snapshot())"}
	if !q.Since.IsZero() {
		where = append(where, "time >= "+arg(q.Since))
	}
	if len(q.Types) > 0 {
		where = append(where, "type = ANY("+arg(q.Types)+")")
	}
	limit := "ALL"
	if q.Limit > 0 {
		limit = arg(q.Limit)
	}
	var n int64
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM events WHERE `+strings.Join(where, " AND ")+` LIMIT `+limit+`) c`, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count the log of %s: %w", q.Workspace, err)
	}
	return n, nil
}
