package e2e

import (
	"net"
	"sync"
	"testing"
)

// blackholeProxy forwards TCP between a worker and a hub until Partition,
// after which it silently drops every byte in both directions while keeping
// the sockets open: no FIN, no RST — what a dead network looks like.
type blackholeProxy struct {
	Addr   string
	target string
	ln     net.Listener

	mu          sync.Mutex // guards the following
	partitioned bool
	conns       []net.Conn
	wg          sync.WaitGroup
}

func startProxy(t *testing.T, target string) *blackholeProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy listen: %v", err)
	}
	p := &blackholeProxy{Addr: ln.Addr().String(), target: target, ln: ln}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

func (p *blackholeProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, u)
		go p.pipe(u, c)
	}
}

func (p *blackholeProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			drop := p.partitioned
			p.mu.Unlock()
			if !drop {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil {
			return // EOF or closed: the other direction ends on its own
		}
	}
}

// Partition starts dropping all traffic; new connections are refused by
// closing the listener so a reconnecting worker cannot get through either.
func (p *blackholeProxy) Partition() {
	p.mu.Lock()
	p.partitioned = true
	p.mu.Unlock()
	p.ln.Close()
}

// Close tears everything down.
func (p *blackholeProxy) Close() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
