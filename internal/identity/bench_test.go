package identity_test

import (
	"testing"

	"github.com/placebrain/auth/internal/identity"
)

func BenchmarkNormalizeEmail(b *testing.B) {
	for _, in := range []string{"Alice.Smith+tag@Example.COM", "Ünïcödé.Ñame@Bücher.DE"} {
		b.Run(in, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := identity.NormalizeEmail(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkNormalizeUsername(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := identity.NormalizeUsername("  Alice   Smith "); err != nil {
			b.Fatal(err)
		}
	}
}
