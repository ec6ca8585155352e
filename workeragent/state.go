package workeragent

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"google.golang.org/protobuf/proto"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// The state directory's layout.
const (
	workerIDFile  = "worker-id"
	resultsDir    = "results"
	resultFileExt = ".result"
)

// stateStore persists the worker id and unacknowledged results. A zero dir
// makes it ephemeral. It does no locking: the Agent serialises every result
// write and remove (Agent.filesMu; see results.go for when they happen).
type stateStore struct {
	dir string
}

// newWorkerID returns a random RFC 4122 version 4 UUID.
func newWorkerID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate worker id: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], nil
}

// open creates the directories and returns the stable worker id, creating
// it on first use.
func (s stateStore) open() (string, error) {
	if s.dir == "" {
		return newWorkerID()
	}
	if err := os.MkdirAll(filepath.Join(s.dir, resultsDir), 0o700); err != nil {
		return "", fmt.Errorf("state dir: %w", err)
	}
	p := filepath.Join(s.dir, workerIDFile)
	b, err := os.ReadFile(p)
	switch {
	case err == nil:
		id := strings.TrimSpace(string(b))
		if id == "" || len(id) > 128 {
			return "", fmt.Errorf("state dir: %s: invalid worker id", p)
		}
		return id, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("state dir: %w", err)
	}
	id, err := newWorkerID()
	if err != nil {
		return "", err
	}
	if err := writeFileAtomic(p, []byte(id+"\n")); err != nil {
		return "", fmt.Errorf("state dir: %w", err)
	}
	return id, nil
}

func (s stateStore) resultPath(jobID string) string {
	sum := sha256.Sum256([]byte(jobID))
	return filepath.Join(s.dir, resultsDir, hex.EncodeToString(sum[:16])+resultFileExt)
}

// saveResult stores a result durably (no-op when ephemeral).
func (s stateStore) saveResult(r *blacktreev1.JobResult) error {
	if s.dir == "" {
		return nil
	}
	b, err := proto.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	if err := writeFileAtomic(s.resultPath(r.GetResponse().GetJobId()), b); err != nil {
		return fmt.Errorf("persist result: %w", err)
	}
	return nil
}

// removeResult forgets an acknowledged result.
func (s stateStore) removeResult(jobID string) error {
	if s.dir == "" {
		return nil
	}
	if err := os.Remove(s.resultPath(jobID)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove result: %w", err)
	}
	return nil
}

// loadResults reads every persisted result. Unreadable files are returned
// as errors alongside the good results, not fatal.
func (s stateStore) loadResults() ([]*blacktreev1.JobResult, []error) {
	if s.dir == "" {
		return nil, nil
	}
	dir := filepath.Join(s.dir, resultsDir)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, []error{fmt.Errorf("read results: %w", err)}
	}
	var out []*blacktreev1.JobResult
	var errs []error
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, resultFileExt) {
			if strings.HasPrefix(name, ".tmp-") {
				_ = os.Remove(filepath.Join(dir, name)) // a write cut short by a crash
			}
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			errs = append(errs, fmt.Errorf("read result %s: %w", name, err))
			continue
		}
		r := &blacktreev1.JobResult{}
		if err := proto.Unmarshal(b, r); err != nil || r.GetResponse().GetJobId() == "" {
			errs = append(errs, fmt.Errorf("result %s is corrupt, ignoring it", name))
			continue
		}
		out = append(out, r)
	}
	return out, errs
}

// writeFileAtomic writes b to path through a temporary file in the same
// directory and a rename, so a reader sees the old file or the whole new one.
//
// It does not fsync: a written result survives the agent being killed (the
// page cache keeps it), and that costs microseconds; surviving a power cut
// of the build machine would cost an fsync per job, which capped a noop
// fleet at a small fraction of the broker's throughput
// (docs/design/dispatch-throughput.md). Even the
// write itself is skipped when the hub acknowledges the result within
// Config.PersistResultsAfter. If the machine dies, or the agent is killed
// before an unacknowledged result was written, the hub reports the job lost
// after its grace period: a report, not a silent loss.
func writeFileAtomic(path string, b []byte) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(b); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
