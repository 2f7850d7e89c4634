package otp_test

import (
	"testing"

	"github.com/google/uuid"

	"github.com/placebrain/auth/internal/otp"
)

func BenchmarkMAC(b *testing.B) {
	k, err := otp.NewKeyer(nil, []byte("bench-secret-0123456789-abcdefghijklmn"))
	if err != nil {
		b.Fatal(err)
	}
	id := uuid.New()
	b.ReportAllocs()
	for b.Loop() {
		k.MAC(id, "123456")
	}
}

func BenchmarkNewCode(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := otp.NewCode(); err != nil {
			b.Fatal(err)
		}
	}
}
