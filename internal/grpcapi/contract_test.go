package grpcapi_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"testing"

	"github.com/bufbuild/protocompile"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/placebrain/auth/proto/authpb"
)

// contractCopy is the platform's contract as committed here.
const contractCopy = "../../proto/contract/auth.proto"

// The committed copy is the platform contract, byte for byte, when the
// shared contract is there to compare with.
func TestContractCopyIsThePlatformContract(t *testing.T) {
	shared, err := os.ReadFile("../../../shared/contracts/auth.proto")
	if errors.Is(err, fs.ErrNotExist) {
		t.Skip("../shared/contracts/auth.proto is not beside the project")
	}
	if err != nil {
		t.Fatal(err)
	}
	ours, err := os.ReadFile(contractCopy)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(shared, ours) {
		t.Errorf("proto/contract/auth.proto differs from ../shared/contracts/auth.proto")
	}
}

// Every service, method, message and field of the platform contract is in
// the project's proto unchanged: the same names, numbers, types and
// cardinality (new ones may be added). Run by make check.
func TestContractUnchanged(t *testing.T) {
	files, err := (&protocompile.Compiler{Resolver: &protocompile.SourceResolver{}}).Compile(context.Background(), contractCopy)
	if err != nil {
		t.Fatalf("compile the contract: %v", err)
	}
	contract := files[0]
	ours := authpb.File_auth_proto
	if contract.Package() != ours.Package() {
		t.Fatalf("package %q, contract %q", ours.Package(), contract.Package())
	}
	for i := range contract.Services().Len() {
		cs := contract.Services().Get(i)
		os := ours.Services().ByName(cs.Name())
		if os == nil {
			t.Errorf("service %s is missing", cs.FullName())
			continue
		}
		for j := range cs.Methods().Len() {
			cm := cs.Methods().Get(j)
			om := os.Methods().ByName(cm.Name())
			switch {
			case om == nil:
				t.Errorf("method %s is missing", cm.FullName())
			case om.Input().FullName() != cm.Input().FullName() || om.Output().FullName() != cm.Output().FullName():
				t.Errorf("method %s: %s -> %s, contract %s -> %s", cm.FullName(), om.Input().FullName(), om.Output().FullName(), cm.Input().FullName(), cm.Output().FullName())
			case om.IsStreamingClient() != cm.IsStreamingClient() || om.IsStreamingServer() != cm.IsStreamingServer():
				t.Errorf("method %s: streaming differs from the contract", cm.FullName())
			}
		}
	}
	for i := range contract.Messages().Len() {
		compareMessage(t, contract.Messages().Get(i), ours.Messages().ByName(contract.Messages().Get(i).Name()))
	}
}

func compareMessage(t *testing.T, cm, om protoreflect.MessageDescriptor) {
	t.Helper()
	if om == nil {
		t.Errorf("message %s is missing", cm.FullName())
		return
	}
	for i := range cm.Fields().Len() {
		cf := cm.Fields().Get(i)
		of := om.Fields().ByNumber(cf.Number())
		switch {
		case of == nil:
			t.Errorf("field %s = %d is missing", cf.FullName(), cf.Number())
		case of.Name() != cf.Name():
			t.Errorf("field %d of %s is named %s, contract %s", cf.Number(), cm.FullName(), of.Name(), cf.Name())
		case of.Kind() != cf.Kind() || of.Cardinality() != cf.Cardinality() || of.HasPresence() != cf.HasPresence():
			t.Errorf("field %s: %v %v, contract %v %v", cf.FullName(), of.Cardinality(), of.Kind(), cf.Cardinality(), cf.Kind())
		case cf.Message() != nil && of.Message().FullName() != cf.Message().FullName(),
			cf.Enum() != nil && of.Enum().FullName() != cf.Enum().FullName():
			t.Errorf("field %s has another type than the contract's", cf.FullName())
		}
	}
	for i := range cm.Messages().Len() {
		compareMessage(t, cm.Messages().Get(i), om.Messages().ByName(cm.Messages().Get(i).Name()))
	}
}
