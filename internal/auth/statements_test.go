package auth

import (
	"strconv"
	"strings"
	"testing"

	"entgo.io/ent/dialect"

	"github.com/placebrain/auth/internal/ceiling"
)

// The load tool's ceiling (c) and BenchmarkRefresh's baseline issue the
// same statements as the rotation, apart from quoting and the AS of table
// aliases, so the ratio measures the service and not different SQL.
func TestCeilingStatements(t *testing.T) {
	plain := strings.NewReplacer(`"`, "", "`", "", " AS ", " ")
	for _, d := range []string{dialect.Postgres, dialect.SQLite} {
		s := newStatements(d)
		ours := []string{s.lockToken, s.markUsed, s.insertAudit, s.insertToken}
		theirs := ceiling.Statements(d)
		for i := range ours {
			if got, want := plain.Replace(theirs[i]), plain.Replace(ours[i]); got != want {
				t.Errorf("%s statement %d:\nceiling  %s\nrotation %s", d, i, got, want)
			}
		}
	}
}

// The rotation's lock statement locks the token and the family rows on
// PostgreSQL and carries no lock clause on SQLite (which has none; its
// transactions begin IMMEDIATE); every statement binds parameters.
func TestStatements(t *testing.T) {
	pg, lite := newStatements(dialect.Postgres), newStatements(dialect.SQLite)
	if !strings.HasSuffix(pg.lockToken, `FOR UPDATE OF "t", "f"`) {
		t.Errorf("PostgreSQL lockToken = %q, want it to lock t and f", pg.lockToken)
	}
	if strings.Contains(lite.lockToken, "FOR ") {
		t.Errorf("SQLite lockToken = %q, want no lock clause", lite.lockToken)
	}
	for _, c := range []struct {
		name     string
		pg, lite string
		params   int
	}{
		{"lockToken", pg.lockToken, lite.lockToken, 1},
		{"markUsed", pg.markUsed, lite.markUsed, 2},
		{"insertToken", pg.insertToken, lite.insertToken, 7},
		{"insertAudit", pg.insertAudit, lite.insertAudit, 5},
	} {
		if n := strings.Count(c.lite, "?"); n != c.params {
			t.Errorf("SQLite %s has %d parameters, want %d: %s", c.name, n, c.params, c.lite)
		}
		for i := 1; i <= c.params; i++ {
			if !strings.Contains(c.pg, "$"+strconv.Itoa(i)) {
				t.Errorf("PostgreSQL %s lacks $%d: %s", c.name, i, c.pg)
			}
		}
		if strings.Contains(c.pg, "NULL") || strings.Contains(c.lite, "NULL") {
			t.Errorf("%s has a NULL literal where a parameter belongs", c.name)
		}
	}
}
