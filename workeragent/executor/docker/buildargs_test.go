package docker

import (
	"strings"
	"testing"
)

// TestBuildArgs checks that a job's buildArgs reach the Dockerfile's ARG
// instructions with both builders, and that an ARG the job does not set
// keeps its default.
func TestBuildArgs(t *testing.T) {
	for _, builder := range []string{BuilderBuildKit, BuilderClassic} {
		t.Run(builder, func(t *testing.T) {
			base := baseImage(t)
			e := newEnv(t, func(c *Config) { c.Builder = builder })
			e.git.addRepo(t, "acme/args", repoFiles{files: map[string]string{
				"Dockerfile": "FROM " + base + "\nARG VERSION\nARG CHANNEL=stable\nRUN echo \"$VERSION $CHANNEL\" > /version.txt\n",
			}})
			req := request("job-args-"+builder, "acme/args")
			req.ImageName = "args:" + builder
			req.BuildArgs = map[string]string{"VERSION": "1.2.3 beta"}
			resp, _ := runOK(t, e, req)
			got := string(imageFileContents(t, resp.GetImageUrl())["version.txt"])
			if want := "1.2.3 beta stable\n"; got != want {
				t.Errorf("image version.txt = %q, want %q", got, want)
			}
			if strings.Contains(resp.GetError(), "VERSION") {
				t.Errorf("Run().Error = %q", resp.GetError())
			}
		})
	}
}
