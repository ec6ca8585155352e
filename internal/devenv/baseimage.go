package devenv

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// BaseImage is the offline base image that scripts/import-base-image
// makes: busybox with a link for every applet, for RUN steps in tests and
// benchmarks where nothing can be pulled.
const BaseImage = "local/busybox:1"

// ImportBaseImage makes sure the Docker engine (DOCKER_HOST, as the docker
// CLI reads it) holds ref, importing it with scripts/import-base-image when
// it is missing. It needs the repository's source tree (tests and
// benchmarks run from it) and the docker CLI.
func ImportBaseImage(ctx context.Context, ref string) error {
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		return errors.New("import base image: cannot locate the repository")
	}
	script := filepath.Join(filepath.Dir(self), "..", "..", "scripts", "import-base-image")
	out, err := exec.CommandContext(ctx, "bash", script, ref).CombinedOutput()
	if err != nil {
		return fmt.Errorf("import base image %s: %w: %s", ref, err, strings.TrimSpace(string(out)))
	}
	return nil
}
