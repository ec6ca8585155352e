package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/blacktree/blacktree/internal/syncbuf"
)

// chromiumPath is Debian's chromium launcher; scripts/ensure-tools installs
// it.
const chromiumPath = "/usr/bin/chromium"

// browserStep bounds one browser step: starting chromium, one browserDo,
// one screenshot. Generous: on a busy two-CPU machine chromium alone takes
// seconds to start.
const browserStep = 30 * time.Second

// newBrowser starts a headless chromium of its own and returns the context
// of its one tab, whose viewport is exactly width×height CSS pixels at
// scale 1 (so screenshots are width×height). Each call has its own profile
// under t.TempDir(), so its own cookie jar: two calls are two users.
//
// The browser is running when newBrowser returns. That matters: the first
// chromedp.Run on a context owns the browser's lifetime, so a caller may
// derive timeouts from the returned context for its own steps but must not
// be the one to start the browser under a timeout. Cleanup closes chromium
// gracefully (so its renderers and helpers exit before the profile is
// removed) and waits for the process. chromedp's and chromium's own log
// lines are kept and logged only if the test failed.
func newBrowser(t *testing.T, width, height int) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("%s: %v; the browser tests need Debian chromium: run `bash scripts/ensure-tools`", chromiumPath, err)
	}
	logs := new(syncbuf.Buffer)
	logf := func(format string, args ...any) { fmt.Fprintf(logs, format+"\n", args...) }

	// chromedp's defaults plus what these tests rely on, some repeated from
	// the defaults so the whole contract reads here.
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox, // we run as root, where chromium refuses its sandbox
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(filepath.Join(t.TempDir(), "chromium-profile")),
		chromedp.WindowSize(width, height),
		chromedp.CombinedOutput(logs),
	)
	// stop ends everything below; the start deadline uses it too.
	root, stop := context.WithCancel(context.Background())
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(root, opts...)
	ctx, cancelBrowser := chromedp.NewContext(allocCtx, chromedp.WithLogf(logf), chromedp.WithErrorf(logf))

	// The first Run starts chromium and opens the tab; it must run on ctx
	// itself, so the start deadline cancels root rather than a derived
	// context.
	orientation := chromedp.EmulatePortrait
	if width > height {
		orientation = chromedp.EmulateLandscape
	}
	start := time.Now()
	deadline := time.AfterFunc(browserStep, stop)
	err := chromedp.Do(ctx, chromedp.EmulateViewport(int64(width), int64(height), orientation))
	late := !deadline.Stop()
	if err != nil {
		cancelBrowser()
		cancelAlloc()
		stop()
		if late {
			err = fmt.Errorf("not started within %s: %w", browserStep, err)
		}
		t.Fatalf("start chromium %dx%d: %v\n--- chromium log ---\n%s", width, height, err, browserLog(logs))
	}
	logf("e2e: chromium %dx%d started in %s", width, height, time.Since(start).Round(time.Millisecond))

	t.Cleanup(func() {
		closeCtx, cancelClose := context.WithTimeout(ctx, 10*time.Second)
		if err := chromedp.Cancel(closeCtx); err != nil {
			logf("e2e: close chromium: %v", err)
		}
		cancelClose()
		cancelBrowser()
		cancelAlloc() // waits for the process and its output
		stop()
		if t.Failed() {
			t.Logf("--- chromium %dx%d log ---\n%s", width, height, browserLog(logs))
		}
	})
	return ctx
}

// browserLog is the tail of a browser's log without chromium's D-Bus
// errors: test machines have no bus, and chromium says so a few dozen times
// per start.
func browserLog(logs *syncbuf.Buffer) string {
	var kept []string
	for _, line := range strings.Split(logs.String(), "\n") {
		if !strings.Contains(line, ":ERROR:dbus/") {
			kept = append(kept, line)
		}
	}
	return tail(strings.Join(kept, "\n"), 4000)
}

// browserDo runs steps in ctx's tab within browserStep and fails the test
// with the page's URL and text when one fails.
func browserDo(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	stepCtx, cancel := context.WithTimeout(ctx, browserStep)
	defer cancel()
	if err := chromedp.Do(stepCtx, steps...); err != nil {
		t.Fatalf("chromedp.Do() = %v\n%s", err, pageState(ctx))
	}
}

// waitText waits until the innerText of the first element matching the CSS
// selector sel contains want, and fails the test with the page's URL and
// text once within has passed. It polls from Go, one short evaluation at a
// time, so it survives the navigations a form post or a redirect causes.
func waitText(t *testing.T, ctx context.Context, sel, want string, within time.Duration) {
	t.Helper()
	quoted, err := json.Marshal(sel)
	if err != nil {
		t.Fatalf("json.Marshal(%q) = %v", sel, err)
	}
	expr := fmt.Sprintf(`(() => { const e = document.querySelector(%s); return e ? e.innerText : ""; })()`, quoted)
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var got string
	for {
		evalCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		got, err = chromedp.Run(evalCtx, chromedp.Evaluate[string](expr))
		cancel()
		if err == nil && strings.Contains(got, want) {
			return
		}
		select {
		case <-deadline.C:
			if err != nil {
				got = fmt.Sprintf("%q (last evaluation: %v)", got, err)
			} else {
				got = fmt.Sprintf("%q", got)
			}
			t.Fatalf("%s: innerText = %s after %s, want it to contain %q\n%s", sel, got, within, want, pageState(ctx))
		case <-tick.C: // the page changes on its own; there is no event to wait on
		}
	}
}

// pageState is the tab's URL and body text, for failure messages.
func pageState(ctx context.Context) string {
	evalCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	url, err := chromedp.Run(evalCtx, chromedp.Location())
	if err != nil {
		return fmt.Sprintf("--- page: unavailable: %v", err)
	}
	text, err := chromedp.Run(evalCtx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	if err != nil {
		text = fmt.Sprintf("(text unavailable: %v)", err)
	}
	return fmt.Sprintf("--- page %s ---\n%s", url, tail(text, 2000))
}

// saveScreenshot writes a PNG of ctx's viewport (exactly the newBrowser
// size) as <test>-<name>.png to $BLACKTREE_SCREENSHOTS, created when
// missing, or else to a directory of t.TempDir(), and logs its path.
func saveScreenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	shotCtx, cancel := context.WithTimeout(ctx, browserStep)
	defer cancel()
	png, err := chromedp.Run(shotCtx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("CaptureScreenshot() = %v", err)
	}
	dir := os.Getenv("BLACKTREE_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("BLACKTREE_SCREENSHOTS: %v", err)
	}
	clean := strings.NewReplacer("/", "_", " ", "_", ":", "_")
	path := filepath.Join(dir, clean.Replace(t.Name()+"-"+name)+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatalf("write screenshot: %v", err)
	}
	t.Logf("screenshot %s", path)
}
