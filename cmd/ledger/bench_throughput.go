package main

import (
	"context"
	"fmt"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/shred"
	"github.com/contactledger/ledger/projections"
	"github.com/jackc/pgx/v5"
)

// The figures of issue 16 (throughput): group commit, batched work on
// many contacts, imports, the identity index's catch-up.

// aloneAppender is PostgreSQL's append without group commit (a statement
// and a commit of its own), the path every append took before it.
type aloneAppender interface {
	AppendAlone(ctx context.Context, stream string, expected uint64, events []contact.Record) (contact.Position, error)
}

// groupCommitBench measures, on PostgreSQL, the port's 8-writer append
// (port8, measured by appendBench in the same run) beside the commit
// ceiling (single-row INSERT commits from 8 connections: what the
// database's commits allow, with nothing else done) and beside the same
// append without group commit (the path of every append before it).
func (b *bench) groupCommitBench(ctx context.Context, e *benchEnv, m *Main, key shred.DataKey, port8 float64) error {
	alone, ok := m.events.(aloneAppender)
	if !ok {
		return fmt.Errorf("the %s store has no append without group commit", e.store)
	}
	b.logf("%s: the commit ceiling: single-row INSERT commits from 8 connections, %s", e.store, b.opts.duration)
	conns := make([]*pgx.Conn, 8)
	for i := range conns {
		c, err := pgx.Connect(ctx, e.dbURL)
		if err != nil {
			return err
		}
		defer c.Close(context.Background())
		conns[i] = c
	}
	if _, err := conns[0].Exec(ctx, `CREATE TABLE ceiling_events (LIKE events INCLUDING ALL)`); err != nil {
		return err
	}
	ceiling, err := measure(ctx, 8, b.opts.duration, func(ctx context.Context, w, i int) error {
		stream, recs, err := benchRecord(key, i)
		if err != nil {
			return err
		}
		r := recs[0]
		_, err = conns[w].Exec(ctx, `INSERT INTO ceiling_events (id, stream, version, type, time, workspace, actor, actor_role,
			correlation_id, causation_id, schema, data, sealed, prev_hash, hash) VALUES ($1,$2,1,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)`,
			r.ID[:], stream, r.Type, r.Time, r.Workspace, r.Actor.Principal, string(r.Actor.Role), r.CorrelationID, r.CausationID,
			r.Schema, r.Data, r.Sealed, r.PrevHash, r.Hash)
		return err
	})
	if err != nil {
		return err
	}
	b.logf("%s: the port's append without group commit, 8 writers, %s", e.store, b.opts.duration)
	ungrouped, err := measure(ctx, 8, b.opts.duration, func(ctx context.Context, w, i int) error {
		stream, recs, err := benchRecord(key, i)
		if err != nil {
			return err
		}
		_, err = alone.AppendAlone(ctx, stream, 0, recs)
		return err
	})
	if err != nil {
		return err
	}
	b.report(figure{Name: "append.commit-ceiling.8c", Store: e.store, Value: ceiling, Unit: "commits/s"}, 0, true, 0)
	b.report(figure{Name: "append.port.8w.vs-ceiling", Store: e.store, Value: port8, Unit: "appends/s",
		BaselineName: "single-row INSERT commits from 8 connections"}, ceiling, true, 0)
	b.report(figure{Name: "append.port.8w.group-commit", Store: e.store, Value: port8, Unit: "appends/s",
		BaselineName: "the same append without group commit", Target: "ratio>=1.5"}, ungrouped, true, 1.5)
	return nil
}

// identityCatchUp waits for the identity index of a server started (at
// start) on a log it has not indexed, and reports its rate: the events of
// the log over the time it took to reach the head.
func (b *bench) identityCatchUp(ctx context.Context, s *server, store string, start time.Time, events int) error {
	b.logf("%s: the identity index catches up with %d events it has not indexed", store, events)
	for deadline := time.Now().Add(30 * time.Minute); time.Now().Before(deadline); time.Sleep(time.Second) {
		var st struct {
			Projections []struct {
				Name       string `json:"name"`
				LagEvents  int64  `json:"lag_events"`
				Checkpoint string `json:"checkpoint"`
				Head       string `json:"head"`
			} `json:"projections"`
		}
		code, err := s.call(ctx, "GET", "/v1/projections", nil, &st)
		if err != nil {
			return err
		}
		if code != 200 {
			return fmt.Errorf("projections: %d", code)
		}
		for _, p := range st.Projections {
			if p.Name == projections.Identities && p.LagEvents == 0 && p.Checkpoint == p.Head {
				secs := time.Since(start).Seconds()
				b.report(figure{Name: "identities.catch-up", Store: store, Value: float64(events) / secs, Unit: "events/s", Target: ">=20000/s"}, 0, true, 20000)
				return nil
			}
		}
	}
	return fmt.Errorf("the identity index did not catch up")
}
