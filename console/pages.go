package console

import (
	"bytes"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/jobspec"
)

// pageNames are the templates under templates/, each parsed with
// base.html. A page defines "content" (its main), and "live" when part of
// it refreshes in place: the browser fetches the page again with
// ?fragment=1 and gets only "live".
var pageNames = []string{"login", "fleet", "jobs", "job", "queues"}

var funcs = template.FuncMap{
	"ago":       ago,
	"elapsed":   elapsed,
	"bytes":     humanBytes,
	"rfc3339":   func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"sparkline": sparkline,
}

func parsePages() (map[string]*template.Template, error) {
	pages := make(map[string]*template.Template, len(pageNames))
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/base.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: parse %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// render executes page's base (or only its "live" part) into a buffer
// first, so that a template error is a clean 500, not half a page.
func (c *Console) render(w http.ResponseWriter, code int, page string, view any) {
	c.renderPart(w, code, page, "base", view)
}

func (c *Console) renderPart(w http.ResponseWriter, code int, page, part string, view any) {
	var buf bytes.Buffer
	if err := c.pages[page].ExecuteTemplate(&buf, part, view); err != nil {
		c.log.Error("console page failed", "page", page, "error", err)
		http.Error(w, "console page failed; see the hub's log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// isFragment reports whether the request asks only for a page's live part.
func isFragment(r *http.Request) bool { return r.URL.Query().Get("fragment") == "1" }

// serve renders a page, or its live part for a fragment request.
func (c *Console) serve(w http.ResponseWriter, r *http.Request, page string, view any) {
	if isFragment(r) {
		c.renderPart(w, http.StatusOK, page, "live", view)
		return
	}
	c.render(w, http.StatusOK, page, view)
}

// common is what every logged-in page shows.
type common struct {
	Title     string
	HubID     string
	Nav       string // "fleet", "jobs" or "queues"
	Admin     bool
	FormKey   string
	PollEvery int64 // milliseconds
	Notice    string
}

func (c *Console) common(w http.ResponseWriter, r *http.Request, s session, title, nav string) common {
	notice := ""
	if !isFragment(r) {
		notice = takeNotice(w, r)
	}
	return common{
		Title:     title,
		HubID:     c.cfg.HubID,
		Nav:       nav,
		Admin:     s.admin(),
		FormKey:   c.formKey(s),
		PollEvery: c.cfg.PollEvery.Milliseconds(),
		Notice:    notice,
	}
}

// Worker states as the console names them.
var stateWords = map[blacktreev1.WorkerState]string{
	blacktreev1.WorkerState_WORKER_STATE_FREE:     "free",
	blacktreev1.WorkerState_WORKER_STATE_BUSY:     "busy",
	blacktreev1.WorkerState_WORKER_STATE_DRAINING: "draining",
	blacktreev1.WorkerState_WORKER_STATE_DEAD:     "dead",
}

var stateOrder = []string{"free", "busy", "draining", "dead"}

type workerRow struct {
	ID, Name, State string
	Fenced          bool
	Labels          []string // sorted k=v
	Used, Slots     int
	Version         string
	Protocol        uint32
	Address         string
	Connected       time.Time
	LastHeartbeat   time.Time
	Running         []string
	Cache           *cacheRow
}

type cacheRow struct {
	Keys, Images int
	Bytes        uint64
}

type stateCount struct {
	State string
	N     int
}

type fleetView struct {
	common
	Workers      []workerRow
	Total        int
	Counts       []stateCount
	Used, Slots  int
	CacheWorkers int
	CacheBytes   uint64
	States       []string
	State        string // filter; "" for all
	Label        string // filter: k=v pairs, comma-separated; "" for all
	LabelProblem string
}

func workerRowOf(w *blacktreev1.WorkerInfo) workerRow {
	row := workerRow{
		ID:            w.GetWorkerId(),
		Name:          w.GetName(),
		State:         stateWords[w.GetState()],
		Fenced:        w.GetFenced(),
		Used:          len(w.GetRunningJobIds()),
		Slots:         int(w.GetSlots()),
		Version:       w.GetVersion(),
		Protocol:      w.GetProtocolVersion(),
		Address:       w.GetAddress(),
		Connected:     w.GetConnectedSince().AsTime(),
		LastHeartbeat: w.GetLastHeartbeat().AsTime(),
		Running:       w.GetRunningJobIds(),
	}
	for _, k := range slices.Sorted(maps.Keys(w.GetLabels())) {
		row.Labels = append(row.Labels, k+"="+w.GetLabels()[k])
	}
	if cs := w.GetCache(); cs != nil {
		row.Cache = &cacheRow{Keys: len(cs.GetBuildKeys()), Images: len(cs.GetBaseImages()), Bytes: cs.GetSizeBytes()}
	}
	return row
}

// parseLabelFilter reads "k=v,k2=v2".
func parseLabelFilter(s string) (map[string]string, error) {
	out := map[string]string{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("%q is not key=value", part)
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out, nil
}

func (c *Console) fleetPage(w http.ResponseWriter, r *http.Request, s session) {
	resp, err := c.cfg.Admin.ListWorkers(r.Context(), &blacktreev1.ListWorkersRequest{})
	if err != nil {
		http.Error(w, "listing workers: "+err.Error(), http.StatusInternalServerError)
		return
	}
	q := r.URL.Query()
	v := fleetView{
		common: c.common(w, r, s, "Fleet", "fleet"),
		States: stateOrder,
		State:  q.Get("state"),
		Label:  q.Get("label"),
	}
	if !slices.Contains(stateOrder, v.State) {
		v.State = ""
	}
	want, err := parseLabelFilter(v.Label)
	if err != nil {
		v.LabelProblem = "Label filter: " + err.Error()
		want = nil
	}
	counts := map[string]int{}
	for _, wi := range resp.GetWorkers() {
		row := workerRowOf(wi)
		counts[row.State]++
		v.Total++
		if row.State != "dead" {
			v.Used += row.Used
			v.Slots += row.Slots
		}
		if row.Cache != nil {
			v.CacheWorkers++
			v.CacheBytes += row.Cache.Bytes
		}
		if v.State != "" && row.State != v.State || !jobspec.LabelsMatch(want, wi.GetLabels()) {
			continue
		}
		v.Workers = append(v.Workers, row)
	}
	for _, st := range stateOrder {
		v.Counts = append(v.Counts, stateCount{State: st, N: counts[st]})
	}
	c.serve(w, r, "fleet", v)
}

var jobStateWords = map[blacktreev1.JobState]string{
	blacktreev1.JobState_JOB_STATE_PENDING:    "waiting for a worker",
	blacktreev1.JobState_JOB_STATE_OFFERED:    "offered",
	blacktreev1.JobState_JOB_STATE_RUNNING:    "running",
	blacktreev1.JobState_JOB_STATE_ORPHANED:   "worker lost",
	blacktreev1.JobState_JOB_STATE_PUBLISHING: "publishing status",
}

type jobRow struct {
	ID, State, Worker, Repo, Branch, Image string
	// Stage is the stage the worker reported ("build"), while the job
	// runs and once one is known; "" otherwise, and State says where
	// the job is.
	Stage              string
	Received, Accepted time.Time
}

// Since is when the job's current phase began: accepted, else received.
func (j jobRow) Since() time.Time {
	if !j.Accepted.IsZero() {
		return j.Accepted
	}
	return j.Received
}

func jobRowOf(j *blacktreev1.JobInfo) jobRow {
	row := jobRow{
		ID:       j.GetJobId(),
		State:    jobStateWords[j.GetState()],
		Worker:   j.GetWorkerId(),
		Repo:     j.GetRepoUrl(),
		Branch:   j.GetBranch(),
		Image:    j.GetImageName(),
		Received: j.GetReceivedAt().AsTime(),
	}
	if j.GetAcceptedAt() != nil {
		row.Accepted = j.GetAcceptedAt().AsTime()
	}
	if j.GetState() == blacktreev1.JobState_JOB_STATE_RUNNING && j.GetStage() != blacktreev1.JobStage_JOB_STAGE_UNSPECIFIED {
		row.Stage = jobspec.StageName(j.GetStage())
	}
	return row
}

type jobsView struct {
	common
	Jobs []jobRow
}

func (c *Console) jobsPage(w http.ResponseWriter, r *http.Request, s session) {
	resp, err := c.cfg.Admin.ListJobs(r.Context(), &blacktreev1.ListJobsRequest{})
	if err != nil {
		http.Error(w, "listing jobs: "+err.Error(), http.StatusInternalServerError)
		return
	}
	v := jobsView{common: c.common(w, r, s, "Jobs", "jobs")}
	for _, j := range resp.GetJobs() {
		v.Jobs = append(v.Jobs, jobRowOf(j))
	}
	c.serve(w, r, "jobs", v)
}

// findJob returns the job this hub holds with id, if any.
func (c *Console) findJob(r *http.Request, id string) (*jobRow, error) {
	resp, err := c.cfg.Admin.ListJobs(r.Context(), &blacktreev1.ListJobsRequest{})
	if err != nil {
		return nil, err
	}
	for _, j := range resp.GetJobs() {
		if j.GetJobId() == id {
			row := jobRowOf(j)
			return &row, nil
		}
	}
	return nil, nil
}

type jobView struct {
	common
	ID      string
	Job     *jobRow // nil when this hub does not hold it
	Log     string  // output so far
	Skipped uint64
	Cursor  uint64
	End     *LogEnd
	HasLog  bool
}

func (c *Console) jobPage(w http.ResponseWriter, r *http.Request, s session) {
	id := r.PathValue("id")
	job, err := c.findJob(r, id)
	if err != nil {
		http.Error(w, "listing jobs: "+err.Error(), http.StatusInternalServerError)
		return
	}
	v := jobView{common: c.common(w, r, s, "Job "+id, "jobs"), ID: id, Job: job}
	if c.cfg.Logs != nil {
		if page, ok := c.cfg.Logs.LogSince(id, 0); ok {
			v.HasLog = true
			v.Log = strings.Join(page.Chunks, "")
			v.Skipped, v.Cursor, v.End = page.Skipped, page.Next, page.End
		}
	}
	if job == nil && !v.HasLog {
		w.Header().Set("Cache-Control", "no-store")
		c.renderPart(w, http.StatusNotFound, "job", "base", v)
		return
	}
	c.serve(w, r, "job", v)
}

type queueRow struct {
	Name    string
	Execute bool
	Ready   int
	Unacked int
	History []int
}

type queuesView struct {
	common
	Queues      []queueRow
	Problem     string
	SampleEvery time.Duration
	Window      time.Duration
}

func (c *Console) queuesPage(w http.ResponseWriter, r *http.Request, s session) {
	v := queuesView{
		common:      c.common(w, r, s, "Queues", "queues"),
		SampleEvery: c.cfg.SampleEvery,
		Window:      c.cfg.SampleEvery * time.Duration(c.cfg.SparklinePoints),
	}
	if c.cfg.Queues == nil {
		v.Problem = "This hub's broker cannot count its queues."
		c.serve(w, r, "queues", v)
		return
	}
	latest, hist, err := c.queueHist.snapshot()
	if err != nil {
		v.Problem = "The broker did not answer the last count: " + err.Error()
	}
	for _, q := range latest {
		v.Queues = append(v.Queues, queueRow{
			Name:    q.Name,
			Execute: q.Unacked >= 0,
			Ready:   q.Ready,
			Unacked: q.Unacked,
			History: hist[q.Name],
		})
	}
	c.serve(w, r, "queues", v)
}

// ago is how long before now t was, coarsely ("4s", "3m", "2h 5m").
func ago(t time.Time) string {
	if t.IsZero() || t.Unix() <= 0 {
		return "never"
	}
	return elapsed(t)
}

// elapsed is the time since t as "12s", "3m 04s" or "2h 05m".
func elapsed(t time.Time) string {
	d := max(time.Since(t), 0)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm %02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		return fmt.Sprintf("%dh %02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}

func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
