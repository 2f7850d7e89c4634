package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/placebrain/auth/internal/migrate"
	"github.com/placebrain/auth/internal/store"
	"github.com/placebrain/auth/migrations"
	"github.com/placebrain/auth/proto/authpb"
)

// migrateAtStart applies pending migrations, or with autoMigrate false
// refuses a database that has pending ones. While it waits for another
// process's migration (the advisory lock) or runs a file outside a
// transaction, which may build an index on a large table for a long time,
// it answers health checks NOT_SERVING on lis through a temporary gRPC
// server (options opts: the same TLS and caller checks); it returns the
// listener the service must serve on.
func migrateAtStart(ctx context.Context, db *store.DB, autoMigrate bool, log *slog.Logger, lis net.Listener, opts []grpc.ServerOption) (net.Listener, error) {
	m := migrate.New(db.SQL, db.Dialect, migrations.For(db.Dialect), log)
	if !autoMigrate {
		st, err := m.Status(ctx)
		if err != nil {
			return lis, err
		}
		if len(st.Pending) > 0 {
			return lis, fmt.Errorf("database has %d pending migrations and DATABASE__AUTO_MIGRATE=false: run `authd migrate apply` or `atlas migrate apply`", len(st.Pending))
		}
		return lis, nil
	}
	w := &startupHealth{lis: lis, opts: opts, log: log}
	// A starting instance waits as long as the migration another one
	// runs (an index build may take hours); SIGTERM ends the wait.
	m.LockTimeout = 0
	m.Waiting = w.notServing
	applied, err := m.Apply(ctx)
	lis = w.stop()
	if err != nil {
		return lis, err
	}
	log.Info("migrations up to date", "applied", len(applied))
	return lis, nil
}

// warnDrift logs a warning when the database's schema differs from the
// end state of the migration files (an index made or dropped by hand, a
// column altered): `authd migrate drift` prints the differences as SQL.
// It does not stop the start.
func warnDrift(ctx context.Context, db *store.DB, log *slog.Logger) {
	d, err := migrate.New(db.SQL, db.Dialect, migrations.For(db.Dialect), log).Drift(ctx, migrations.EndState(db.Dialect))
	switch {
	case err != nil:
		log.Warn("could not compare the database schema with the migration files", "error", err)
	case d.Drifted():
		log.Warn("the database schema has drifted from the migration files: run `authd migrate drift` for the SQL that undoes it, or write a migration",
			"schema", d.Schema, "differences", d.Changes)
	}
}

// startupHealth serves health NOT_SERVING on the service's listener
// while the migrations keep the service from starting, so probes see a
// starting instance rather than a closed port; then it hands the
// listener over.
type startupHealth struct {
	lis  net.Listener
	opts []grpc.ServerOption
	log  *slog.Logger

	mu  sync.Mutex
	srv *grpc.Server
	h   *handoff
}

// notServing starts the temporary server on the first call.
func (s *startupHealth) notServing(reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return
	}
	s.h = newHandoff(s.lis)
	s.srv = grpc.NewServer(s.opts...)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	hs.SetServingStatus(authpb.AuthService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(s.srv, hs)
	go s.srv.Serve(s.h.listener(false))
	s.log.Info("health answers NOT_SERVING until the migrations are done", "addr", s.lis.Addr().String(), "reason", reason)
}

// stop stops the temporary server, if it ran, and returns the listener
// the service serves on.
func (s *startupHealth) stop() net.Listener {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return s.lis
	}
	s.srv.Stop() // ends open health streams; their clients reconnect
	return s.h.listener(true)
}

// handoff accepts connections on one listener and gives them to whichever
// of its views accepts next: the temporary server's, then the service's.
type handoff struct {
	lis     net.Listener
	conns   chan net.Conn
	done    chan struct{} // closed when lis fails or is closed
	err     error
	stopped chan struct{} // closed when the owner closes its view
	stop    sync.Once
}

func newHandoff(lis net.Listener) *handoff {
	h := &handoff{lis: lis, conns: make(chan net.Conn), done: make(chan struct{}), stopped: make(chan struct{})}
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				h.err = err
				close(h.done)
				return
			}
			select {
			case h.conns <- c:
			case <-h.stopped:
				c.Close()
				return
			}
		}
	}()
	return h
}

// listener returns a view of the shared listener; closing it stops its
// Accept and, when owner, closes the shared listener too.
func (h *handoff) listener(owner bool) net.Listener {
	return &handoffView{h: h, owner: owner, closed: make(chan struct{})}
}

type handoffView struct {
	h      *handoff
	owner  bool
	once   sync.Once
	closed chan struct{}
}

func (v *handoffView) Accept() (net.Conn, error) {
	select {
	case c := <-v.h.conns:
		return c, nil
	case <-v.closed:
		return nil, net.ErrClosed
	case <-v.h.done:
		return nil, v.h.err
	}
}

func (v *handoffView) Close() error {
	var err error
	v.once.Do(func() {
		close(v.closed)
		if v.owner {
			v.h.stop.Do(func() { close(v.h.stopped) })
			err = v.h.lis.Close()
		}
	})
	return err
}

func (v *handoffView) Addr() net.Addr { return v.h.lis.Addr() }
