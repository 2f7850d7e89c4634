// Package auth is the root of PlaceBrain's authentication service (the
// server is cmd/authd, its parts are under internal/). It embeds atlas.hcl,
// the Atlas project file whose lint block is the lint policy of both the
// Atlas CLI and `authd migrate lint|plan`, so a built authd applies the
// same policy as the repository it was built from.
package auth

import _ "embed"

// AtlasHCL is the content of ./atlas.hcl.
//
//go:embed atlas.hcl
var AtlasHCL []byte
