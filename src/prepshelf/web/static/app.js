// prepshelf dashboard: plain JS over the JSON API. Views: stores, one store (batches, files,
// search, live progress), one job. Every view names the API call it shows (its JSON twin).
"use strict";

const PAGE_SIZE = 50;
const FINAL = new Set(["succeeded", "failed", "cancelled"]);
const FILE_STATUS = { queued: "in_progress", running: "in_progress", succeeded: "completed",
  failed: "failed", cancelled: "cancelled" };

// ---- API ------------------------------------------------------------------------------

const auth = {
  get key() { return sessionStorage.getItem("prepshelf.key"); },
  set key(v) { v ? sessionStorage.setItem("prepshelf.key", v) : sessionStorage.removeItem("prepshelf.key"); },
};

class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message || `HTTP ${status}`);
    this.status = status;
  }
}

async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${auth.key}`,
      ...(body ? { "Content-Type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = await res.json().catch(() => null);
  if (res.status === 401) { askKey("That key was not accepted."); }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

// Server-sent events over fetch(), so the key travels in a header and never in a URL.
// Reconnects with Last-Event-ID until the stream ends by itself or `signal` aborts.
async function streamEvents(path, onEvent, signal) {
  let lastId = null;
  let delay = 500;
  while (!signal.aborted) {
    try {
      const headers = { Authorization: `Bearer ${auth.key}`, Accept: "text/event-stream" };
      if (lastId !== null) headers["Last-Event-ID"] = lastId;
      const res = await fetch(path, { headers, signal });
      if (!res.ok) throw new ApiError(res.status, await res.json().catch(() => null));
      setLive(true);
      delay = 500;
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) { setLive(false); return; }  // the server ended it: the work is over
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const frame = parseFrame(buffer.slice(0, cut));
          buffer = buffer.slice(cut + 2);
          if (frame.id !== null) lastId = frame.id;
          if (frame.data) onEvent(frame.event, JSON.parse(frame.data));
        }
      }
    } catch (err) {
      setLive(false);
      if (signal.aborted) return;
      if (err instanceof ApiError && err.status < 500) return;
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 10000);
    }
  }
}

function parseFrame(text) {
  const frame = { id: null, event: "message", data: "" };
  for (const line of text.split("\n")) {
    const i = line.indexOf(":");
    if (i === 0) continue;  // comment (keep-alive)
    const field = i < 0 ? line : line.slice(0, i);
    const value = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
    if (field === "id") frame.id = value;
    else if (field === "event") frame.event = value;
    else if (field === "data") frame.data += value;
  }
  return frame;
}

// ---- DOM helpers ----------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (typeof c === "function") c(el);  // a hook that sets what attributes may not (CSP)
    else if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

const $ = (sel, root = document) => root.querySelector(sel);
const when = (t) => (t ? new Date(t * 1000).toLocaleString() : "—");
const bytes = (n) => (n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KB`
  : `${(n / 1048576).toFixed(1)} MB`);
const badge = (status) => h("span", { class: `badge ${status}` }, status.replace("_", " "));

function setLive(on) { $("#live").hidden = !on; }

function jsonTwin(method, path, data) {
  return h("details", { class: "json" },
    h("summary", {}, h("code", {}, `${method} ${path}`)),
    h("pre", {}, JSON.stringify(data, null, 2)));
}

function crumbs(...items) {
  $("#crumbs").replaceChildren(...items.flatMap((it, i) => [
    ...(i ? [h("span", { class: "sep" }, "/")] : []),
    it.href ? h("a", { href: it.href }, it.label) : h("span", {}, it.label)]));
}

function flash(message) {
  const box = h("p", { class: "error flash", role: "alert" }, message);
  $("#view").prepend(box);
  setTimeout(() => box.remove(), 8000);
}

// ---- views ----------------------------------------------------------------------------

let viewAbort = new AbortController();

async function showStores() {
  crumbs({ label: "vector stores" });
  const path = `/v1/vector_stores?limit=100`;
  const list = await api("GET", path);
  const rows = list.data.map((s) => h("tr", {},
    h("td", {}, h("a", { href: `#/stores/${s.id}` }, s.name || s.id), h("div", { class: "id" }, s.id)),
    h("td", {}, badge(s.status)),
    h("td", { class: "num" }, s.file_counts.completed),
    h("td", { class: "num" }, s.file_counts.in_progress),
    h("td", { class: "num" }, s.file_counts.failed),
    h("td", { class: "num" }, s.file_counts.total),
    h("td", { class: "num" }, bytes(s.usage_bytes)),
    h("td", {}, when(s.created_at))));
  $("#view").replaceChildren(
    h("h1", {}, "Vector stores"),
    rows.length ? table(["store", "status", "completed", "in progress", "failed", "total",
      "size", "created"], rows) : h("p", { class: "muted" }, "No vector stores yet."),
    jsonTwin("GET", path, list));
}

function table(heads, rows, attrs = {}) {
  return h("table", attrs, h("thead", {}, h("tr", {}, heads.map((t) => h("th", {}, t)))),
    h("tbody", {}, rows));
}

async function showStore(storeId, params) {
  const batchId = params.get("batch");
  const status = params.get("status") || "";
  const after = params.get("after");
  crumbs({ label: "vector stores", href: "#/" }, { label: storeId, href: `#/stores/${storeId}` },
    ...(batchId ? [{ label: batchId }] : []));
  const storePath = `/v1/vector_stores/${storeId}`;
  const store = await api("GET", storePath);

  const view = $("#view");
  view.replaceChildren(
    h("section", { id: "counts" }),
    searchBox(storeId),
    h("section", { id: "batches" }),
    h("section", { id: "files" }));
  renderCounts(store);
  await renderBatches(storeId, batchId);
  const filesQuery = { batchId, status, after };
  let rows = await renderFiles(storeId, filesQuery);
  view.append(jsonTwin("GET", storePath, store));

  // Live: one stream for the whole store; rows on this page update in place.
  const signal = viewAbort.signal;
  const refresh = debounce(async () => {
    if (signal.aborted) return;
    renderCounts(await api("GET", storePath));
    await renderBatches(storeId, batchId);
  }, 700);
  // New files appear at the top of the first page (newest first): reload that page.
  const reloadFiles = debounce(async () => {
    if (!signal.aborted) rows = await renderFiles(storeId, filesQuery);
  }, 500);
  streamEvents(`/v1/events?vector_store_id=${encodeURIComponent(storeId)}`, (type, ev) => {
    const row = rows.get(ev.file_id);
    if (row && (row.job_id === ev.job_id || type === "job.created")) row.update(ev);
    else if (!row && type === "job.created" && !after
      && (!batchId || ev.file_batch_id === batchId)) {
      reloadFiles();
    }
    if (type === "job.created" || FINAL.has(ev.status)) refresh();
  }, signal);
}

function renderCounts(store) {
  const c = store.file_counts;
  const done = c.completed + c.failed + c.cancelled;
  $("#counts").replaceChildren(
    h("h1", {}, store.name || store.id, " ", badge(store.status)),
    h("p", { class: "muted" }, h("span", { class: "id" }, store.id), " · ", store.embedding_model,
      " · ", bytes(store.usage_bytes)),
    h("div", { class: "counts" },
    ["completed", "in_progress", "failed", "cancelled", "total"].map((k) =>
      h("div", { class: `count ${k}` }, h("b", {}, c[k]), h("span", {}, k.replace("_", " ")))),
    h("div", { class: "overall" }, progressBar(done, c.total))));
}

async function renderBatches(storeId, selected) {
  const path = `/v1/vector_stores/${storeId}/file_batches?limit=20`;
  const list = await api("GET", path);
  const rows = list.data.map((b) => h("tr", { class: b.id === selected ? "selected" : null },
    h("td", {}, h("a", { href: `#/stores/${storeId}?batch=${b.id}` }, h("span", { class: "id" }, b.id))),
    h("td", {}, badge(b.status)),
    h("td", { class: "num" }, `${b.file_counts.completed} / ${b.file_counts.total}`),
    h("td", { class: "num" }, b.file_counts.failed),
    h("td", {}, when(b.created_at)),
    h("td", {}, b.status === "in_progress" ? h("button", { class: "danger small",
      onclick: () => act("POST", `/v1/vector_stores/${storeId}/file_batches/${b.id}/cancel`) },
    "Cancel batch") : null)));
  $("#batches").replaceChildren(
    h("h2", {}, "Batches ", selected ? h("a", { class: "small-link", href: `#/stores/${storeId}` },
      "show all files") : null),
    rows.length ? table(["batch", "status", "completed", "failed", "created", ""], rows)
      : h("p", { class: "muted" }, "No batches."),
    jsonTwin("GET", path, list));
}

async function act(method, path) {
  try { await api(method, path); } catch (err) { flash(err.message); }
}

async function renderFiles(storeId, { batchId, status, after }) {
  const base = batchId ? `/v1/vector_stores/${storeId}/file_batches/${batchId}/files`
    : `/v1/vector_stores/${storeId}/files`;
  const query = new URLSearchParams({ limit: PAGE_SIZE });
  if (status) query.set("filter", status);
  if (after) query.set("after", after);
  const path = `${base}?${query}`;
  const list = await api("GET", path);
  const rows = new Map(list.data.map((f) => [f.id, new FileRow(f)]));

  const link = (changes) => {
    const p = new URLSearchParams();
    if (batchId) p.set("batch", batchId);
    const next = { status, ...changes };
    if (next.status) p.set("status", next.status);
    if (next.after) p.set("after", next.after);
    return `#/stores/${storeId}?${p}`;
  };
  const filter = h("select", { "aria-label": "status filter",
    onchange: (e) => { location.hash = link({ status: e.target.value, after: null }); } },
  ["", "in_progress", "completed", "failed", "cancelled"].map((s) =>
    h("option", { value: s, selected: s === status }, s ? s.replace("_", " ") : "all statuses")));
  const pager = h("div", { class: "pager" },
    after ? h("a", { href: link({ after: null }) }, "« first page") : null,
    list.has_more ? h("a", { href: link({ after: list.last_id }), class: "next" },
      `next ${PAGE_SIZE} »`) : null);

  $("#files").replaceChildren(
    h("h2", {}, batchId ? "Files in batch" : "Files", " ", filter),
    list.data.length ? table(["file", "status", "progress", "job", ""],
      [...rows.values()].map((r) => r.el), { class: "files" }) : h("p", { class: "muted" }, "No files."),
    pager,
    jsonTwin("GET", path, list));
  // Rows not yet completed show their job's stage, progress and error.
  await Promise.all([...rows.values()].filter((r) => r.file.status !== "completed")
    .map((r) => r.loadJob()));
  return rows;
}

class FileRow {
  constructor(file) {
    this.file = file;
    this.job_id = file.job_id;
    this.job = null;
    this.el = h("tr", { class: "file", dataset: { fileId: file.id } });
    this.render();
  }

  async loadJob() {
    if (!this.job_id) return;
    try {
      const job = await api("GET", `/v1/jobs/${this.job_id}`);
      if (job.id !== this.job_id) return;  // a retry replaced it meanwhile
      this.job = job;
      this.file.status = FILE_STATUS[job.status] || this.file.status;
      this.render();
    } catch { /* the row keeps what the list said */ }
  }

  update(ev) {
    this.job_id = ev.job_id;
    this.job = { ...(this.job || {}), ...ev, id: ev.job_id };
    this.file = { ...this.file, job_id: ev.job_id, status: FILE_STATUS[ev.status] || this.file.status };
    if (ev.status === "failed" && ev.error) {
      this.file.last_error = { code: ev.error.code, message: ev.error.message };
    } else if (ev.status !== "failed") {
      this.file.last_error = null;
    }
    this.render();
  }

  render() {
    const f = this.file;
    const job = this.job;
    const p = job?.progress;
    let progress;
    if (f.status === "completed") progress = progressBar(1, 1, "done");
    else if (f.status === "in_progress") {
      const label = job ? `${job.status === "queued" ? "queued" : job.stage || "starting"}` +
        (p?.total ? ` · ${p.done}/${p.total} ${p.unit || ""}` : "") : "queued";
      progress = progressBar(p?.done || 0, p?.total || 0, label);
    } else progress = h("span", { class: "muted" }, "—");

    const actions = [];
    if (f.status === "in_progress" && this.job_id) {
      actions.push(h("button", { class: "danger small", onclick: () => act("POST", `/v1/jobs/${this.job_id}/cancel`) }, "Cancel"));
    }
    if ((f.status === "failed" || f.status === "cancelled") && this.job_id) {
      actions.push(h("button", { class: "small retry", onclick: () => this.retry() }, "Retry"));
    }
    this.el.className = `file ${f.status}`;
    this.el.replaceChildren(
      h("td", {}, h("div", { class: "name" }, f.filename || f.id), h("div", { class: "id" }, f.id),
        f.status === "failed" ? errorBox(f.last_error, job) : null),
      h("td", {}, badge(f.status)),
      h("td", { class: "progress-cell" }, progress),
      h("td", {}, this.job_id ? h("a", { class: "id job-link", href: `#/jobs/${this.job_id}` }, this.job_id) : "—",
        job?.attempts ? h("div", { class: "muted" }, `attempt ${job.attempts}`) : null),
      h("td", { class: "actions" }, actions));
  }

  async retry() {
    try {
      const job = await api("POST", `/v1/jobs/${this.job_id}/retry`);
      this.update({ ...job, job_id: job.id });
    } catch (err) { flash(err.message); }
  }
}

function errorBox(lastError, job) {
  const err = job?.error;
  const where = err ? [
    err.stage && `stage ${err.stage}`,
    err.chunk_index !== undefined && `chunk ${err.chunk_index}`,
    err.batch !== undefined && `batch ${err.batch}`,
    err.code && `code ${err.code}`,
  ].filter(Boolean).join(" · ") : "";
  return h("div", { class: "error-box" },
    h("div", { class: "message" }, lastError?.message || err?.message || "failed"),
    where ? h("div", { class: "where" }, where) : null,
    err && lastError && err.message !== lastError.message
      ? h("div", { class: "detail" }, err.message) : null);
}

function progressBar(done, total, label) {
  const pct = total ? Math.min(100, Math.round((100 * done) / total)) : 0;
  return h("div", { class: "bar", role: "progressbar", "aria-valuenow": pct,
    "aria-valuemin": 0, "aria-valuemax": 100 },
  // Set through the CSSOM: the page's CSP allows no inline style attributes.
  h("div", { class: "fill" }, (el) => { el.style.width = `${pct}%`; }),
  h("span", { class: "label" }, label ?? `${done} / ${total}`));
}

// "p. 3–4 · OCR 91" from a hit's chunk attributes (page, page_end, ocr, ocr_confidence).
function hitPlace(a) {
  if (!a || typeof a.page !== "number") return null;
  const pages = a.page_end && a.page_end !== a.page ? `p. ${a.page}–${a.page_end}` : `p. ${a.page}`;
  const ocr = a.ocr ? ` · OCR${typeof a.ocr_confidence === "number" ? ` ${a.ocr_confidence}` : ""}` : "";
  return h("span", { class: "muted place" }, ` ${pages}${ocr} `);
}

// One line on what OCR did for a job's file (result.ocr), low-confidence pages named.
function ocrSummary(ocr) {
  if (!ocr) return null;
  const low = ocr.low_confidence_pages.map((p) => `${p.page} (${p.confidence})`).join(", ");
  return `${ocr.pages} page(s) with ${ocr.languages}, mean confidence ${ocr.mean_confidence ?? "—"}` +
    (ocr.rotated_pages.length ? `, ${ocr.rotated_pages.length} turned upright` : "") +
    (low ? `; not indexed, confidence below ${ocr.min_confidence}: page ${low}` : "");
}

function searchBox(storeId) {
  const results = h("div", { class: "results" });
  const input = h("input", { type: "search", name: "q", placeholder: "Search this store…",
    "aria-label": "search query" });
  const form = h("form", { class: "search", onsubmit: async (e) => {
    e.preventDefault();
    const q = input.value.trim();
    if (!q) { results.replaceChildren(); return; }
    const path = `/v1/vector_stores/${storeId}/search`;
    try {
      const res = await api("POST", path, { query: q, max_num_results: 5 });
      const hits = res.data.map((r) => h("div", { class: "hit" },
        h("div", {}, h("b", {}, r.filename), hitPlace(r.attributes),
          h("span", { class: "score" }, r.score.toFixed(3))),
        h("p", {}, r.content.map((c) => c.text).join(" ").slice(0, 240))));
      results.replaceChildren(
        ...(hits.length ? hits : [h("p", { class: "muted" }, "No results.")]),
        jsonTwin("POST", path, res));
    } catch (err) { flash(err.message); }
  } }, input, h("button", { type: "submit" }, "Search"));
  return h("section", { id: "search" }, form, results);
}

async function showJob(jobId) {
  const path = `/v1/jobs/${jobId}`;
  const job = await api("GET", path);
  crumbs({ label: "vector stores", href: "#/" },
    ...(job.vector_store_id ? [{ label: job.vector_store_id, href: `#/stores/${job.vector_store_id}` }] : []),
    { label: job.id });
  const dl = (pairs) => h("dl", {}, pairs.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v ?? "—")]));
  $("#view").replaceChildren(
    h("h1", {}, "Job ", h("span", { class: "id" }, job.id), " ", badge(job.status)),
    dl([["kind", job.kind], ["stage", job.stage], ["progress",
      job.progress.total ? `${job.progress.done} / ${job.progress.total} ${job.progress.unit}` : null],
    ["attempts", job.attempts], ["worker", job.worker], ["created", when(job.created_at)],
    ["started", when(job.started_at)], ["finished", when(job.finished_at)],
    ["duration", job.duration_s !== null ? `${job.duration_s} s` : null],
    ["stage durations", Object.entries(job.stage_durations).map(([k, v]) => `${k} ${v} s`).join(", ")],
    ["OCR", ocrSummary(job.result?.ocr)],
    ["file", job.file_id], ["file batch", job.file_batch_id], ["batch", job.batch_id]]),
    job.error ? errorBox(null, job) : null,
    h("h2", {}, "Attempts"),
    table(["#", "worker", "outcome", "error"], job.attempt_log.map((a) => h("tr", {},
      h("td", {}, a.attempt), h("td", {}, a.worker || "—"), h("td", {}, a.outcome),
      h("td", {}, a.error?.message || "—")))),
    h("p", {}, ["failed", "cancelled"].includes(job.status)
      ? h("button", { class: "retry", onclick: async () => {
        try { const j = await api("POST", `${path}/retry`); location.hash = `#/jobs/${j.id}`; } catch (err) { flash(err.message); }
      } }, "Retry as a new job") : null),
    jsonTwin("GET", path, job));
  if (!FINAL.has(job.status)) {
    const refresh = debounce(() => route(), 300);
    streamEvents(`${path}/events`, () => refresh(), viewAbort.signal);
  }
}

function debounce(fn, ms) {
  let t = null;
  return () => { clearTimeout(t); t = setTimeout(fn, ms); };
}

// ---- routing and key ------------------------------------------------------------------

// The address bar is input from whoever wrote the link: only ids of the shapes the server
// makes (src/prepshelf/ids.py) reach an API path; anything else is an unknown address.
const ID = {
  store: /^vs_[A-Za-z0-9]{1,64}$/,
  job: /^job_[A-Za-z0-9]{1,64}$/,
  batch: /^vsfb_[A-Za-z0-9]{1,64}$/,
  file: /^file-[A-Za-z0-9]{1,64}$/,
  eval: /^eval_[A-Za-z0-9]{1,64}$/,
  evalRun: /^evalrun_[A-Za-z0-9]{1,64}$/,
  schedule: /^sched_[A-Za-z0-9]{1,64}$/,
  criterion: /^[A-Za-z0-9_.:-]{1,64}$/,  // testing-criterion names, as the API accepts them
};
const STATUS_FILTERS = new Set(["", "in_progress", "completed", "failed", "cancelled"]);
// The query parameters each view takes, each with the only shape its value may have.
const VIEW_PARAMS = {
  store: { batch: ID.batch, after: ID.file, status: { test: (v) => STATUS_FILTERS.has(v) } },
  evals: { criterion: ID.criterion, base: ID.evalRun, run: ID.evalRun },
};
// Addresses: [first part, shape of the id (null = a list without id), view].
const VIEWS = [
  ["stores", ID.store, "store"], ["jobs", ID.job, "job"],
  ["evals", null, "evals"], ["evals", ID.eval, "evals"],
  ["schedules", null, "schedules"], ["schedules", ID.schedule, "schedules"],
];

// Only addresses of known shape are followed: anything else (`..`, other ids, unknown
// parameters) is "Unknown address" and calls no API.
function parseRoute(hash) {
  const [path, qs, ...rest] = hash.replace(/^#/, "").split("?");
  if (rest.length) return null;
  const parts = path.split("/").filter(Boolean);
  let params;
  try { params = new URLSearchParams(qs || ""); } catch { return null; }
  let id;
  try { id = parts[1] === undefined ? null : decodeURIComponent(parts[1]); } catch { return null; }
  let view = parts.length === 0 ? "stores" : null;
  for (const [first, shape, name] of VIEWS) {
    if (parts[0] !== first) continue;
    if ((shape === null && parts.length === 1) || (shape !== null && parts.length === 2 && shape.test(id))) {
      view = name;
    }
  }
  if (view === null) return null;
  const allowed = VIEW_PARAMS[view] || {};
  for (const [key, value] of params) {
    if (!Object.hasOwn(allowed, key) || !allowed[key].test(value)) return null;
  }
  return { view, id, params };
}

async function route() {
  viewAbort.abort();
  viewAbort = new AbortController();
  setLive(false);
  if (!auth.key) { askKey(); return; }
  const where = parseRoute(location.hash);
  try {
    if (where === null) {
      crumbs({ label: "vector stores", href: "#/" });
      $("#view").replaceChildren(h("p", { class: "error" }, "Unknown address."));
    } else if (where.view === "store") await showStore(where.id, where.params);
    else if (where.view === "job") await showJob(where.id);
    else if (where.view === "evals" || where.view === "schedules") {
      await window.prepshelfViews[where.view](where.id ? [where.id] : [], where.params);
    }
    else await showStores();
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) {
      $("#view").replaceChildren(h("p", { class: "error" }, err.message));
    }
  }
}

function askKey(message) {
  const dialog = $("#key-dialog");
  $("#key-error").hidden = !message;
  $("#key-error").textContent = message || "";
  $("#sign-out").hidden = true;
  if (!dialog.open) dialog.showModal();
}

$("#key-form").addEventListener("submit", () => {
  auth.key = $("#api-key").value.trim();
  $("#api-key").value = "";
  $("#sign-out").hidden = false;
  route();
});
$("#sign-out").addEventListener("click", () => { auth.key = null; route(); });
$("#key-dialog").addEventListener("cancel", (e) => e.preventDefault());  // a key is needed
window.addEventListener("hashchange", route);
$("#sign-out").hidden = !auth.key;
route();
