// Package tcpproxy is a TCP proxy a test controls, to put between the
// service and its real PostgreSQL server: it forwards, refuses connections
// (and cuts the open ones), or blackholes them (accepts, holds, forwards
// nothing).
package tcpproxy

import (
	"net"
	"sync"
	"testing"
)

// Mode is what the proxy does with connections.
type Mode int

const (
	// Forward passes bytes both ways.
	Forward Mode = iota
	// Refuse cuts the open connections and closes new ones at once (the
	// client sees a reset or an EOF, as from a server that went away).
	Refuse
	// Blackhole keeps connections open and forwards nothing: no answer,
	// no reset.
	Blackhole
)

// Proxy forwards 127.0.0.1:port to a target address.
type Proxy struct {
	lis    net.Listener
	target string

	mu    sync.Mutex
	mode  Mode
	conns map[net.Conn]struct{}
	held  []net.Conn
}

// Start starts a proxy to target for t, closed when the test ends.
func Start(t testing.TB, target string) *Proxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{lis: lis, target: target, conns: map[net.Conn]struct{}{}}
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Addr is the proxy's address, host:port.
func (p *Proxy) Addr() string { return p.lis.Addr().String() }

// Set switches the proxy to m. Refuse and Blackhole cut or freeze the
// connections open now as well as later ones; Forward serves new
// connections again (blackholed ones stay frozen).
func (p *Proxy) Set(m Mode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = m
	if m == Refuse {
		for c := range p.conns {
			c.Close()
		}
		for _, c := range p.held {
			c.Close()
		}
		p.held = nil
	}
}

// Cut closes every open connection, leaving the mode as it is: a
// connection lost mid-use.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

func (p *Proxy) close() {
	p.lis.Close()
	p.Set(Refuse)
}

func (p *Proxy) accept() {
	for {
		c, err := p.lis.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		mode := p.mode
		switch mode {
		case Refuse:
			c.Close()
		case Blackhole:
			p.held = append(p.held, c)
		}
		p.mu.Unlock()
		if mode == Forward {
			go p.forward(c)
		}
	}
}

func (p *Proxy) forward(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[c], p.conns[up] = struct{}{}, struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.conns, c)
		delete(p.conns, up)
		p.mu.Unlock()
		c.Close()
		up.Close()
	}()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 && !p.frozen() {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
}

// frozen reports whether bytes are dropped (Blackhole).
func (p *Proxy) frozen() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode == Blackhole
}
