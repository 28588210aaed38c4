package sqlite

import (
	"container/list"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"

	msqlite "modernc.org/sqlite"
)

// driverName is the database/sql driver the store opens: modernc.org/sqlite
// with a cache of prepared statements on each connection.
//
// The driver prepares (parses and plans) every statement afresh on each
// call; the ledger runs the same few dozen statements all the time, and
// preparing them took a fifth of the server's CPU under a stream of
// commands. Each connection now keeps up to stmtCacheSize of them, reset
// between uses; database/sql's own Stmt cannot do this for the store,
// since preparing one on the writer pool needs the single connection that
// a transaction holds.
const driverName = "sqlite-ledger"

// stmtCacheSize bounds the prepared statements one connection keeps.
const stmtCacheSize = 256

func init() { sql.Register(driverName, cachingDriver{&msqlite.Driver{}}) }

type cachingDriver struct{ d driver.Driver }

func (d cachingDriver) Open(name string) (driver.Conn, error) {
	c, err := d.d.Open(name)
	if err != nil {
		return nil, err
	}
	return &cachingConn{c: c, byQuery: map[string]*list.Element{}, lru: list.New()}, nil
}

// cachingConn hands out its cached statements. It leaves out
// driver.ExecerContext and driver.QueryerContext on purpose, so that
// database/sql runs every statement through PrepareContext.
type cachingConn struct {
	c       driver.Conn
	byQuery map[string]*list.Element // of *cachedStmt
	lru     *list.List               // front: most recently used
}

var (
	_ driver.ConnPrepareContext = (*cachingConn)(nil)
	_ driver.ConnBeginTx        = (*cachingConn)(nil)
	_ driver.SessionResetter    = (*cachingConn)(nil)
	_ driver.Validator          = (*cachingConn)(nil)
	_ driver.Pinger             = (*cachingConn)(nil)
)

func (c *cachingConn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

func (c *cachingConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	if e, ok := c.byQuery[query]; ok {
		s := e.Value.(*cachedStmt)
		if !s.inUse {
			s.inUse = true
			c.lru.MoveToFront(e)
			return s, nil
		}
		// The same statement is still reading rows (a query inside a loop
		// over its own rows): this use gets a statement of its own.
		return c.prepare(ctx, query)
	}
	st, err := c.prepare(ctx, query)
	if err != nil {
		return nil, err
	}
	s := &cachedStmt{Stmt: st, conn: c, query: query, inUse: true}
	c.byQuery[query] = c.lru.PushFront(s)
	for c.lru.Len() > stmtCacheSize {
		old := c.lru.Back().Value.(*cachedStmt)
		if old.inUse {
			break // evicted when it is given back
		}
		c.evict(old)
	}
	return s, nil
}

func (c *cachingConn) prepare(ctx context.Context, query string) (driver.Stmt, error) {
	if p, ok := c.c.(driver.ConnPrepareContext); ok {
		return p.PrepareContext(ctx, query)
	}
	return c.c.Prepare(query)
}

func (c *cachingConn) evict(s *cachedStmt) {
	if e, ok := c.byQuery[s.query]; ok && e.Value == s {
		c.lru.Remove(e)
		delete(c.byQuery, s.query)
	}
	s.Stmt.Close()
}

// Close finalizes the cached statements, then closes the connection
// (SQLite will not close a connection with statements left).
func (c *cachingConn) Close() error {
	var errs []error
	for e := c.lru.Front(); e != nil; e = e.Next() {
		errs = append(errs, e.Value.(*cachedStmt).Stmt.Close())
	}
	c.lru.Init()
	clear(c.byQuery)
	return errors.Join(append(errs, c.c.Close())...)
}

func (c *cachingConn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *cachingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	if b, ok := c.c.(driver.ConnBeginTx); ok {
		return b.BeginTx(ctx, opts)
	}
	// database/sql does the same for a driver without BeginTx: Begin is
	// the only way such a connection starts a transaction.
	//lint:ignore SA1019 the fallback for a driver without ConnBeginTx
	return c.c.Begin()
}

func (c *cachingConn) ResetSession(ctx context.Context) error {
	if r, ok := c.c.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c *cachingConn) IsValid() bool {
	if v, ok := c.c.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

func (c *cachingConn) Ping(ctx context.Context) error {
	if p, ok := c.c.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

// cachedStmt is a statement of the cache, lent out to one use at a time:
// database/sql closes it when its result or rows are done, which gives it
// back (the driver has already reset it).
type cachedStmt struct {
	driver.Stmt
	conn  *cachingConn
	query string
	inUse bool
}

var (
	_ driver.StmtExecContext  = (*cachedStmt)(nil)
	_ driver.StmtQueryContext = (*cachedStmt)(nil)
)

func (s *cachedStmt) Close() error {
	s.inUse = false
	if s.conn.lru.Len() > stmtCacheSize {
		s.conn.evict(s)
	}
	return nil
}

func (s *cachedStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	return s.Stmt.(driver.StmtExecContext).ExecContext(ctx, args)
}

func (s *cachedStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	return s.Stmt.(driver.StmtQueryContext).QueryContext(ctx, args)
}
