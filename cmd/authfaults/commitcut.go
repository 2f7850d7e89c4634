package main

import (
	"bytes"
	"fmt"
	"sync/atomic"

	"github.com/Shopify/toxiproxy/v2/toxics"
)

// commitCut is a toxiproxy toxic that cuts one connection at a
// transaction's COMMIT while armed. On the upstream stream (client to
// PostgreSQL) it drops the chunk holding the COMMIT query and closes the
// link: the server never sees the COMMIT and rolls back. On the
// downstream stream it drops the chunk holding the server's "COMMIT"
// CommandComplete and closes the link: the transaction is committed but
// its client never learns it. Either way authd cannot know the outcome.
// Side ("upstream" or "downstream", its attribute) names the stream it is
// added to and which of the counters arms it.
type commitCut struct {
	Side string `json:"side"`
}

// armUpstream and armDownstream are how many more COMMITs the toxics on
// each stream cut (arming is a counter rather than an update of the
// toxic's toxicity, which toxiproxy reads without a lock); commitCuts
// counts those cut.
var armUpstream, armDownstream, commitCuts atomic.Int64

// armCommitCut makes the toxic on stream cut the next COMMIT, and the
// other pass them.
func armCommitCut(stream string) {
	armUpstream.Store(0)
	armDownstream.Store(0)
	switch stream {
	case "upstream":
		armUpstream.Store(1)
	case "downstream":
		armDownstream.Store(1)
	}
}

func init() { toxics.Register("commit_cut", new(commitCut)) }

// commitCutToxic is the JSON that adds the toxic to a proxy's stream.
func commitCutToxic(stream string) string {
	return fmt.Sprintf(`{"name":"commit_cut_%s","type":"commit_cut","stream":%q,"attributes":{"side":%q}}`, stream, stream, stream)
}

// PostgreSQL frontend/backend protocol 3.0 messages: a simple Query 'Q'
// whose text is COMMIT (pgx's stdlib sends "commit"), and a
// CommandComplete 'C' tagged COMMIT (length 4 + len("COMMIT\x00")).
var (
	commitQuery    = []byte("commit\x00")
	commitComplete = []byte("C\x00\x00\x00\x0bCOMMIT\x00")
)

// isCommit reports whether a chunk carries a COMMIT query (upstream) or
// its completion (downstream).
func isCommit(chunk []byte) bool {
	if bytes.Contains(chunk, commitComplete) {
		return true
	}
	low := bytes.ToLower(chunk)
	for off := 0; ; {
		i := bytes.Index(low[off:], commitQuery)
		if i < 0 {
			return false
		}
		i += off
		if i >= 5 && chunk[i-5] == 'Q' {
			return true
		}
		off = i + 1
	}
}

func (t *commitCut) Pipe(stub *toxics.ToxicStub) {
	armed := &armDownstream
	if t.Side == "upstream" {
		armed = &armUpstream
	}
	for {
		select {
		case <-stub.Interrupt:
			return
		case c := <-stub.Input:
			if c == nil {
				stub.Close()
				return
			}
			if isCommit(c.Data) && armed.Add(-1) >= 0 {
				commitCuts.Add(1)
				stub.Close()
				return
			}
			stub.Output <- c
		}
	}
}
