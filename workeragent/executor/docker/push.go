package docker

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// push sends the job's image, which the engine holds only under the
// worker-private job tag, straight to ref's registry and returns the
// pushed manifest digest. The engine never holds ref itself: its push API
// can only push a local name to the registry that name points at, so the
// image is read out of the engine (`docker save` into the workspace) and
// written to the registry by go-containerregistry, with credentials from
// the docker config and credential helpers. Blobs the registry already
// has are not uploaded again, but every push reads the whole image out of
// the engine (measured cost in docs/SECURITY.md, worker-private image
// names).
func (b *buildRun) push(ctx context.Context, ref reference.NamedTagged, workspace string) (string, error) {
	dst, err := name.NewTag(ref.String())
	if err != nil {
		return "", fmt.Errorf("push target %s: %w", ref, err)
	}
	saved, err := b.saveImage(ctx, workspace)
	if err != nil {
		return "", err
	}
	defer os.Remove(saved)
	img, err := tarball.ImageFromPath(saved, nil)
	if err != nil {
		return "", fmt.Errorf("reading the image the engine saved: %w", err)
	}
	b.out.printf("push: pushing %s\n", ref)
	if err := remote.Write(dst, img, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
		return "", fmt.Errorf("pushing %s: %w", ref, err)
	}
	digest, err := img.Digest()
	if err != nil {
		return "", fmt.Errorf("digest of %s: %w", ref, err)
	}
	b.out.printf("push: pushed %s digest %s\n", ref, digest)
	return digest.String(), nil
}

// saveImage writes the job's image, as `docker save` gives it, to a file
// in the workspace and returns its path.
func (b *buildRun) saveImage(ctx context.Context, workspace string) (string, error) {
	f, err := os.CreateTemp(workspace, "image-*.tar")
	if err != nil {
		return "", fmt.Errorf("creating the image file: %w", err)
	}
	rc, err := b.docker.ImageSave(ctx, []string{b.jobTag})
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", fmt.Errorf("engine refused to save %s: %w", b.jobTag, err)
	}
	_, err = io.Copy(f, rc)
	rc.Close()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("saving %s from the engine: %w", b.jobTag, err)
	}
	return f.Name(), nil
}
