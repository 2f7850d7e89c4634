package grpcapi

import (
	"log/slog"
	"runtime"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// malformedField is the field number of the mark Codec leaves in the
// unknown fields of a request it could not decode: the largest field
// number protobuf allows, which no message of ours uses.
const malformedField = protowire.MaxValidNumber

var malformedMark = protowire.AppendBytes(protowire.AppendTag(nil, malformedField, protowire.BytesType), []byte("malformed"))

// Codec is the default protobuf codec except for requests it cannot decode
// (invalid UTF-8 in a string field, malformed wire data). grpc-go answers
// those INTERNAL before any handler or interceptor runs and offers no hook
// to change the code; Codec instead resets the message, marks it, and
// reports success, and ServiceDesc answers the mark INVALID_ARGUMENT.
type Codec struct{ base encoding.CodecV2 }

// NewCodec wraps grpc-go's registered "proto" codec.
func NewCodec() Codec { return Codec{base: encoding.GetCodecV2("proto")} }

// Name implements encoding.CodecV2.
func (c Codec) Name() string { return c.base.Name() }

// Marshal implements encoding.CodecV2.
func (c Codec) Marshal(v any) (mem.BufferSlice, error) { return c.base.Marshal(v) }

// Unmarshal implements encoding.CodecV2.
func (c Codec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.base.Unmarshal(data, v)
	m, ok := v.(proto.Message)
	if err == nil || !ok {
		return err
	}
	proto.Reset(m)
	m.ProtoReflect().SetUnknown(malformedMark)
	return nil
}

// isMalformed reports whether Codec marked v as undecodable.
func isMalformed(v any) bool {
	m, ok := v.(proto.Message)
	if !ok {
		return false
	}
	raw := m.ProtoReflect().GetUnknown()
	for len(raw) > 0 {
		num, typ, n := protowire.ConsumeTag(raw)
		if n < 0 {
			return false
		}
		if num == malformedField && typ == protowire.BytesType {
			return true
		}
		raw = raw[n:]
		if n = protowire.ConsumeFieldValue(num, typ, raw); n < 0 {
			return false
		}
		raw = raw[n:]
	}
	return false
}

// MaxRequestBytes bounds a request message: the largest legitimate request
// (a Register with a 64-character username, a 254-byte address and a
// 72-byte password, or a JWT) is far below it.
const MaxRequestBytes = 64 << 10

// ServerOptions are the options AuthService needs: Codec, the interceptors
// (with callers' authentication of unary and stream calls, see Callers)
// and the request size bound, and a pool of stream workers.
//
// The workers (16 per GOMAXPROCS) serve requests on goroutines whose stacks
// have already grown to what a request needs; without them every request
// starts a goroutine that grows its stack by copying. When all workers are
// busy grpc-go starts a goroutine as usual, so the pool never queues.
//
// The HTTP/2 flow-control windows are static (128 KiB per stream, twice
// the largest request; 1 MiB per connection). With grpc-go's default
// dynamic windows the server sends a BDP-estimation ping, and reads its
// acknowledgement, for nearly every request, since requests are small and
// far apart. The README's Performance section gives what each saves.
func ServerOptions(log *slog.Logger, callers *Callers) []grpc.ServerOption {
	opts := []grpc.ServerOption{
		grpc.ForceServerCodecV2(NewCodec()),
		grpc.MaxRecvMsgSize(MaxRequestBytes),
		grpc.ChainUnaryInterceptor(Interceptors(log, callers)...),
		grpc.NumStreamWorkers(uint32(16 * runtime.GOMAXPROCS(0))),
		grpc.StaticStreamWindowSize(2 * MaxRequestBytes),
		grpc.StaticConnWindowSize(1 << 20),
	}
	if callers.Enabled() {
		opts = append(opts, grpc.ChainStreamInterceptor(callers.Stream))
	}
	return opts
}
