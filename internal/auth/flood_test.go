package auth_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/placebrain/auth/internal/auth"
	"github.com/placebrain/auth/internal/testutil/authtest"
)

// floodCallers is how many logins a flood keeps in flight: more than the
// hashing pool's places (one worker per CPU and 32 queued).
const floodCallers = 40

// floodWarmup is how long a flood runs before the owner signs in.
const floodWarmup = 3 * time.Second

// floodVariants are the floods a verified owner must be able to sign in
// through: logins for random unknown addresses, logins for accounts the
// flooder registered (and never verified), and wrong passwords for
// verified accounts.
var floodVariants = []string{"unknown addresses", "unverified accounts", "wrong passwords"}

// flood is a running flood of logins against one service.
type flood struct {
	stop     context.CancelFunc
	wg       sync.WaitGroup
	requests atomic.Int64
	busy     atomic.Int64
}

// bcrypt12 is one bcrypt hash of pw at cost 12, made once per test binary.
var bcrypt12 = sync.OnceValue(func() []byte {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), 12)
	if err != nil {
		panic(err)
	}
	return h
})

// insertUsers stores n users named prefix0@... with pw hashed at cost 12
// (directly, one hash for all: setting up a flood must not take minutes)
// and returns their addresses.
func insertUsers(t testing.TB, e *authtest.Env, prefix string, n int, verified bool) []string {
	t.Helper()
	ctx := context.Background()
	now := e.Clock.Now()
	var addrs []string
	for i := range n {
		addr := fmt.Sprintf("%s%d@example.com", prefix, i)
		e.DB.Ent.User.Create().SetUsername(prefix).SetEmail(addr).SetEmailNormalized(addr).
			SetPasswordHash(string(bcrypt12())).SetIsVerified(verified).SetCreatedAt(now).SetUpdatedAt(now).ExecX(ctx)
		addrs = append(addrs, addr)
	}
	return addrs
}

// randomSource is a new IPv4 end-user address.
func randomSource() netip.Prefix {
	return auth.SourceOf(netip.AddrFrom4([4]byte{10, byte(rand.IntN(256)), byte(rand.IntN(256)), byte(1 + rand.IntN(254))}))
}

// startFlood starts floodCallers callers that log in over and over, as
// the variant says, each request from a new source when withSources. A
// caller that is refused at once (RESOURCE_EXHAUSTED) sends its next
// request 50 ms later: in-process, a refusal costs the caller nothing, and
// callers spinning on them would measure how the test's own loop starves
// the CPU, not the service (over the network the round trip paces them).
func startFlood(t testing.TB, e *authtest.Env, variant string, withSources bool) *flood {
	t.Helper()
	var targets []string
	password := pw
	switch variant {
	case "unverified accounts":
		targets = insertUsers(t, e, "flooder", floodCallers, false)
	case "wrong passwords":
		targets = insertUsers(t, e, "victim", floodCallers, true)
		password = "wrong password"
	}
	ctx, stop := context.WithCancel(context.Background())
	f := &flood{stop: stop}
	for i := range floodCallers {
		f.wg.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				addr := fmt.Sprintf("ghost-%d-%d@example.com", i, n)
				if targets != nil {
					addr = targets[i]
				}
				rctx := ctx
				if withSources {
					rctx = auth.WithSource(ctx, randomSource())
				}
				_, err := e.Service.Login(rctx, addr, password)
				f.requests.Add(1)
				if errors.Is(err, auth.ErrServerBusy) {
					f.busy.Add(1)
				}
				if de, ok := auth.AsError(err); ok && de.Kind == auth.KindResourceExhausted {
					select {
					case <-ctx.Done():
					case <-time.After(50 * time.Millisecond):
					}
				}
			}
		})
	}
	return f
}

func (f *flood) Stop() { f.stop(); f.wg.Wait() }

// floodEnv is a service at the default bcrypt cost (12), with a verified
// owner, and one bcrypt comparison's time on this machine.
func floodEnv(t testing.TB) (*authtest.Env, time.Duration) {
	e := newEnv(t, authtest.Set("PASSWORD__BCRYPT_COST", "12"))
	insertUsers(t, e, "owner", 1, true)
	start := time.Now()
	_ = bcrypt.CompareHashAndPassword(bcrypt12(), []byte(pw))
	return e, time.Since(start)
}

// ownerLogin signs the owner in from the owner's own source (or none) and
// returns how long it took.
func ownerLogin(t testing.TB, e *authtest.Env, withSources bool) time.Duration {
	t.Helper()
	ctx := context.Background()
	if withSources {
		ctx = auth.WithSource(ctx, auth.SourceOf(netip.MustParseAddr("192.0.2.7")))
	}
	start := time.Now()
	p, err := e.Service.Login(ctx, "owner0@example.com", pw)
	d := time.Since(start)
	if err != nil || p.RefreshToken == "" {
		t.Fatalf("owner's login during the flood: %v", err)
	}
	return d
}

// A login flood cannot keep a verified account's owner from signing in:
// during each flood, with and without source addresses, the owner's login
// with the right password returns tokens, never SERVER_BUSY. (Not run with
// -short: each variant hashes at cost 12 for a few seconds.)
func TestLoginFloods(t *testing.T) {
	if testing.Short() {
		t.Skip("floods at bcrypt cost 12")
	}
	for _, variant := range floodVariants {
		for _, withSources := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/sources=%v", variant, withSources), func(t *testing.T) {
				e, one := floodEnv(t)
				f := startFlood(t, e, variant, withSources)
				defer f.Stop()
				time.Sleep(floodWarmup) // the pool fills up, the flood's keys gain load
				for range 2 {
					d := ownerLogin(t, e, withSources)
					t.Logf("owner's login: %v (%.1f bcrypt comparisons)", d.Round(time.Millisecond), float64(d)/float64(one))
				}
				if variant != "unknown addresses" && f.busy.Load() == 0 {
					t.Errorf("the flood never filled the hashing pool (%d requests): it tests nothing", f.requests.Load())
				}
			})
		}
	}
}

// BenchmarkLoginUnderFlood reports, for each flood, the owner's login time
// as a multiple of one bcrypt comparison at cost 12 on this machine
// (median and worst of b.N logins):
//
//	go test -run '^$' -bench LoginUnderFlood -benchtime 10x ./internal/auth/
func BenchmarkLoginUnderFlood(b *testing.B) {
	for _, variant := range floodVariants {
		for _, withSources := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/sources=%v", variant, withSources), func(b *testing.B) {
				e, one := floodEnv(b)
				f := startFlood(b, e, variant, withSources)
				time.Sleep(4 * floodWarmup)
				var ds []time.Duration
				b.ResetTimer()
				for range b.N {
					ds = append(ds, ownerLogin(b, e, withSources))
				}
				b.StopTimer()
				f.Stop()
				slices.Sort(ds)
				b.ReportMetric(float64(ds[len(ds)/2])/float64(one), "p50/bcrypt")
				b.ReportMetric(float64(ds[len(ds)-1])/float64(one), "max/bcrypt")
				b.ReportMetric(float64(one)/1e6, "bcrypt-ms")
				b.ReportMetric(float64(f.busy.Load())/float64(f.requests.Load()), "flood-busy-share")
			})
		}
	}
}
