package store_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/placebrain/auth/internal/store"
)

func TestNormalizeURL(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"postgres", "postgres://u:p@h:5432/db", "postgres://u:p@h:5432/db"},
		{"postgresql", "postgresql://u:p@h:5432/db", "postgres://u:p@h:5432/db"},
		{"asyncpg", "postgresql+asyncpg://u:p@h:5432/db", "postgres://u:p@h:5432/db"},
		{"psycopg", "postgresql+psycopg://u:p@h:5432/db", "postgres://u:p@h:5432/db"},
		{"psycopg2", "postgresql+psycopg2://u:p@h:5432/db", "postgres://u:p@h:5432/db"},
		{"postgres+asyncpg", "postgres+asyncpg://u:p@h/db", "postgres://u:p@h/db"},
		{"asyncpg ssl=require", "postgresql+asyncpg://u:p@h:5432/db?ssl=require", "postgres://u:p@h:5432/db?sslmode=require"},
		{"asyncpg ssl=true", "postgresql+asyncpg://u:p@h:5432/db?ssl=true", "postgres://u:p@h:5432/db?sslmode=require"},
		{"asyncpg ssl=false", "postgresql+asyncpg://u:p@h:5432/db?ssl=false", "postgres://u:p@h:5432/db?sslmode=disable"},
		{"asyncpg ssl=DISABLE", "postgresql+asyncpg://u:p@h:5432/db?ssl=DISABLE", "postgres://u:p@h:5432/db?sslmode=disable"},
		{"asyncpg ssl=verify-full passes through", "postgresql+asyncpg://u:p@h/db?ssl=verify-full", "postgres://u:p@h/db?sslmode=verify-full"},
		{"sslmode wins over ssl", "postgresql://u:p@h/db?ssl=require&sslmode=disable", "postgres://u:p@h/db?ssl=require&sslmode=disable"},
		{"sslmode kept", "postgres://u:p@h/db?sslmode=verify-full", "postgres://u:p@h/db?sslmode=verify-full"},
		{"other params kept", "postgresql+asyncpg://u:p@h/db?ssl=require&application_name=auth", "postgres://u:p@h/db?application_name=auth&sslmode=require"},
		{"escaped password kept", "postgresql+asyncpg://u:p%40ss%2Fw@h/db", "postgres://u:p%40ss%2Fw@h/db"},
		{"no credentials", "postgresql://h/db", "postgres://h/db"},
		{"search_path kept", "postgres://h/db?search_path=auth", "postgres://h/db?search_path=auth"},
		{"options kept, no search_path added", "postgres://h/db?options=-csearch_path%3Dauth", "postgres://h/db?options=-csearch_path%3Dauth&search_path="},
	}
	// canon parses a URL into comparable parts; the service binds
	// connections to the public schema unless told otherwise.
	canon := func(raw string, addSearchPath bool) [2]any {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		if addSearchPath && !q.Has("search_path") {
			q.Set("search_path", "public")
		}
		if q.Get("search_path") == "" {
			q.Del("search_path")
		}
		u.RawQuery = ""
		return [2]any{u.String(), map[string][]string(q)}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := store.NormalizeURL(tt.in)
			if err != nil {
				t.Fatalf("NormalizeURL(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(canon(tt.want, true), canon(got, false)); diff != "" {
				t.Errorf("NormalizeURL(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestNormalizeURLErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"mysql", "mysql://u:secretpw@h:3306/db"},
		{"unknown driver", "postgresql+foo://u:secretpw@h:5432/db"},
		{"sqlite", "sqlite:///tmp/db"},
		{"no scheme", "u:secretpw@h/db"},
		{"empty", ""},
		{"not a URL", "postgres://u:secretpw@h:port/db"},
		{"control char", "postgres://u:secretpw@h/db\x7f"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := store.NormalizeURL(tt.in)
			if err == nil {
				t.Fatalf("NormalizeURL(%q) = %q, want an error", tt.in, got)
			}
			if got != "" {
				t.Errorf("NormalizeURL returned %q with an error", got)
			}
			if !strings.Contains(err.Error(), "DATABASE__URL") {
				t.Errorf("error %q does not mention DATABASE__URL", err)
			}
			if strings.Contains(err.Error(), "secretpw") {
				t.Errorf("error %q reveals the password", err)
			}
		})
	}
}
