package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// TestConsoleInBrowser drives the hub's console in headless Chromium
// against a real hub, real workers and the real broker: log in with the
// admin token, see the workers, follow a running job's output as it
// arrives, drain a worker from the keyboard and watch its state change
// without a reload, and check that a wrong token sees nothing. It takes
// the screenshots docs/console.md shows (BLACKTREE_SCREENSHOTS=dir keeps
// them) and records the page's transfer size.
func TestConsoleInBrowser(t *testing.T) {
	e := newEnv(t, sharedAMQP)
	h := e.startHub()
	// A noop job that prints a line a second for 20 s: long enough to
	// watch lines arrive.
	e.startWorker("alpha", []string{h.GRPCAddr}, "--executor", "noop", "--noop-delay", "20s", "--noop-log-lines", "20", "--labels", "pool=fast")
	e.startWorker("beta", []string{h.GRPCAddr}, "--executor", "noop", "--labels", "pool=slow")
	e.waitWorkers(h, 2, 30*time.Second)
	// Workers are named by their token (both "e2e-workers" here): tell
	// them apart by their labels.
	betaID := workerByLabel(t, e, h, "pool", "slow").GetWorkerId()
	base := "http://" + h.HTTPAddr

	desk := newBrowser(t, 1280, 800)
	login(t, desk, base, e.adminToken)
	waitText(t, desk, "table", "pool=fast", 15*time.Second)
	waitText(t, desk, "table", "pool=slow", 15*time.Second)
	if html := evalString(t, desk, `document.documentElement.outerHTML`); strings.Contains(html, e.adminToken) {
		t.Fatalf("the admin token appears in the page")
	}
	if cookies := evalString(t, desk, `document.cookie`); strings.Contains(cookies, "blacktree_console") {
		t.Fatalf("the session cookie is readable by scripts: %q", cookies)
	}

	// A running job: its page shows lines as they come.
	jobID := "console-" + randomHex(4)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req := job(jobID)
	req.WorkerLabels = map[string]string{"pool": "fast"}
	if err := e.cp.Publish(ctx, req); err != nil {
		t.Fatalf("Publish(%s) = %v", jobID, err)
	}
	browserDo(t, desk, chromedp.Navigate(base+"/ui/jobs"))
	waitText(t, desk, "table", jobID, 30*time.Second)
	browserDo(t, desk, chromedp.Click(chromedp.CSS(`a[href="/ui/jobs/`+jobID+`"]`)))
	waitText(t, desk, "#log", "line 1 of 20", 30*time.Second)
	markPage(t, desk)
	waitText(t, desk, "#log", "line 3 of 20", 30*time.Second)
	waitText(t, desk, "#job-state", "running", 5*time.Second)
	checkSamePage(t, desk, "new log lines")
	saveScreenshot(t, desk, "job-1280")
	record(t, "job page: lines arrive live; console page %s", pageWeight(t, desk))

	// Drain beta with the keyboard; the fleet view shows it without a reload.
	browserDo(t, desk, chromedp.Navigate(base+"/ui/"))
	waitText(t, desk, `tr[data-worker="`+betaID+`"]`, "free", 15*time.Second)
	saveScreenshot(t, desk, "fleet-1280")
	markPage(t, desk)
	drain := chromedp.CSS(`button[id="drain-` + betaID + `"]`)
	browserDo(t, desk, chromedp.Focus(drain), chromedp.KeyEvent(kb.Enter))
	waitText(t, desk, "#status", "is draining", 15*time.Second)
	waitText(t, desk, `tr[data-worker="`+betaID+`"]`, "draining", 15*time.Second)
	checkSamePage(t, desk, "the drain")
	if w := workerByLabel(t, e, h, "pool", "slow"); w.GetState() != blacktreev1.WorkerState_WORKER_STATE_DRAINING {
		t.Fatalf("after the console's drain, the hub says beta is %v", w.GetState())
	}

	// Phone width: the same pages, nothing wider than the screen.
	phone := newBrowser(t, 390, 844)
	login(t, phone, base, e.adminToken)
	waitText(t, phone, "main", "pool=fast", 15*time.Second)
	checkNoSideScroll(t, phone)
	saveScreenshot(t, phone, "fleet-390")
	browserDo(t, phone, chromedp.Navigate(base+"/ui/jobs/"+jobID))
	waitText(t, phone, "#log", "line", 15*time.Second)
	checkNoSideScroll(t, phone)
	saveScreenshot(t, phone, "job-390")

	// A wrong token gets the login page back and no data, in the page or
	// from the fragments and streams the page would poll.
	stranger := newBrowser(t, 1280, 800)
	browserDo(t, stranger, chromedp.Navigate(base+"/ui/"))
	waitText(t, stranger, "main", "Log in", 15*time.Second)
	browserDo(t, stranger,
		chromedp.SendKeys(chromedp.CSS("#token"), "wrong-"+randomHex(8)),
		chromedp.Submit(chromedp.CSS("#token")),
	)
	waitText(t, stranger, "main", "Wrong token", 15*time.Second)
	if body := evalString(t, stranger, `document.body.innerText`); strings.Contains(body, "pool=") || strings.Contains(body, betaID) || strings.Contains(body, jobID) {
		t.Fatalf("a wrong token sees fleet data:\n%s", body)
	}
	for _, path := range []string{"/ui/?fragment=1", "/ui/jobs?fragment=1", "/ui/jobs/" + jobID + "/log"} {
		got := evalString(t, stranger, fmt.Sprintf(`fetch(%q).then(async r => r.status + " " + await r.text())`, path), chromedp.EvalAwaitPromise)
		if !strings.HasPrefix(got, "401 ") || strings.Contains(got, "pool=") || strings.Contains(got, "line 1") {
			t.Errorf("fetch %s with a wrong token = %q, want 401 and no data", path, got)
		}
	}
}

// login signs ctx's browser in through the login form.
func login(t *testing.T, ctx context.Context, base, token string) {
	t.Helper()
	browserDo(t, ctx, chromedp.Navigate(base+"/ui/"))
	waitText(t, ctx, "main", "Log in", 15*time.Second)
	browserDo(t, ctx,
		chromedp.SendKeys(chromedp.CSS("#token"), token),
		chromedp.Submit(chromedp.CSS("#token")),
	)
	waitText(t, ctx, "nav", "Fleet", 15*time.Second)
}

// markPage sets a marker on the current document; checkSamePage fails if
// it is gone, which a reload or a navigation would do.
func markPage(t *testing.T, ctx context.Context) {
	t.Helper()
	evalString(t, ctx, `(window.__blacktreeMark = "kept")`)
}

func checkSamePage(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	if got := evalString(t, ctx, `String(window.__blacktreeMark)`); got != "kept" {
		t.Fatalf("the page reloaded to show %s; want it updated in place", what)
	}
}

// checkNoSideScroll fails when the page is wider than the viewport.
func checkNoSideScroll(t *testing.T, ctx context.Context) {
	t.Helper()
	got := evalString(t, ctx, `document.documentElement.scrollWidth + " " + window.innerWidth`)
	var scroll, width int
	if _, err := fmt.Sscan(got, &scroll, &width); err != nil || scroll > width {
		t.Fatalf("page is %s px wide (scrollWidth innerWidth): wider than the screen\n%s", got, pageState(ctx))
	}
}

// pageWeight is what the current page cost to load: the document and its
// stylesheet and script, as the browser transferred them.
func pageWeight(t *testing.T, ctx context.Context) string {
	t.Helper()
	return evalString(t, ctx, `(() => {
		const nav = performance.getEntriesByType("navigation")[0];
		let total = nav ? nav.transferSize : 0, parts = [];
		for (const r of performance.getEntriesByType("resource")) {
			if (r.initiatorType === "link" || r.initiatorType === "script") {
				total += r.transferSize;
				parts.push(r.name.split("/").pop() + " " + r.transferSize + " B");
			}
		}
		return total + " B transferred (document " + (nav ? nav.transferSize : 0) + " B, " + parts.join(", ") + ")";
	})()`)
}

func evalString(t *testing.T, ctx context.Context, expr string, opts ...chromedp.EvaluateOption) string {
	t.Helper()
	evalCtx, cancel := context.WithTimeout(ctx, browserStep)
	defer cancel()
	got, err := chromedp.Run(evalCtx, chromedp.Evaluate[string](expr, opts...))
	if err != nil {
		t.Fatalf("evaluate %q: %v\n%s", tail(expr, 200), err, pageState(ctx))
	}
	return got
}

func workerByLabel(t *testing.T, e *env, h *hubProc, key, value string) *blacktreev1.WorkerInfo {
	t.Helper()
	admin, ctx := e.admin(h)
	resp, err := admin.ListWorkers(ctx, &blacktreev1.ListWorkersRequest{})
	if err != nil {
		t.Fatalf("ListWorkers() = %v", err)
	}
	for _, w := range resp.GetWorkers() {
		if w.GetLabels()[key] == value {
			return w
		}
	}
	t.Fatalf("no worker labelled %s=%s", key, value)
	return nil
}
