package grpcapi

import (
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/placebrain/auth/internal/otp"
	"github.com/placebrain/auth/internal/password"
	"github.com/placebrain/auth/proto/authpb"
)

// FuzzRequestDecoding feeds arbitrary bytes to the request codec: it never
// fails (undecodable input is marked instead) and never panics, a marked
// message carries no field values, and what decodes cleanly holds only
// valid UTF-8 that the field validators accept or refuse without panicking.
func FuzzRequestDecoding(f *testing.F) {
	good, _ := proto.Marshal(&authpb.RegisterRequest{Username: "a", Email: "a@b.co", Password: "password1"})
	for _, b := range [][]byte{good, {}, {0x0a, 0x02, 0xff, 0xfe}, {0xff, 0xff, 0xff}, {0x12, 0x40, 'a'}} {
		f.Add(b)
	}
	c := NewCodec()
	f.Fuzz(func(t *testing.T, b []byte) {
		var req authpb.RegisterRequest
		if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &req); err != nil {
			t.Fatalf("Unmarshal returned %v", err)
		}
		if isMalformed(&req) {
			if req.GetUsername() != "" || req.GetEmail() != "" || req.GetPassword() != "" {
				t.Fatalf("marked message kept values")
			}
			return
		}
		_ = password.Validate(req.GetPassword())
		_ = otp.CheckFormat(req.GetPassword())
	})
}
