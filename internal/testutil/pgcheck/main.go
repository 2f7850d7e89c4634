// Command pgcheck exits 0 when the PostgreSQL server at TEST_DATABASE_URL
// answers, and 1 with the reason otherwise. `make test` uses it to decide
// whether the PostgreSQL suite runs.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/placebrain/auth/internal/testutil/pgtest"
)

func main() {
	if err := pgtest.Ping(context.Background()); err != nil {
		fmt.Fprintf(os.Stderr, "pgcheck: %s: %v\n", pgtest.AdminURL(), err)
		os.Exit(1)
	}
}
