// Blacktree console: refreshes each page's live part in place, follows a
// job's output, and posts actions without leaving the page. Plain DOM; the
// pages work without it (forms post, pages reload).
"use strict";

// Refresh [data-live] regions every data-every ms. A region is replaced
// only when its HTML changed, and the focused control (by id) keeps focus.
function startLive(region) {
  const every = Number(region.dataset.every) || 2000;
  let last = region.innerHTML;
  async function tick() {
    if (document.hidden) return;
    try {
      const resp = await fetch(region.dataset.live, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } });
      if (resp.status === 401) { location.assign("/ui/login"); return; }
      if (!resp.ok) return;
      const html = await resp.text();
      if (html === last) return;
      const focused = document.activeElement && region.contains(document.activeElement) ? document.activeElement.id : "";
      region.innerHTML = html;
      last = html;
      if (focused) { const el = document.getElementById(focused); if (el) el.focus(); }
    } catch (e) { /* the hub restarts or the network blinks: try again next tick */ }
  }
  setInterval(tick, every);
}

// Post an action form with fetch and say the outcome in the page's status.
function bindActions() {
  document.addEventListener("submit", async (ev) => {
    const form = ev.target;
    if (!form.classList.contains("action")) return;
    ev.preventDefault();
    const status = document.getElementById("status");
    const button = form.querySelector("button");
    if (button) button.disabled = true;
    try {
      const resp = await fetch(form.action, { method: "POST", body: new URLSearchParams(new FormData(form)), credentials: "same-origin", headers: { "X-Requested-With": "fetch" } });
      const text = await resp.text();
      if (status) status.textContent = text;
    } catch (e) {
      if (status) status.textContent = "The hub did not answer: " + e;
    } finally {
      if (button) button.disabled = false;
    }
  });
}

// Follow a job's output from the cursor the page was rendered at.
function followLog(pre) {
  if (pre.dataset.ended) return;
  const state = document.getElementById("log-state");
  const url = pre.dataset.stream + "?cursor=" + encodeURIComponent(pre.dataset.cursor || "0");
  const source = new EventSource(url);
  const stick = () => pre.scrollHeight - pre.scrollTop - pre.clientHeight < 40;
  function append(text) {
    const atEnd = stick();
    pre.append(text);
    if (atEnd) pre.scrollTop = pre.scrollHeight;
  }
  source.addEventListener("open", () => { if (state) state.textContent = "Following…"; });
  source.addEventListener("chunk", (ev) => append(JSON.parse(ev.data)));
  source.addEventListener("skipped", (ev) => append("[… " + ev.data + " chunks not kept …]\n"));
  source.addEventListener("end", (ev) => {
    source.close();
    const end = JSON.parse(ev.data);
    let text;
    if (end.gone) text = "This hub holds no more output of this job.";
    else if (!end.finished) text = "The job left this hub without a status here (requeued, or moved to another hub).";
    else if (end.success) text = "Finished: succeeded.";
    else text = "Finished: failed" + (end.stage ? " (" + end.stage + ")" : "") + ": " + end.error;
    if (state) state.textContent = text;
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live]").forEach(startLive);
  document.querySelectorAll("pre[data-stream]").forEach(followLog);
  bindActions();
});
