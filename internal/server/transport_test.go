package server_test

import (
	"context"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/placebrain/auth/internal/testutil/authtest"
)

// largest asks reflection for AuthService's file and its dependencies:
// the largest answer the server gives.
var largest = &reflectionpb.ServerReflectionRequest{
	MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "auth.AuthService"},
}

// Streams whose client stops reading can pin at most
// GRPC__MAX_STREAMING_RPCS of them: the streams past it are refused
// RESOURCE_EXHAUSTED at once, unary RPCs go on, and a slot frees when a
// stream ends.
func TestStreamingRPCsBounded(t *testing.T) {
	const limit, opened = 8, 50
	e := authtest.New(t, authtest.Set("GRPC__REFLECTION", "true", "GRPC__MAX_STREAMING_RPCS", "8"))
	// Spread over a few connections, as a client that never reads might.
	var conns []*grpc.ClientConn
	for range 5 {
		conn, err := grpc.NewClient(e.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		conns = append(conns, conn)
	}
	var held []context.CancelFunc
	refused := 0
	for i := range opened {
		ctx, cancel := context.WithCancel(t.Context())
		t.Cleanup(cancel)
		stream, err := reflectionpb.NewServerReflectionClient(conns[i%len(conns)]).ServerReflectionInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// A refused stream may end before the request goes out: Send
		// then says io.EOF, and Recv has the status.
		if err := stream.Send(largest); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		// The first answer says whether the stream was admitted; an
		// admitted one is then asked again and never read.
		_, err = stream.Recv()
		switch status.Code(err) {
		case codes.OK:
			held = append(held, cancel)
			for range 10 {
				if err := stream.Send(largest); err != nil {
					break
				}
			}
		case codes.ResourceExhausted:
			refused++
			cancel()
		default:
			t.Fatalf("stream %d: %v", i, err)
		}
	}
	if len(held) != limit || refused != opened-limit {
		t.Errorf("admitted %d, refused %d; want %d and %d", len(held), refused, limit, opened-limit)
	}
	// Unary RPCs, health checks included, are not held back.
	if _, err := healthpb.NewHealthClient(e.Conn).Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("health check with the streams full: %v", err)
	}
	e.VerifiedUser(t, "ada", "ada@example.com", pw)

	// Ending a stream frees its slot (the server sees the end
	// asynchronously: a bounded number of tries, no timing).
	held[0]()
	for i := 0; ; i++ {
		stream, err := reflectionpb.NewServerReflectionClient(e.Conn).ServerReflectionInfo(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(largest); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		_, err = stream.Recv()
		if err == nil {
			break
		}
		if status.Code(err) != codes.ResourceExhausted || i == 1000 {
			t.Fatalf("stream after one ended: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
}

// GRPC__MAX_CONNECTIONS caps the open connections: one past the cap is
// not served until another closes.
func TestMaxConnections(t *testing.T) {
	e := authtest.New(t, authtest.Set("GRPC__MAX_CONNECTIONS", "1"))
	// e.Conn holds the one slot.
	if _, err := healthpb.NewHealthClient(e.Conn).Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	second, err := grpc.NewClient(e.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if _, err := healthpb.NewHealthClient(second).Check(ctx, &healthpb.HealthCheckRequest{}); err == nil {
		t.Fatal("a second connection was served past GRPC__MAX_CONNECTIONS=1")
	}
	e.Conn.Close()
	if _, err := healthpb.NewHealthClient(second).Check(t.Context(), &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true)); err != nil {
		t.Errorf("second connection once the first closed: %v", err)
	}
}

// One peer holds at most GRPC__MAX_CONNECTIONS_PER_PEER connections: one
// more from it is closed at once (it does not wait for a slot), and the
// peer's connections already open go on; a closed one frees its place.
func TestMaxConnectionsPerPeer(t *testing.T) {
	e := authtest.New(t, authtest.Set("GRPC__MAX_CONNECTIONS_PER_PEER", "1"))
	// e.Conn holds the peer's one place.
	if _, err := healthpb.NewHealthClient(e.Conn).Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	second, err := grpc.NewClient(e.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if _, err := healthpb.NewHealthClient(second).Check(t.Context(), &healthpb.HealthCheckRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("a second connection from the peer: %v; want it closed (UNAVAILABLE)", err)
	}
	if _, err := healthpb.NewHealthClient(e.Conn).Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("the peer's first connection after the second was refused: %v", err)
	}
	e.Conn.Close()
	if _, err := healthpb.NewHealthClient(second).Check(t.Context(), &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true)); err != nil {
		t.Errorf("second connection once the first closed: %v", err)
	}
}
