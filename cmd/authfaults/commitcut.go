package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync/atomic"

	"github.com/Shopify/toxiproxy/v2/toxics"
)

// commitCut is a toxiproxy toxic that cuts one connection at the point
// where a transaction commits, while armed. A commit point is a COMMIT,
// or the Sync that ends an implicit transaction which wrote (one
// statement outside BEGIN ... COMMIT, such as the fresh rotation's single
// statement on PostgreSQL). On the upstream stream (client to PostgreSQL)
// it drops the chunk holding the commit point and closes the link: the
// server never commits. On the downstream stream it drops the chunk
// holding the answer to it (a CommandComplete and the ReadyForQuery that
// says the connection is idle again) and closes the link: the transaction
// is committed but its client never learns it. Either way authd cannot
// know the outcome. Side ("upstream" or "downstream", its attribute) names
// the stream it is added to and which counter arms it.
type commitCut struct {
	Side string `json:"side"`
}

// armUpstream and armDownstream are how many more commits the toxics on
// each stream cut (arming is a counter rather than an update of the
// toxic's toxicity, which toxiproxy reads without a lock); commitCuts
// counts those cut.
var armUpstream, armDownstream, commitCuts atomic.Int64

// armCommitCut makes the toxic on stream cut the next commit, and the
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

// pgConn is what the toxic follows of one connection's frontend messages
// (PostgreSQL protocol 3.0): prepared statements that write or control
// the transaction, whether an explicit transaction is open, and whether
// a write was executed since the last Sync.
type pgConn struct {
	stmts   map[string]string // statement name -> kind (see kindOf)
	portal  string            // the statement the last Bind bound
	inTx    bool
	written bool
}

// NewState implements toxics.StatefulToxic: one state per connection.
func (t *commitCut) NewState() any { return &pgConn{stmts: map[string]string{}} }

// kindOf classifies a statement's text: "begin", "commit", "rollback",
// "write" (it inserts, updates or deletes) or "".
func kindOf(sql []byte) string {
	s := bytes.ToLower(bytes.TrimSpace(sql))
	switch {
	case bytes.HasPrefix(s, []byte("begin")), bytes.HasPrefix(s, []byte("start transaction")):
		return "begin"
	case bytes.HasPrefix(s, []byte("commit")), bytes.HasPrefix(s, []byte("end")):
		return "commit"
	case bytes.HasPrefix(s, []byte("rollback")), bytes.HasPrefix(s, []byte("abort")):
		return "rollback"
	case bytes.Contains(s, []byte("insert ")), bytes.Contains(s, []byte("update ")), bytes.Contains(s, []byte("delete ")):
		return "write"
	}
	return ""
}

// messages calls fn with each whole protocol message of a chunk (type,
// body) until fn returns true or the chunk does not parse (a startup
// message, or one split across chunks); it reports whether fn did.
func messages(chunk []byte, fn func(typ byte, body []byte) bool) bool {
	for len(chunk) >= 5 {
		n := int(binary.BigEndian.Uint32(chunk[1:5]))
		if n < 4 || 1+n > len(chunk) {
			return false
		}
		if fn(chunk[0], chunk[5:1+n]) {
			return true
		}
		chunk = chunk[1+n:]
	}
	return false
}

// cstring returns the NUL-terminated string at the start of b and the rest.
func cstring(b []byte) ([]byte, []byte) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return b, nil
	}
	return b[:i], b[i+1:]
}

// commitsUpstream follows a chunk of frontend messages and reports
// whether it holds a commit point.
func (c *pgConn) commitsUpstream(chunk []byte) bool {
	return messages(chunk, func(typ byte, body []byte) bool {
		switch typ {
		case 'Q': // simple query
			q, _ := cstring(body)
			switch kindOf(q) {
			case "begin":
				c.inTx = true
			case "commit":
				c.inTx = false
				return true
			case "rollback":
				c.inTx = false
			case "write":
				return !c.inTx
			}
		case 'P': // Parse: name, query
			name, rest := cstring(body)
			q, _ := cstring(rest)
			c.stmts[string(name)] = kindOf(q)
		case 'B': // Bind: portal, statement
			_, rest := cstring(body)
			stmt, _ := cstring(rest)
			c.portal = string(stmt)
		case 'E': // Execute
			switch c.stmts[c.portal] {
			case "begin":
				c.inTx = true
			case "commit":
				c.inTx = false
				return true
			case "rollback":
				c.inTx = false
			case "write":
				c.written = true
			}
		case 'S': // Sync: ends an implicit transaction
			w := c.written
			c.written = false
			return w && !c.inTx
		}
		return false
	})
}

// commitsDownstream reports whether a chunk of backend messages answers a
// commit point: a CommandComplete followed by a ReadyForQuery saying the
// connection is idle (no transaction open any more). A read outside a
// transaction answers so too; the suite arms the toxic only around a
// call whose first statement commits.
func commitsDownstream(chunk []byte) bool {
	completed := false
	return messages(chunk, func(typ byte, body []byte) bool {
		switch typ {
		case 'C':
			completed = true
		case 'Z':
			return completed && len(body) == 1 && body[0] == 'I'
		}
		return false
	})
}

func (t *commitCut) Pipe(stub *toxics.ToxicStub) {
	armed := &armDownstream
	if t.Side == "upstream" {
		armed = &armUpstream
	}
	state, _ := stub.State.(*pgConn)
	if state == nil {
		state = t.NewState().(*pgConn)
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
			var commits bool
			if t.Side == "upstream" {
				commits = state.commitsUpstream(c.Data)
			} else {
				commits = commitsDownstream(c.Data)
			}
			if commits && armed.Add(-1) >= 0 {
				commitCuts.Add(1)
				stub.Close()
				return
			}
			stub.Output <- c
		}
	}
}
