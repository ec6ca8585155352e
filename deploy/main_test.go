package deploy

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/blacktree/blacktree/internal/cluster"
)

// bins are the binaries built from this tree for the run.
var bins cluster.Binaries

func TestMain(m *testing.M) {
	code := func() int {
		root, err := cluster.ModuleRoot()
		if err != nil {
			fmt.Fprintln(os.Stderr, "deploy:", err)
			return 1
		}
		dir, err := os.MkdirTemp("", "blacktree-deploy-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "deploy:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if bins, err = cluster.Build(ctx, root, dir, false); err != nil {
			fmt.Fprintln(os.Stderr, "deploy: build binaries:", err)
			return 1
		}
		code := m.Run()
		if code == 0 {
			if err := goleak.Find(); err != nil {
				fmt.Fprintln(os.Stderr, "deploy: leaked goroutines:", err)
				return 1
			}
		}
		return code
	}()
	os.Exit(code)
}
