package deploy

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// installedBinDir is where the units expect the binaries.
const installedBinDir = "/usr/local/bin/"

// unit is a unit file's settings: "Section.Key" to its values in order
// (continuation lines joined, comments dropped).
type unit map[string][]string

func readUnit(t *testing.T, path string) unit {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	u := unit{}
	section, pending := "", ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if pending == "" && (line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";")) {
			continue
		}
		if cont, ok := strings.CutSuffix(line, "\\"); ok {
			pending += cont + " "
			continue
		}
		line, pending = pending+line, ""
		if strings.HasPrefix(line, "[") {
			section = strings.Trim(line, "[]")
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: line %q is no key=value", path, line)
		}
		u[section+"."+k] = append(u[section+"."+k], v)
	}
	return u
}

// one is the single value of key.
func (u unit) one(t *testing.T, key string) string {
	t.Helper()
	if len(u[key]) != 1 {
		t.Fatalf("%s: %d values %v, want one", key, len(u[key]), u[key])
	}
	return u[key][0]
}

// execArgs splits ExecStart into its binary and arguments (the units use
// no quoting).
func (u unit) execArgs(t *testing.T) (string, []string) {
	t.Helper()
	f := strings.Fields(u.one(t, "Service.ExecStart"))
	return f[0], f[1:]
}

// systemdDuration reads a systemd time span such as 60, 90s or 16min.
func systemdDuration(t *testing.T, v string) time.Duration {
	t.Helper()
	if n, err := strconv.Atoi(v); err == nil {
		return time.Duration(n) * time.Second
	}
	d, err := time.ParseDuration(strings.ReplaceAll(v, "min", "m"))
	if err != nil {
		t.Fatalf("time span %q: %v", v, err)
	}
	return d
}

// stagedUnits copies deploy/systemd into a temporary directory with
// ExecStart pointing at the binaries built for this run: systemd-analyze
// verify checks that a unit's command exists and is executable, and the
// binaries are not installed on the test machine. Everything else is
// verified as written.
func stagedUnits(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files, err := filepath.Glob(filepath.Join("systemd", "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no files in deploy/systemd (%v)", err)
	}
	binDir := filepath.Dir(bins.Hub) + "/"
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("read %s: %v", f, err)
		}
		b = bytes.ReplaceAll(b, []byte(installedBinDir), []byte(binDir))
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatalf("stage %s: %v", f, err)
		}
	}
	return dir
}

// analyze runs systemd-analyze; its absence fails the test.
func analyze(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze not found (Debian: apt-get install systemd): %v", err)
	}
	out, err := exec.Command(bin, args...).CombinedOutput()
	return string(out), err
}

// TestSystemdVerify: systemd-analyze verify accepts the hub unit and two
// instances of the worker template with no warning (it exits 0 even on an
// unknown key or a bad value, and only prints them, so any output fails).
func TestSystemdVerify(t *testing.T) {
	dir := stagedUnits(t)
	for _, name := range []string{"blacktree-hub.service", "blacktree-worker@a.service", "blacktree-worker@b.service"} {
		out, err := analyze(t, "verify", filepath.Join(dir, name))
		if err != nil || strings.TrimSpace(out) != "" {
			t.Errorf("systemd-analyze verify %s = %v\n%s", name, err, out)
		}
	}
}

// TestSystemdVerifyCatches: the verify check can fail: a misspelt key and
// a missing binary are reported.
func TestSystemdVerifyCatches(t *testing.T) {
	dir := stagedUnits(t)
	b, err := os.ReadFile(filepath.Join(dir, "blacktree-hub.service"))
	if err != nil {
		t.Fatalf("read staged unit: %v", err)
	}
	bad := strings.Replace(string(b), "ProtectSystem=", "ProtectSytem=", 1)
	bad = strings.ReplaceAll(bad, filepath.Dir(bins.Hub)+"/", "/nonexistent/")
	path := filepath.Join(dir, "broken.service")
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatalf("write: %v", err)
	}
	out, _ := analyze(t, "verify", path)
	if !strings.Contains(out, "ProtectSytem") || !strings.Contains(out, "/nonexistent/blacktree-hub") {
		t.Errorf("systemd-analyze verify of a broken unit printed %q, want the unknown key and the missing binary", out)
	}
}

// exposure matches systemd-analyze security's verdict line.
var exposure = regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)

// TestSystemdUnits: the units use only flags and BLACKTREE_* variables
// that exist, their stop timeouts outlast the drains, every worker
// instance has its own state directory, work directory and token, the
// users are those blacktree.sysusers creates, and the hardening keeps
// systemd-analyze security's exposure level low.
func TestSystemdUnits(t *testing.T) {
	hubFlags, workerFlags := readFlags(t, bins.Hub), readFlags(t, bins.Worker)
	users := sysusers(t)
	for _, c := range []struct {
		file, env string
		flags     flagSet
	}{
		{"blacktree-hub.service", "hub.env.example", hubFlags},
		{"blacktree-worker@.service", "worker.env.example", workerFlags},
	} {
		u := readUnit(t, filepath.Join("systemd", c.file))
		bin, rawArgs := u.execArgs(t)
		if want := installedBinDir + filepath.Base(c.flags.binary); bin != want {
			t.Errorf("%s: ExecStart runs %s, want %s", c.file, bin, want)
		}
		args, err := c.flags.parseArgs(rawArgs)
		if err != nil {
			t.Errorf("%s: ExecStart: %v", c.file, err)
			continue
		}
		drain, err := time.ParseDuration(c.flags.value(args, "drain-timeout"))
		if err != nil {
			t.Fatalf("%s: --drain-timeout: %v", c.file, err)
		}
		if stop := systemdDuration(t, u.one(t, "Service.TimeoutStopSec")); stop <= drain {
			t.Errorf("%s: TimeoutStopSec %s, want more than --drain-timeout %s", c.file, stop, drain)
		}
		checkEnvFile(t, filepath.Join("systemd", c.env), c.flags)
		if user := u.one(t, "Service.User"); !users[user] {
			t.Errorf("%s: User=%s is not created by blacktree.sysusers (%v)", c.file, user, users)
		}
		out, err := analyze(t, "security", "--offline=true", filepath.Join(stagedUnits(t), strings.Replace(c.file, "@", "@a", 1)))
		m := exposure.FindStringSubmatch(out)
		if err != nil || m == nil {
			t.Fatalf("systemd-analyze security %s = %v\n%s", c.file, err, out)
		}
		level, _ := strconv.ParseFloat(m[1], 64)
		t.Logf("%s: systemd-analyze security exposure %.1f", c.file, level)
		if level > 2.0 {
			t.Errorf("%s: exposure level %.1f, want 2.0 or less: a hardening option was lost", c.file, level)
		}

		if c.file != "blacktree-worker@.service" {
			continue
		}
		// Instances keep apart: each directory and the token are the
		// instance's own.
		state := u.one(t, "Service.StateDirectory")
		if !strings.Contains(state, "%i") || args["state-dir"] != "%S/"+state {
			t.Errorf("%s: StateDirectory=%s and --state-dir=%s: want a per-instance directory (%%i) and --state-dir=%%S/<StateDirectory>", c.file, state, args["state-dir"])
		}
		cache := u.one(t, "Service.CacheDirectory")
		if !strings.Contains(cache, "%i") || args["work-dir"] != "%C/"+cache {
			t.Errorf("%s: CacheDirectory=%s and --work-dir=%s: want a per-instance directory (%%i) and --work-dir=%%C/<CacheDirectory>", c.file, cache, args["work-dir"])
		}
		credName, credPath, _ := strings.Cut(u.one(t, "Service.LoadCredential"), ":")
		if !strings.Contains(credPath, "%i") || args["token-file"] != "%d/"+credName {
			t.Errorf("%s: LoadCredential=%s:%s and --token-file=%s: want a per-instance token file handed over as a credential", c.file, credName, credPath, args["token-file"])
		}
		if !strings.Contains(args["name"], "%i") {
			t.Errorf("%s: --name=%s: instances on one host need different names (%%i)", c.file, args["name"])
		}
		if !strings.Contains(strings.Join(u["Service.SupplementaryGroups"], " "), "docker") {
			t.Errorf("%s: the worker user needs the docker group for the engine's socket", c.file)
		}
	}
}

// checkEnvFile: every variable of an example environment file backs a
// flag of the binary.
func checkEnvFile(t *testing.T, path string, fs flagSet) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ := strings.Cut(line, "=")
		if !fs.hasEnv(name) {
			t.Errorf("%s: %s backs no flag of %s", path, name, filepath.Base(fs.binary))
		}
	}
}

// sysusers applies blacktree.sysusers to an empty root (with a docker
// group, as the engine's package creates) and returns the users made.
func sysusers(t *testing.T) map[string]bool {
	t.Helper()
	bin, err := exec.LookPath("systemd-sysusers")
	if err != nil {
		t.Fatalf("systemd-sysusers not found (Debian: apt-get install systemd): %v", err)
	}
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatalf("mkdir: %v", err)
	}
	for name, content := range map[string]string{"group": "docker:x:107:\n", "passwd": ""} {
		if err := os.WriteFile(filepath.Join(root, "etc", name), []byte(content), 0o644); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	conf, _ := filepath.Abs(filepath.Join("systemd", "blacktree.sysusers"))
	if out, err := exec.Command(bin, "--root="+root, conf).CombinedOutput(); err != nil {
		t.Fatalf("systemd-sysusers %s = %v\n%s", conf, err, out)
	}
	users := map[string]bool{}
	passwd, _ := os.ReadFile(filepath.Join(root, "etc", "passwd"))
	for _, line := range strings.Split(strings.TrimSpace(string(passwd)), "\n") {
		users[strings.Split(line, ":")[0]] = true
	}
	group, _ := os.ReadFile(filepath.Join(root, "etc", "group"))
	if !strings.Contains(string(group), "docker:x:107:blacktree-worker") {
		t.Errorf("blacktree.sysusers does not put blacktree-worker in the docker group:\n%s", group)
	}
	return users
}
