package cluster

import (
	"net"
	"sync"
)

// Proxy forwards TCP on loopback between workers and a hub, for fault
// tests and benchmarks. Partition makes it keep reading from both sides and
// drop every byte, holding the sockets open (no FIN, no RST): a silent
// network partition as the endpoints see it, which only keepalive and
// heartbeats can detect. Reset instead breaks every carried connection at
// once (the peers see the stream end) and keeps accepting new ones.
type Proxy struct {
	Addr   string
	target string
	ln     net.Listener
	wg     sync.WaitGroup

	mu          sync.Mutex // guards the following
	partitioned bool
	conns       []net.Conn
}

// StartProxy listens on a free loopback port and forwards to target.
func StartProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{Addr: ln.Addr().String(), target: target, ln: ln}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.partitioned {
			// New connections hang too: accepted, never forwarded.
			p.conns = append(p.conns, c)
			p.wg.Add(1)
			go p.pipe(nil, c)
			p.mu.Unlock()
			continue
		}
		p.mu.Unlock()
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

func (p *Proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	defer func() {
		// Pass a close on to the other side, except in a partition, where
		// nothing may reach the other side.
		p.mu.Lock()
		silent := p.partitioned
		p.mu.Unlock()
		if dst != nil && !silent {
			_ = dst.Close()
		}
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && dst != nil {
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
			return
		}
	}
}

// Partition starts dropping all traffic, silently.
func (p *Proxy) Partition() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.partitioned = true
}

// Heal ends a partition: the connections carried through it are closed
// (their streams lost bytes, so they cannot resume) and new ones are
// forwarded again.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closeAllLocked()
	p.partitioned = false
}

// Reset closes every connection the proxy carries.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closeAllLocked()
}

func (p *Proxy) closeAllLocked() {
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

// Close closes the listener and every socket and waits for the pipes.
func (p *Proxy) Close() {
	_ = p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
