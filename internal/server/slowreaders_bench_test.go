package server_test

import (
	"context"
	"io"
	"runtime"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/placebrain/auth/internal/testutil/authtest"
)

// BenchmarkSlowReaders opens 2,000 reflection streams over 20
// connections whose client takes in at most 64 KiB per connection and
// never reads a stream after its first answer, each stream asking for the
// largest answer ten times, and reports the heap they pin in authd (the
// server runs in the benchmark's process), with GRPC__MAX_STREAMING_RPCS
// at its default and effectively off:
//
//	go test -run '^$' -bench SlowReaders -benchtime 1x ./internal/server/
func BenchmarkSlowReaders(b *testing.B) {
	for _, limit := range []int{64, 100000} {
		b.Run("max_streaming_rpcs="+strconv.Itoa(limit), func(b *testing.B) {
			for range b.N {
				heap, admitted := slowReaders(b, limit)
				b.ReportMetric(float64(heap)/(1<<20), "heap-MiB")
				b.ReportMetric(float64(admitted), "streams-admitted")
			}
		})
	}
}

func slowReaders(b *testing.B, limit int) (growth uint64, admitted int) {
	const conns, streams = 20, 2000
	e := authtest.New(b, authtest.Set("GRPC__REFLECTION", "true", "GRPC__MAX_STREAMING_RPCS", strconv.Itoa(limit),
		"LOG__LEVEL", "error"))
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	before := heap()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cs []*grpc.ClientConn
	for range conns {
		c, err := grpc.NewClient(e.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		cs = append(cs, c)
	}
	for i := range streams {
		s, err := reflectionpb.NewServerReflectionClient(cs[i%conns]).ServerReflectionInfo(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Send(largest); err != nil && err != io.EOF {
			continue
		}
		if _, err := s.Recv(); err != nil {
			continue
		}
		admitted++
		for range 10 {
			if err := s.Send(largest); err != nil {
				break
			}
		}
	}
	// Let the server write what it can, then measure.
	time.Sleep(time.Second)
	after := heap()
	if after > before {
		growth = after - before
	}
	return growth, admitted
}
