package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

var digestRe = regexp.MustCompile(`digest: (sha256:[0-9a-f]{64})`)

// push tags the job's image as ref and pushes it, returning the pushed
// manifest digest ("" if the engine did not report one). Tag, push and
// untag happen under a per-reference lock so that two jobs of this
// executor pushing the same name never push each other's image.
func (b *buildRun) push(ctx context.Context, locks *keyedLock, ref reference.NamedTagged) (string, error) {
	auth, err := registryAuth(ref)
	if err != nil {
		return "", err
	}
	unlock, err := locks.lock(ctx, ref.String())
	if err != nil {
		return "", err
	}
	defer unlock()
	if err := b.docker.ImageTag(ctx, b.jobTag, ref.String()); err != nil {
		return "", fmt.Errorf("tagging %s: %w", ref, err)
	}
	defer func() {
		// Untag only: the image itself goes in cleanup (by its job tag).
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		_, _ = b.docker.ImageRemove(cctx, ref.String(), image.RemoveOptions{})
	}()

	b.out.printf("push: pushing %s\n", ref)
	rc, err := b.docker.ImagePush(ctx, ref.String(), image.PushOptions{RegistryAuth: auth})
	if err != nil {
		return "", fmt.Errorf("engine refused the push of %s: %w", ref, err)
	}
	defer rc.Close()
	digest, err := b.readPushStream(rc)
	if err != nil {
		return "", err
	}
	b.out.printf("push: pushed %s digest %s\n", ref, digest)
	return digest, nil
}

// readPushStream writes the push stream's status lines (not its
// per-chunk progress) and returns the digest from the aux message.
func (b *buildRun) readPushStream(r io.Reader) (string, error) {
	dec := json.NewDecoder(r)
	digest := ""
	for {
		var m streamMsg
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return digest, nil
			}
			return "", fmt.Errorf("reading the engine's output: %w", err)
		}
		if e := m.err(); e != "" {
			b.out.printf("push: error: %s\n", strings.TrimSpace(e))
			return "", errors.New(strings.TrimSpace(e))
		}
		if len(m.Aux) > 0 {
			var aux struct{ Digest string }
			if json.Unmarshal(m.Aux, &aux) == nil && aux.Digest != "" {
				digest = aux.Digest
			}
		}
		if m.Status == "" || (len(m.Progress) > 0 && string(m.Progress) != "{}") {
			continue
		}
		if d := digestRe.FindStringSubmatch(m.Status); d != nil && digest == "" {
			digest = d[1]
		}
		b.out.write(strings.TrimSpace("push: "+m.ID+" "+m.Status) + "\n")
	}
}

// registryAuth is the X-Registry-Auth value for ref's registry, from the
// docker config and credential helpers (go-containerregistry's default
// keychain). No credentials encode as an anonymous "{}".
func registryAuth(ref reference.Named) (string, error) {
	reg, err := name.NewRegistry(reference.Domain(ref))
	if err != nil {
		return "", fmt.Errorf("registry of %s: %w", ref, err)
	}
	a, err := authn.DefaultKeychain.Resolve(reg)
	if err != nil {
		return "", fmt.Errorf("credentials for %s: %w", reg.RegistryStr(), err)
	}
	c, err := a.Authorization()
	if err != nil {
		return "", fmt.Errorf("credentials for %s: %w", reg.RegistryStr(), err)
	}
	ac := registry.AuthConfig{
		Username:      c.Username,
		Password:      c.Password,
		Auth:          c.Auth,
		IdentityToken: c.IdentityToken,
		RegistryToken: c.RegistryToken,
	}
	if ac != (registry.AuthConfig{}) {
		ac.ServerAddress = reg.RegistryStr()
	}
	return registry.EncodeAuthConfig(ac)
}

// keyedLock is a set of mutexes by key that waits with a context. Entries
// live only while someone holds or waits for them.
type keyedLock struct {
	mu sync.Mutex // guards m
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	sem  chan struct{}
	refs int
}

func (k *keyedLock) lock(ctx context.Context, key string) (unlock func(), err error) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedEntry{}
	}
	e := k.m[key]
	if e == nil {
		e = &keyedEntry{sem: make(chan struct{}, 1)}
		k.m[key] = e
	}
	e.refs++
	k.mu.Unlock()
	release := func() {
		k.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
	select {
	case e.sem <- struct{}{}:
		return func() { <-e.sem; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}
