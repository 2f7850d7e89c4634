package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"sort"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// slowReader is one HTTP/2 connection (golang.org/x/net/http2's framer)
// that opens reflection streams asking for the largest answers and never
// reads a byte of what the server sends: it grants the server a large
// flow-control window and then leaves the socket alone, as a stuck or
// hostile client would.
type slowReader struct{ conn net.Conn }

// reflectionRequests is what each stream asks: the file of
// auth.AuthService and the largest files of the protobuf registry (this
// process links most of what authd does; a file authd lacks answers a
// small error), each an answer of its own. The server sends a file once
// per stream, so a stream's answers are as large as they get at once.
func reflectionRequests(n int) ([]byte, error) {
	type file struct {
		name string
		size int
	}
	var files []file
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		b, err := proto.Marshal(protodesc.ToFileDescriptorProto(fd))
		if err == nil {
			files = append(files, file{fd.Path(), len(b)})
		}
		return true
	})
	sort.Slice(files, func(i, j int) bool { return files[i].size > files[j].size })
	reqs := []*rpb.ServerReflectionRequest{{MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "auth.AuthService"}}}
	for _, f := range files[:min(n, len(files))] {
		reqs = append(reqs, &rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_FileByFilename{FileByFilename: f.name}})
	}
	var buf bytes.Buffer
	for _, r := range reqs {
		b, err := proto.Marshal(r)
		if err != nil {
			return nil, err
		}
		// gRPC length-prefixed message: not compressed, 4-byte length.
		buf.WriteByte(0)
		binary.Write(&buf, binary.BigEndian, uint32(len(b)))
		buf.Write(b)
	}
	return buf.Bytes(), nil
}

// openSlowReader connects to addr and opens streams reflection streams,
// each sending body (without ending the stream).
func openSlowReader(addr string, streams int, body []byte) (*slowReader, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
		c.Close()
		return nil, err
	}
	fr := http2.NewFramer(c, nil)
	if err := fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 30}); err != nil {
		c.Close()
		return nil, err
	}
	if err := fr.WriteWindowUpdate(0, 1<<30); err != nil {
		c.Close()
		return nil, err
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"},
		{":path", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"}, {":authority", addr},
		{"content-type", "application/grpc"}, {"te", "trailers"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	for i := range streams {
		id := uint32(2*i + 1)
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndHeaders: true}); err != nil {
			c.Close()
			return nil, fmt.Errorf("stream %d: %w", i, err)
		}
		if err := fr.WriteData(id, false, body); err != nil {
			c.Close()
			return nil, fmt.Errorf("stream %d: %w", i, err)
		}
	}
	return &slowReader{conn: c}, nil
}

func (s *slowReader) close() { s.conn.Close() }
