package console

import (
	"net/http"
	"net/url"

	"google.golang.org/grpc/status"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// The console's actions go through the hub's AdminService, as btctl's do.
// They need an admin session and the session's form key. A browser with
// JavaScript posts them with fetch and gets the outcome as text; without
// it, the form posts and the answer is a redirect back, with the outcome
// shown once on the page.

func (c *Console) drain(w http.ResponseWriter, r *http.Request, s session) {
	if !c.mayAct(w, r, s) {
		return
	}
	id := r.PathValue("id")
	resp, err := c.cfg.Admin.DrainWorker(r.Context(), &blacktreev1.DrainWorkerRequest{WorkerId: id, Reason: "drained from the console"})
	if err != nil {
		c.actionDone(w, r, http.StatusNotFound, "Not drained: "+status.Convert(err).Message(), Prefix)
		return
	}
	c.actionDone(w, r, http.StatusOK, "Worker "+resp.GetWorker().GetWorkerId()+" is draining: it finishes its jobs and takes no new ones.", Prefix)
}

var cancelWords = map[blacktreev1.CancelJobOutcome]string{
	blacktreev1.CancelJobOutcome_CANCEL_JOB_OUTCOME_ANSWERED:       "it had not started; its cancelled status is published",
	blacktreev1.CancelJobOutcome_CANCEL_JOB_OUTCOME_SENT_TO_WORKER: "its worker was told to stop it",
	blacktreev1.CancelJobOutcome_CANCEL_JOB_OUTCOME_FINISHED:       "it had already finished; nothing changed",
	blacktreev1.CancelJobOutcome_CANCEL_JOB_OUTCOME_NOT_HELD:       "this hub does not hold it; the cancel was passed on to the other hubs and remembered",
}

func (c *Console) cancel(w http.ResponseWriter, r *http.Request, s session) {
	if !c.mayAct(w, r, s) {
		return
	}
	id := r.PathValue("id")
	back := Prefix + "jobs/" + url.PathEscape(id)
	resp, err := c.cfg.Admin.CancelJob(r.Context(), &blacktreev1.CancelJobRequest{JobId: id, Reason: "cancelled from the console"})
	if err != nil {
		c.actionDone(w, r, http.StatusBadRequest, "Not cancelled: "+status.Convert(err).Message(), back)
		return
	}
	c.actionDone(w, r, http.StatusOK, "Cancel sent: "+cancelWords[resp.GetOutcome()]+".", back)
}

// mayAct refuses viewers and posts without the session's form key.
func (c *Console) mayAct(w http.ResponseWriter, r *http.Request, s session) bool {
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if !c.validFormKey(r, s) {
		http.Error(w, "stale form: reload the page", http.StatusForbidden)
		return false
	}
	if !s.admin() {
		http.Error(w, "this console session is read-only: log in with the admin token to act", http.StatusForbidden)
		return false
	}
	return true
}

// actionDone answers fetch with the message, a plain form with a redirect
// to back carrying it.
func (c *Console) actionDone(w http.ResponseWriter, r *http.Request, code int, msg, back string) {
	if r.Header.Get("X-Requested-With") == "fetch" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(code)
		_, _ = w.Write([]byte(msg))
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name:     noticeCookie,
		Value:    url.QueryEscape(msg),
		Path:     Prefix,
		MaxAge:   60,
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	})
	http.Redirect(w, r, back, http.StatusSeeOther)
}

// noticeCookie carries an action's outcome to the page a plain form
// returns to, which shows it once (takeNotice). A cookie, not the URL, so
// that no link can put words on the console.
const noticeCookie = "blacktree_console_notice"

// takeNotice returns the pending notice and clears it.
func takeNotice(w http.ResponseWriter, r *http.Request) string {
	ck, err := r.Cookie(noticeCookie)
	if err != nil {
		return ""
	}
	http.SetCookie(w, &http.Cookie{Name: noticeCookie, Value: "", Path: Prefix, MaxAge: -1, HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	msg, err := url.QueryUnescape(ck.Value)
	if err != nil || len(msg) > 512 {
		return ""
	}
	return msg
}
