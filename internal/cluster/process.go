package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Binaries are the built executables.
type Binaries struct {
	Hub, Worker, Ctl string
}

// Build compiles cmd/blacktree-hub, cmd/blacktree-worker and cmd/btctl from
// the module at root into dir. race adds -race.
func Build(ctx context.Context, root, dir string, race bool) (Binaries, error) {
	args := []string{"build", "-o", dir + string(os.PathSeparator)}
	if race {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/blacktree-hub", "./cmd/blacktree-worker")
	if _, err := os.Stat(filepath.Join(root, "cmd", "btctl")); err == nil {
		args = append(args, "./cmd/btctl")
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return Binaries{}, fmt.Errorf("go build: %w\n%s", err, out)
	}
	return Binaries{
		Hub:    filepath.Join(dir, "blacktree-hub"),
		Worker: filepath.Join(dir, "blacktree-worker"),
		Ctl:    filepath.Join(dir, "btctl"),
	}, nil
}

// ModuleRoot finds the directory holding go.mod, walking up from the
// working directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// Process is one started binary. Its combined output is kept in memory
// (for assertions such as "the token appears nowhere") and, with a tee,
// copied there too; or (StartToFile) the process writes it to a file
// itself.
type Process struct {
	Name string
	Args []string

	cmd     *exec.Cmd
	done    chan struct{}
	err     error  // set before done is closed
	outPath string // StartToFile's file, read by Output; else out

	mu  sync.Mutex // guards out
	out bytes.Buffer
}

type lockedWriter struct{ p *Process }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.out.Write(b)
}

// Start runs bin with args and extra environment entries. A nil tee keeps
// the output only in memory.
func Start(name, bin string, args, env []string, tee io.Writer) (*Process, error) {
	p := &Process{Name: name, Args: args, done: make(chan struct{})}
	var w io.Writer = lockedWriter{p}
	if tee != nil {
		w = io.MultiWriter(w, tee)
	}
	if err := p.start(bin, env, w); err != nil {
		return nil, err
	}
	return p, nil
}

// start runs the process with its output going to out.
func (p *Process) start(bin string, env []string, out io.Writer) error {
	p.cmd = exec.Command(bin, p.Args...)
	p.cmd.Env = append(cleanEnv(), env...)
	p.cmd.Stdout, p.cmd.Stderr = out, out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return nil
}

// StartToFile is Start with the process's output going straight to a new
// file at path, which the process writes itself: no goroutine of the
// caller copies it (a benchmark does not charge the logs' transport to
// its load generator). Output reads the file.
func StartToFile(name, bin string, args, env []string, path string) (*Process, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	defer f.Close() // the child holds its own descriptor
	p := &Process{Name: name, Args: args, done: make(chan struct{}), outPath: path}
	if err := p.start(bin, env, f); err != nil {
		return nil, err
	}
	return p, nil
}

// cleanEnv drops BLACKTREE_* variables of the caller so that only the
// flags a test passes configure the process.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "BLACKTREE_") {
			env = append(env, kv)
		}
	}
	return env
}

// Output returns everything the process printed so far.
func (p *Process) Output() string {
	if p.outPath != "" {
		b, err := os.ReadFile(p.outPath)
		if err != nil {
			return fmt.Sprintf("(output file unreadable: %v)", err)
		}
		return string(b)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitCode is the exit status once Done is closed (-1 when killed by a
// signal).
func (p *Process) ExitCode() int {
	<-p.done
	return p.cmd.ProcessState.ExitCode()
}

// Signal sends sig to the process.
func (p *Process) Signal(sig syscall.Signal) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	return p.cmd.Process.Signal(sig)
}

// Kill sends SIGKILL and waits for the exit.
func (p *Process) Kill() {
	_ = p.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM and waits up to timeout, then kills. It returns the
// exit error of a process that exited non-zero on SIGTERM.
func (p *Process) Stop(timeout time.Duration) error {
	_ = p.Signal(syscall.SIGTERM)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return p.err
	case <-t.C:
		p.Kill()
		return fmt.Errorf("%s did not stop within %s after SIGTERM; killed", p.Name, timeout)
	}
}

// WaitOutput waits until the process printed substr, it exits, or ctx ends.
func (p *Process) WaitOutput(ctx context.Context, substr string) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if strings.Contains(p.Output(), substr) {
			return nil
		}
		select {
		case <-p.done:
			if strings.Contains(p.Output(), substr) {
				return nil
			}
			return fmt.Errorf("%s exited (%v) before printing %q; output:\n%s", p.Name, p.err, substr, p.Output())
		case <-ctx.Done():
			return fmt.Errorf("%s did not print %q: %w; output:\n%s", p.Name, substr, ctx.Err(), p.Output())
		case <-tick.C:
		}
	}
}

// FreeAddr returns a 127.0.0.1 address with a port that was free a moment
// ago, for a process about to be started to listen on.
//
// The port is picked below the kernel's ephemeral range: a port from that
// range (what listening on port 0 returns) can be taken as the source port
// of any outgoing connection before the process binds it, and the tests
// open many (to RabbitMQ, to hubs). Below the range only another listener
// can take it, so a few random ports are tried there before falling back
// to port 0.
func FreeAddr() (string, error) {
	if lo := ephemeralLow(); lo > portFloor {
		for range 20 {
			port := portFloor + rand.IntN(lo-portFloor)
			if portFree(port) {
				return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
			}
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// ephemeralLow returns the lowest port of the kernel's ephemeral range
// (Linux's default 32768 when it cannot be read).
func ephemeralLow() int {
	lo := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		_, _ = fmt.Sscan(string(b), &lo)
	}
	return lo
}
