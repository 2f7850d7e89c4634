package main

import (
	"bytes"
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
type commitCut struct{}

// commitArmed is how many more COMMITs the toxic cuts; commitCuts counts
// those it cut.
var commitArmed, commitCuts atomic.Int64

func init() { toxics.Register("commit_cut", new(commitCut)) }

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

func (commitCut) Pipe(stub *toxics.ToxicStub) {
	for {
		select {
		case <-stub.Interrupt:
			return
		case c := <-stub.Input:
			if c == nil {
				stub.Close()
				return
			}
			if isCommit(c.Data) && commitArmed.Add(-1) >= 0 {
				commitCuts.Add(1)
				stub.Close()
				return
			}
			stub.Output <- c
		}
	}
}
