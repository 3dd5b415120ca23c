// prepshelf dashboard: evaluation history (a chart of runs over time, the per-question diff of
// two runs) and schedules. Plain JS and SVG built with DOM calls: no inline script or style,
// so it runs under a strict Content-Security-Policy. Loaded before app.js, whose helpers
// (h, api, crumbs, table, jsonTwin, badge, when, flash, streamEvents) it calls at view time;
// app.js's router hands it the #/evals and #/schedules views through window.prepshelfViews.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const SERIES = [
  ["hit_at_1", "hit@1"], ["hit_at_3", "hit@3"], ["hit_at_10", "hit@10"],
  ["mrr", "MRR"], ["ndcg_at_10", "nDCG@10"],
];
const RUN_ACTIVE = new Set(["queued", "in_progress"]);
const JOB_FINAL = new Set(["succeeded", "failed", "cancelled"]);

window.prepshelfViews = Object.assign(window.prepshelfViews || {}, {
  evals: (parts, params) => (parts[0] ? showEval(decodeURIComponent(parts[0]), params) : showEvals()),
  schedules: (parts) => (parts[0] ? showSchedule(decodeURIComponent(parts[0])) : showSchedules()),
});

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== null && v !== undefined) el.setAttribute(k, v);
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  return el;
}

const fixed = (v, digits = 3) => (v === null || v === undefined ? "—" : Number(v).toFixed(digits));
const ms = (v) => (v === null || v === undefined ? "—" : `${Number(v).toFixed(1)} ms`);

// ---- evals ---------------------------------------------------------------------------------

async function showEvals() {
  crumbs({ label: "evals" });
  const path = "/v1/evals?limit=100";
  const list = await api("GET", path);
  const rows = list.data.map((e) => h("tr", {},
    h("td", {}, h("a", { href: `#/evals/${e.id}` }, e.name || e.id), h("div", { class: "id" }, e.id)),
    h("td", { class: "num" }, e.data_source_config.question_count),
    h("td", {}, e.testing_criteria.map((c) => c.name).join(", ")),
    h("td", {}, e.vector_store_id ? h("a", { href: `#/stores/${e.vector_store_id}` },
      h("span", { class: "id" }, e.vector_store_id)) : "—"),
    h("td", {}, when(e.created_at))));
  $("#view").replaceChildren(
    h("h1", {}, "Evaluations"),
    rows.length ? table(["eval", "questions", "testing criteria", "vector store", "created"], rows)
      : h("p", { class: "muted" }, "No evals yet: POST /v1/evals with an eval set."),
    jsonTwin("GET", path, list));
}

async function showEval(evalId, params) {
  crumbs({ label: "evals", href: "#/evals" }, { label: evalId });
  const evalPath = `/v1/evals/${evalId}`;
  const runsPath = `${evalPath}/runs?limit=100&order=desc`;
  const [evaluation, list] = await Promise.all([api("GET", evalPath), api("GET", runsPath)]);
  const runs = list.data.slice().reverse();  // oldest first, as the chart reads
  const done = runs.filter((r) => r.status === "completed");
  const names = evaluation.testing_criteria.map((c) => c.name);
  const state = {
    criterion: names.includes(params.get("criterion")) ? params.get("criterion") : names[0],
    base: params.get("base") || done.at(-2)?.id || null,
    run: params.get("run") || done.at(-1)?.id || null,
  };
  const chartBox = h("section", { class: "eval-chart", id: "eval-chart" });
  const runsBox = h("section", { id: "eval-runs" });
  const diffBox = h("section", { id: "eval-diff" });
  const picker = h("select", { "aria-label": "testing criterion", id: "criterion",
    onchange: (e) => { state.criterion = e.target.value; render(); } },
  names.map((n) => h("option", { value: n, selected: n === state.criterion }, n)));
  const runButton = h("button", { type: "button", id: "run-eval", onclick: async () => {
    try { await api("POST", `${evalPath}/runs`, {}); route(); } catch (err) { flash(err.message); }
  } }, "Run now");

  $("#view").replaceChildren(
    h("h1", {}, evaluation.name || evaluation.id),
    h("p", { class: "muted" }, h("span", { class: "id" }, evaluation.id), " · ",
      `${evaluation.data_source_config.question_count} questions`, " · store ",
      evaluation.vector_store_id ? h("a", { href: `#/stores/${evaluation.vector_store_id}` },
        evaluation.vector_store_id) : "—"),
    h("div", { class: "eval-toolbar" }, h("label", {}, "Testing criterion ", picker), runButton),
    chartBox, runsBox, diffBox,
    jsonTwin("GET", evalPath, evaluation),
    jsonTwin("GET", runsPath, list));

  function render() {
    chartBox.replaceChildren(h("h2", {}, "Runs over time"), historyChart(done, state.criterion));
    runsBox.replaceChildren(h("h2", {}, "Runs"), runsTable(runs, state.criterion));
    renderDiff(diffBox, evalPath, done, state);
  }
  render();

  // A run in progress: follow its job and show the result when it ends.
  const active = runs.find((r) => RUN_ACTIVE.has(r.status) && r.job_id);
  if (active) {
    const refresh = debounce(() => route(), 300);
    streamEvents(`/v1/jobs/${active.job_id}/events`, (type, ev) => {
      if (JOB_FINAL.has(ev.status)) refresh();
    }, viewAbort.signal);
  }
}

function metricsOf(run, criterion) {
  return run.per_testing_criteria_results.find((r) => r.testing_criteria === criterion);
}

// One line per metric over the completed runs, evenly spaced in run order; a dashed line marks
// a run whose store contents or search settings changed since the run before.
function historyChart(runs, criterion) {
  if (!runs.length) return h("p", { class: "muted" }, "No completed run yet.");
  const W = 860, H = 300, L = 48, R = 40, T = 34, B = 40;
  const x = (i) => (runs.length === 1 ? L + (W - L - R) / 2 : L + (i * (W - L - R)) / (runs.length - 1));
  const y = (v) => T + (1 - v) * (H - T - B);
  const span = runs.at(-1).created_at - runs[0].created_at;
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img",
    "aria-label": `hit@k, MRR and nDCG@10 of ${runs.length} runs (${criterion})` });
  for (const v of [0, 0.25, 0.5, 0.75, 1]) {
    chart.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }),
      svg("text", { x: L - 8, y: y(v) + 4, class: "axis", "text-anchor": "end" }, v.toFixed(2)));
  }
  runs.forEach((run, i) => {
    const marks = [run.changes.store && "store", run.changes.settings && "settings"].filter(Boolean);
    const right = x(i) > W / 2;  // labels on the inner side of the line
    marks.forEach((kind, k) => chart.append(
      svg("line", { x1: x(i), x2: x(i), y1: T - 6, y2: H - B, class: `mark ${kind}` },
        svg("title", {}, `${kind} changed before this run`)),
      svg("text", { x: x(i) + (right ? -4 : 4), y: T - 18 + 12 * k, class: `mark-label ${kind}`,
        "text-anchor": right ? "end" : "start" }, `${kind} changed`)));
    const step = Math.max(1, Math.ceil(runs.length / 8));
    if (i % step === 0 || i === runs.length - 1) {
      chart.append(svg("text", { x: x(i), y: H - B + 18, class: "axis", "text-anchor": "middle" },
        tick(run.created_at, span)));
    }
  });
  SERIES.forEach(([key, label], n) => {
    const width = 2 * (SERIES.length - n) + 1;  // wider first: lines that coincide stay visible
    const points = runs.map((run, i) => [i, metricsOf(run, criterion)?.metrics[key]])
      .filter(([, v]) => v !== undefined && v !== null);
    chart.append(svg("polyline", { class: `series ${key}`, "stroke-width": width,
      points: points.map(([i, v]) => `${x(i)},${y(v)}`).join(" ") }));
    for (const [i, v] of points) {
      const run = runs[i];
      chart.append(svg("circle", { cx: x(i), cy: y(v), r: width / 2 + 2.5, class: `point ${key}`,
        "data-run": run.id },
      svg("title", {}, `${run.name || run.id} · ${when(run.created_at)}\n${label} ${fixed(v)}`)));
    }
  });
  const legend = h("div", { class: "legend" },
    SERIES.map(([key, label]) => h("span", { class: `key ${key}` }, label)),
    h("span", { class: "key mark-store" }, "store changed"),
    h("span", { class: "key mark-settings" }, "settings changed"));
  return h("div", {}, chart, legend);
}

// Dates on the axis; times of day when every run is from the last two days.
function tick(t, span) {
  const d = new Date(t * 1000);
  return span < 2 * 86400 ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : d.toLocaleDateString([], { month: "short", day: "numeric" });
}

function runsTable(runs, criterion) {
  const rows = runs.slice().reverse().map((run) => {
    const m = metricsOf(run, criterion);
    const changed = [run.changes.store && "store", run.changes.settings && "settings"].filter(Boolean);
    return h("tr", { class: "eval-run", dataset: { runId: run.id } },
      h("td", {}, h("div", {}, run.name || "—"), h("div", { class: "id" }, run.id),
        run.job_id ? h("a", { class: "id", href: `#/jobs/${run.job_id}` }, run.job_id) : null),
      h("td", {}, badge(run.status)),
      ...SERIES.map(([key]) => h("td", { class: "num" }, fixed(m?.metrics[key]))),
      h("td", { class: "num" }, m ? `${m.passed}/${m.passed + m.failed + m.errored}` : "—"),
      h("td", { class: "num" }, ms(m?.latency_ms.p50)),
      h("td", {}, changed.length ? changed.join(", ") : "—"),
      h("td", {}, when(run.created_at)));
  });
  return rows.length ? table(["run", "status", ...SERIES.map(([, l]) => l), "passed", "p50",
    "changed", "created"], rows, { class: "eval-runs" })
    : h("p", { class: "muted" }, "No runs yet.");
}

async function renderDiff(box, evalPath, runs, state) {
  const choose = (id, key) => h("select", { id, "aria-label": key === "base" ? "base run" : "compared run",
    onchange: (e) => { state[key] = e.target.value; renderDiff(box, evalPath, runs, state); } },
  runs.map((r) => h("option", { value: r.id, selected: r.id === state[key] },
    `${r.name || r.id} · ${when(r.created_at)}`)));
  const head = h("h2", {}, "Per-question difference");
  if (runs.length < 2 || !state.base || !state.run) {
    box.replaceChildren(head, h("p", { class: "muted" }, "Two completed runs are needed."));
    return;
  }
  const path = `${evalPath}/runs/${state.run}/diff?base_run_id=${state.base}`;
  let diff;
  try { diff = await api("GET", path); } catch (err) { box.replaceChildren(head, h("p", { class: "error" }, err.message)); return; }
  const rows = diff.data.filter((d) => d.testing_criteria === state.criterion).map((d) => h("tr",
    { class: `diff ${d.change}` },
    h("td", { class: "num" }, d.datasource_item_id),
    h("td", {}, d.question),
    h("td", {}, h("span", { class: `badge change-${d.change}` }, d.change)),
    h("td", { class: "num" }, d.base_error ? "error" : d.base_rank ?? "—"),
    h("td", { class: "num" }, d.error ? "error" : d.rank ?? "—"),
    h("td", {}, d.base_top_hit || "—"),
    h("td", {}, d.top_hit || "—")));
  const counts = { worse: 0, better: 0, same: 0 };
  for (const d of diff.data) if (d.testing_criteria === state.criterion) counts[d.change] += 1;
  box.replaceChildren(head,
    h("div", { class: "eval-toolbar" }, h("label", {}, "Base ", choose("diff-base", "base")),
      h("label", {}, "Run ", choose("diff-run", "run"))),
    h("p", { class: "diff-counts" }, `${counts.worse} worse · ${counts.better} better · ${counts.same} same`),
    rows.length ? table(["#", "question", "change", "rank before", "rank after", "top hit before",
      "top hit after"], rows, { class: "eval-diff" }) : h("p", { class: "muted" }, "No questions to compare."),
    jsonTwin("GET", path, diff));
}

// ---- schedules -----------------------------------------------------------------------------

function scheduleActions(s) {
  const call = (verb) => async () => {
    try { await api("POST", `/v1/schedules/${s.id}/${verb}`); route(); } catch (err) { flash(err.message); }
  };
  return [
    s.status === "active"
      ? h("button", { class: "small", type: "button", onclick: call("pause") }, "Pause")
      : h("button", { class: "small", type: "button", onclick: call("resume") }, "Resume"),
    h("button", { class: "small", type: "button", onclick: call("run") }, "Run now"),
  ];
}

async function showSchedules() {
  crumbs({ label: "schedules" });
  const path = "/v1/schedules?limit=100";
  const list = await api("GET", path);
  const rows = list.data.map((s) => h("tr", { class: "schedule", dataset: { scheduleId: s.id } },
    h("td", {}, h("a", { href: `#/schedules/${s.id}` }, s.name || s.id), h("div", { class: "id" }, s.id)),
    h("td", {}, s.kind.replace("_", " ")),
    h("td", {}, h("code", {}, s.cron), h("div", { class: "muted" }, s.timezone)),
    h("td", {}, badge(s.status)),
    h("td", {}, when(s.next_run_at)),
    h("td", {}, when(s.last_run_at)),
    h("td", { class: "actions" }, scheduleActions(s))));
  $("#view").replaceChildren(
    h("h1", {}, "Schedules"),
    rows.length ? table(["schedule", "kind", "cron", "status", "next run", "last run", ""], rows)
      : h("p", { class: "muted" }, "No schedules yet: POST /v1/schedules."),
    jsonTwin("GET", path, list));
}

function runSummary(job) {
  const r = job.result;
  if (job.kind === "source_sync" && r?.counts) {
    return Object.entries(r.counts).map(([k, v]) => `${k} ${v}`).join(" · ");
  }
  if (job.kind === "eval_run" && job.eval_run_id && job.params?.eval_id) {
    return h("a", { href: `#/evals/${job.params.eval_id}` }, "eval run");
  }
  return job.error?.message || "—";
}

async function showSchedule(scheduleId) {
  crumbs({ label: "schedules", href: "#/schedules" }, { label: scheduleId });
  const path = `/v1/schedules/${scheduleId}`;
  const runsPath = `${path}/runs?limit=50`;
  const [s, runs] = await Promise.all([api("GET", path), api("GET", runsPath)]);
  const dl = (pairs) => h("dl", {}, pairs.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v ?? "—")]));
  const rows = runs.data.map((j) => h("tr", { class: "schedule-run" },
    h("td", {}, h("a", { class: "id", href: `#/jobs/${j.id}` }, j.id)),
    h("td", {}, badge(j.status)),
    h("td", {}, j.scheduled_for ? when(j.scheduled_for) : "run now"),
    h("td", { class: "num" }, j.params?.catch_up?.due_times ?? "—"),
    h("td", {}, when(j.started_at)),
    h("td", {}, j.duration_s !== null ? `${j.duration_s} s` : j.stage || "—"),
    h("td", {}, runSummary(j))));
  $("#view").replaceChildren(
    h("h1", {}, s.name || s.id, " ", badge(s.status)),
    dl([["kind", s.kind], ["cron", h("code", {}, s.cron)], ["time zone", s.timezone],
      ["next run", when(s.next_run_at)], ["last run", when(s.last_run_at)],
      ["catch-up", "one run for all due times missed"],
      ["params", h("code", {}, JSON.stringify(s.params))]]),
    h("p", { class: "actions" }, scheduleActions(s)),
    h("h2", {}, "Runs"),
    rows.length ? table(["job", "status", "due", "due times", "started", "took", "result"], rows)
      : h("p", { class: "muted" }, "No runs yet."),
    jsonTwin("GET", path, s),
    jsonTwin("GET", runsPath, runs));
}
