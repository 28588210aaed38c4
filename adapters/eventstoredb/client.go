package eventstoredb

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
)

// Client is the part of the EventStoreDB client that the store uses. The
// real one wraps *esdb.Client (see Dial); tests put a fake behind it, so the
// mapping, the error translation and the reconnect logic run without a server.
type Client interface {
	AppendToStream(ctx context.Context, stream string, opts esdb.AppendToStreamOptions, events ...esdb.EventData) (*esdb.WriteResult, error)
	ReadStream(ctx context.Context, stream string, opts esdb.ReadStreamOptions, count uint64) (Events, error)
	ReadAll(ctx context.Context, opts esdb.ReadAllOptions, count uint64) (Events, error)
	SubscribeToAll(ctx context.Context, opts esdb.SubscribeToAllOptions) (Subscription, error)
	Close() error
}

// Events is an open read: Recv returns io.EOF at the end. Close it always.
type Events interface {
	Recv() (*esdb.ResolvedEvent, error)
	Close()
}

// Subscription is an open catch-up subscription. Recv blocks until the next
// message; cancelling the subscription's context or Close unblocks it with a
// dropped message. Close it always, after a drop too.
type Subscription interface {
	Recv() *esdb.SubscriptionEvent
	Close() error
}

// Dialer makes a new client. The store calls it once at the start and again
// whenever the client it has closed itself for good (see conn).
type Dialer func() (Client, error)

// Dial returns a Dialer of real clients for a connection string
// (esdb://, esdb+discover://; TLS and credentials come from it). The
// client's own log lines go to log: its errors at warn level, since the
// store reports the errors that matter itself.
func Dial(url string, log *slog.Logger) (Dialer, error) {
	cfg, err := esdb.ParseConnectionString(url)
	if err != nil {
		return nil, fmt.Errorf("eventstoredb connection string: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.Logger = func(level esdb.LogLevel, format string, args ...any) {
		l := slog.LevelDebug
		switch level {
		case esdb.LogError, esdb.LogWarn:
			l = slog.LevelWarn
		case esdb.LogInfo:
			l = slog.LevelInfo
		}
		log.Log(context.Background(), l, "eventstoredb client: "+fmt.Sprintf(format, args...))
	}
	// Fail fast on a bad configuration (a certificate file that is missing, ...).
	if _, err := esdb.NewClient(cfg); err != nil {
		return nil, fmt.Errorf("eventstoredb connection string: %w", err)
	}
	return func() (Client, error) {
		c, err := esdb.NewClient(cfg)
		if err != nil {
			return nil, err
		}
		return esdbClient{c}, nil
	}, nil
}

// esdbClient adapts *esdb.Client to Client.
type esdbClient struct{ c *esdb.Client }

func (e esdbClient) AppendToStream(ctx context.Context, stream string, opts esdb.AppendToStreamOptions, events ...esdb.EventData) (*esdb.WriteResult, error) {
	return e.c.AppendToStream(ctx, stream, opts, events...)
}

func (e esdbClient) ReadStream(ctx context.Context, stream string, opts esdb.ReadStreamOptions, count uint64) (Events, error) {
	rs, err := e.c.ReadStream(ctx, stream, opts, count)
	if err != nil {
		return nil, err
	}
	return rs, nil
}

func (e esdbClient) ReadAll(ctx context.Context, opts esdb.ReadAllOptions, count uint64) (Events, error) {
	rs, err := e.c.ReadAll(ctx, opts, count)
	if err != nil {
		return nil, err
	}
	return rs, nil
}

func (e esdbClient) SubscribeToAll(ctx context.Context, opts esdb.SubscribeToAllOptions) (Subscription, error) {
	sub, err := e.c.SubscribeToAll(ctx, opts)
	if err != nil {
		return nil, err
	}
	return sub, nil
}

func (e esdbClient) Close() error { return e.c.Close() }
