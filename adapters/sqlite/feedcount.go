package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/contactledger/ledger/ledger"
)

var _ ledger.LogCounter = (*Store)(nil)

// CountLog counts a workspace's events after q.After that match q, up to
// q.Limit when it is set (a webhook subscription's lag).
func (s *Store) CountLog(ctx context.Context, q ledger.LogQuery) (int64, error) {
	where := []string{"workspace = ?", "position > ?"}
	args := []any{q.Workspace, int64(q.After.Commit)}
	if !q.Since.IsZero() {
		where, args = append(where, "time >= ?"), append(args, micros(q.Since))
	}
	if len(q.Types) > 0 {
		list, _ := json.Marshal(q.Types)
		where, args = append(where, "type IN (SELECT value FROM json_each(?))"), append(args, string(list))
	}
	limit := int64(-1)
	if q.Limit > 0 {
		limit = int64(q.Limit)
	}
	var n int64
	err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT 1 FROM events WHERE `+strings.Join(where, " AND ")+` LIMIT ?)`,
		append(args, limit)...).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count the log of %s: %w", q.Workspace, err)
	}
	return n, nil
}
