// agentlog console: one page on the gateway's JSON API. No framework, no build step, nothing
// fetched from anywhere but the gateway that served it. The API key lives in sessionStorage
// (this tab only) and travels in the Authorization header, never in an address; every text
// from the API is put in the page as text (no innerHTML), so nothing a run holds runs here.
"use strict";

const KEY_SLOT = "agentlog.key";
const TERMINAL = new Set(["RunCompleted", "RunFailed", "RunCancelled"]);
const STATUS_LABEL = {
  running: "running", awaiting_approval: "waits for a person", completed: "completed",
  failed: "failed", cancelled: "cancelled", unknown: "unknown",
};
const DECISIONS = new Set(["ToolApproved", "ToolRejected", "ApprovalRequested"]);
const TYPE_TONE = {
  ToolRejected: "bad", PlanRejected: "bad", RunFailed: "bad", BudgetExceeded: "bad", RunTimedOut: "bad",
  RunCancelled: "bad", ApprovalDenied: "bad", ApprovalExpired: "bad", ApprovalRequested: "wait",
  StepTimedOut: "wait", RequestRetried: "wait", ToolApproved: "ok", ApprovalGranted: "ok", RunCompleted: "ok",
};
const PALETTE = ["#1f77b4", "#e8710a", "#2ca02c", "#9467bd", "#d62728", "#17becf", "#8c564b", "#bcbd22"];

let me = null;            // the signed-in key: {key_id, name, tenant_id, roles}
let cleanup = [];         // what the current view must stop when another one opens
const main = document.getElementById("main");

// ---------------------------------------------------------------- small helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) el.setAttribute(name, String(value));
  for (const child of children) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return el;
}

function badge(status) {
  return h("span", { class: `badge s-${status}` }, STATUS_LABEL[status] || status);
}

function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return h("time", { datetime: d.toISOString(), title: d.toISOString().replace(".000", "") + " (UTC)" },
           d.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
                                  second: "2-digit" }));
}

function ms(value) {
  if (value === null || value === undefined) return "–";
  if (value < 1000) return `${Math.round(value)} ms`;
  if (value < 60000) return `${(value / 1000).toFixed(1)} s`;
  const m = Math.floor(value / 60000);
  return m < 60 ? `${m} min ${Math.round((value % 60000) / 1000)} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

function usd(value) {
  if (value === null || value === undefined) return "–";
  return value >= 1 ? `$${value.toFixed(2)}` : `$${value.toFixed(4)}`;
}

function until(iso) {
  const left = new Date(iso).getTime() - Date.now();
  if (left <= 0) return "expired";
  return `expires in ${ms(left)}`;
}

function parsed(text) {
  try { return JSON.parse(text); } catch { return { input: text }; }
}

function pretty(value) {
  if (typeof value === "string") {
    try { return JSON.stringify(JSON.parse(value), null, 2); } catch { return value; }
  }
  return JSON.stringify(value, null, 2);
}

function showBanner(text) {
  const banner = document.getElementById("banner");
  banner.textContent = text || "";
  banner.hidden = !text;
}

class ApiError extends Error {
  constructor(status, message, retryAfter) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

async function api(path, options = {}, key = sessionStorage.getItem(KEY_SLOT)) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  if (key) headers.Authorization = `Bearer ${key}`;
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { ...options, headers, body: options.body && JSON.stringify(options.body),
                                   cache: "no-store" });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "The gateway does not answer (is agentlog up?).");
  }
  return answer(response);
}

async function answer(response) {
  if (response.ok && !(response.headers.get("content-type") || "").includes("json")) return response;
  let body = null;
  try { body = await response.json(); } catch { /* not JSON: say so below */ }
  if (response.ok) return body;
  const message = body && body.error ? body.error.message : `HTTP ${response.status}`;
  if (response.status === 401 && sessionStorage.getItem(KEY_SLOT)) {
    sessionStorage.removeItem(KEY_SLOT);
    me = null;
    setTimeout(route, 0);
    showBanner(`Signed out: the gateway refused the key (${message}).`);
  }
  throw new ApiError(response.status, explain(response.status, message), response.headers.get("Retry-After"));
}

function explain(status, message) {
  if (status === 503) return `The event log or the analytics store does not answer: ${message}. Try again shortly.`;
  if (status === 403) return `This key may not do that: ${message}.`;
  return message;
}

function failure(err, where) {
  return h("p", { class: "message error", role: "alert" }, `${where}: ${err.message}`);
}

function every(ms, fn) {
  const id = setInterval(() => { if (!document.hidden) fn(); }, ms);
  cleanup.push(() => clearInterval(id));
}

// ---------------------------------------------------------------- sign in and routing

function renderSignIn(error) {
  document.getElementById("nav").hidden = true;
  document.getElementById("who").hidden = true;
  main.replaceChildren(document.getElementById("signin-template").content.cloneNode(true));
  const form = document.getElementById("signin-form");
  const input = document.getElementById("key");
  const shown = document.getElementById("signin-error");
  if (error) { shown.textContent = error; shown.hidden = false; }
  input.focus();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    shown.hidden = true;
    try {
      me = await api("/v1/whoami", {}, key);
    } catch (err) {
      shown.textContent = err.status === 401 ? `The gateway refused this key: ${err.message}.` : err.message;
      shown.hidden = false;
      input.select();
      return;
    }
    sessionStorage.setItem(KEY_SLOT, key);
    input.value = "";
    showBanner("");
    if (!location.hash || location.hash === "#/") location.hash = "#/runs";
    else route();
  });
}

async function ensureSignedIn() {
  const key = sessionStorage.getItem(KEY_SLOT);
  if (!key) return false;
  if (me) return true;
  try {
    me = await api("/v1/whoami", {}, key);
    return true;
  } catch (err) {
    if (err.status === 401) return false;
    throw err;
  }
}

function identity() {
  return `${me.name} (key ${me.key_id})`;
}

async function route() {
  for (const stop of cleanup.splice(0)) stop();
  let signed;
  try {
    signed = await ensureSignedIn();
  } catch (err) {
    main.replaceChildren(failure(err, "Cannot reach the gateway"));
    return;
  }
  if (!signed) { renderSignIn(); return; }
  document.getElementById("nav").hidden = false;
  document.getElementById("who").hidden = false;
  document.getElementById("identity").textContent = `${me.name} · tenant ${me.tenant_id}`;
  const [path, query] = (location.hash.slice(1) || "/runs").split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean);
  const view = parts[0] || "runs";
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.view === (view === "run" ? "runs" : view)) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  refreshPending();
  every(10000, refreshPending);
  if (view === "run" && parts[1]) return runView(decodeURIComponent(parts.slice(1).join("/")));
  if (view === "approvals") return approvalsView();
  if (view === "metrics") return metricsView(params);
  return runsView(params);
}

async function refreshPending() {
  const count = document.getElementById("pending");
  try {
    const waiting = await api("/v1/approvals");
    count.textContent = String(waiting.length);
    count.hidden = waiting.length === 0;
    count.setAttribute("aria-label", `${waiting.length} waiting`);
  } catch {
    count.hidden = true;
  }
}

// ---------------------------------------------------------------- runs

function runsView(params) {
  const filters = { status: params.get("status") || "", route: params.get("route") || "", q: params.get("q") || "" };
  const cursors = [null];  // the `before` of each page seen, to go back to newer ones
  let page = 0;
  const body = h("tbody");
  const table = h("div", { class: "table-wrap" }, h("table", { class: "runs" },
    h("caption", { class: "visually-hidden" }, "Runs, newest first"),
    h("thead", {}, h("tr", {},
      h("th", { scope: "col" }, "Started"), h("th", { scope: "col" }, "Status"),
      h("th", { scope: "col" }, "Request"), h("th", { scope: "col", class: "hide-narrow" }, "Route"),
      h("th", { scope: "col", class: "num" }, "Tool calls"), h("th", { scope: "col", class: "num" }, "Cost"),
      h("th", { scope: "col", class: "num" }, "Duration"))),
    body));
  const note = h("div", { "aria-live": "polite" });
  const newer = h("button", { type: "button", onclick: () => { page -= 1; load(); } }, "← Newer");
  const older = h("button", { type: "button", onclick: () => { page += 1; load(); } }, "Older →");
  const where = h("span", { class: "muted" });
  const status = h("select", { id: "f-status", name: "status" },
    h("option", { value: "" }, "any"),
    ...Object.keys(STATUS_LABEL).filter((k) => k !== "unknown")
      .map((k) => h("option", { value: k, selected: filters.status === k }, STATUS_LABEL[k])));
  const routeInput = h("input", { id: "f-route", name: "route", value: filters.route, size: 12, placeholder: "any" });
  const text = h("input", { id: "f-q", name: "q", type: "search", value: filters.q, size: 34,
                            placeholder: "words of the request, or a run id" });
  const form = h("form", { class: "filters", role: "search", onsubmit: (event) => {
      event.preventDefault();
      const next = new URLSearchParams();
      if (status.value) next.set("status", status.value);
      if (routeInput.value.trim()) next.set("route", routeInput.value.trim());
      if (text.value.trim()) next.set("q", text.value.trim());
      location.hash = `#/runs${next.toString() ? "?" + next : ""}`;
    } },
    h("div", {}, h("label", { for: "f-status" }, "Status"), status),
    h("div", {}, h("label", { for: "f-route" }, "Route"), routeInput),
    h("div", {}, h("label", { for: "f-q" }, "Text"), text),
    h("button", { type: "submit", class: "primary" }, "Filter"));
  main.replaceChildren(h("h1", {}, "Runs"), form, note, table, h("div", { class: "pager" }, newer, older, where));

  async function load(quiet) {
    const q = new URLSearchParams({ limit: "25" });
    for (const [k, v] of Object.entries(filters)) if (v) q.set(k, v);
    if (cursors[page]) q.set("before", cursors[page]);
    let result;
    try {
      result = await api(`/v1/runs?${q}`);
    } catch (err) {
      if (!quiet) note.replaceChildren(failure(err, "Runs not listed"));
      return;
    }
    note.replaceChildren();
    cursors[page + 1] = result.next;
    newer.disabled = page === 0;
    older.disabled = !result.next;
    where.textContent = result.runs.length ? `page ${page + 1}` : "";
    body.replaceChildren(...result.runs.map(runRow));
    if (!result.runs.length) {
      const filtered = Object.values(filters).some(Boolean);
      body.append(h("tr", {}, h("td", { colspan: 7, class: "empty" },
        filtered ? "No run matches these filters." : "No runs yet. Submit one (agentlog submit …, or POST /v1/runs).")));
    }
  }
  load();
  every(5000, () => { if (page === 0) load(true); });
}

function runRow(run) {
  const live = run.status === "running" || run.status === "awaiting_approval";
  const duration = run.duration_ms ?? (live ? Date.now() - new Date(run.started).getTime() : null);
  return h("tr", { "data-run": run.run_id },
    h("td", { class: "when" }, when(run.started)),
    h("td", {}, badge(run.status)),
    h("td", { class: "request" }, h("a", { href: `#/run/${encodeURIComponent(run.run_id)}` }, run.text || run.run_id),
      h("div", { class: "muted mono" }, run.run_id)),
    h("td", { class: "hide-narrow" }, run.route),
    h("td", { class: "num", "data-label": "tool calls" }, run.tool_calls),
    h("td", { class: "num", "data-label": "cost" }, live ? "–" : usd(run.cost_usd)),
    h("td", { class: "num", "data-label": "duration" }, live ? `${ms(duration)} so far` : ms(duration)));
}

// ---------------------------------------------------------------- one run's timeline

function statusOf(events) {
  let status = events.length ? "running" : "unknown";
  for (const e of events) {
    if (e.event_type === "RunCompleted") status = "completed";
    else if (e.event_type === "RunFailed") status = "failed";
    else if (e.event_type === "RunCancelled") status = "cancelled";
    else if (e.event_type === "ApprovalRequested") status = "awaiting_approval";
    else if (["ApprovalGranted", "ApprovalDenied", "ApprovalExpired"].includes(e.event_type)) status = "running";
  }
  return status;
}

function runView(runId) {
  const events = [];
  const seen = new Set();
  const title = h("h1", {}, "Run ", h("span", { class: "mono" }, runId));
  const statusSlot = h("span");
  const liveSlot = h("span", { class: "live", hidden: true });
  const request = h("p", { class: "request" });
  const facts = h("dl", { class: "facts" });
  const parked = h("div");
  const plan = h("section", { class: "panel plan", hidden: true, "aria-labelledby": "plan-title" });
  const reply = h("section", { class: "panel", hidden: true, "aria-labelledby": "answer-title" });
  const rows = h("tbody");
  const note = h("div", { "aria-live": "polite" });
  const timeline = h("section", { "aria-labelledby": "timeline-title" },
    h("h2", { id: "timeline-title" }, "Timeline"),
    h("div", { class: "table-wrap" }, h("table", { class: "timeline", "aria-labelledby": "timeline-title" },
      h("thead", {}, h("tr", {},
        h("th", { scope: "col", class: "num" }, "seq"), h("th", { scope: "col", class: "num" }, "+time"),
        h("th", { scope: "col", class: "hide-narrow" }, "actor"), h("th", { scope: "col" }, "event"),
        h("th", { scope: "col" }, "what happened"))),
      rows)));
  main.replaceChildren(
    h("p", {}, h("a", { href: "#/runs" }, "← All runs")),
    title, h("p", {}, statusSlot, liveSlot), request, facts, parked, note, reply, plan,
    timeline);

  const controller = new AbortController();
  let stopped = false;
  let connectedAt = Date.now();
  cleanup.push(() => { stopped = true; controller.abort(); });

  function add(doc) {
    if (seen.has(doc.seq)) return false;
    seen.add(doc.seq);
    events.push(doc);
    events.sort((a, b) => a.seq - b.seq);
    const start = new Date(events[0].event_time).getTime();
    const row = eventRow(doc, new Date(doc.event_time).getTime() - start);
    if (Date.now() - connectedAt > 800) row.classList.add("fresh");  // not the run so far: what just came
    const after = [...rows.children].find((r) => Number(r.dataset.seq) > doc.seq);
    rows.insertBefore(row, after || null);
    return true;
  }

  // How long the run took, or has been going: a live run's clock runs between its events.
  const elapsed = h("span");
  function tick() {
    const first = events[0];
    const end = events.find((e) => TERMINAL.has(e.event_type));
    const to = end ? new Date(end.event_time).getTime() : Date.now();
    elapsed.textContent = first ? ms(Math.max(0, to - new Date(first.event_time).getTime())) : "–";
  }
  const clock = setInterval(tick, 1000);
  cleanup.push(() => clearInterval(clock));

  function summarize(status) {
    tick();
    statusSlot.replaceChildren(badge(status));
    const started = events.find((e) => e.event_type === "RunStarted");
    if (started) request.replaceChildren("“", started.payload.text, "”");
    const end = events.find((e) => TERMINAL.has(e.event_type));
    const first = events[0];
    const calls = events.filter((e) => e.event_type === "ToolExecuted").length;
    const fact = (label, value) => h("div", {}, h("dt", {}, label), h("dd", {}, value));
    facts.replaceChildren(
      fact("route", started ? started.payload.route : "–"),
      fact("started", first ? when(first.event_time) : "–"),
      fact(end ? "duration" : "so far", elapsed),
      fact("tool calls", String(calls)),
      fact("cost", end ? usd(end.payload.cost_usd) : "when it ends"),
      fact("events", String(events.length)));
    const planned = events.find((e) => e.event_type === "PlanGenerated");
    if (planned) {
      plan.hidden = false;
      const p = planned.payload;
      plan.replaceChildren(h("h2", { id: "plan-title" }, "Plan"),
        h("p", { class: "muted" }, `${p.steps.length} step(s), at most ${p.max_steps}, budget ${usd(p.budget_usd)} · `,
          `planned by ${p.model_call.model} (prompt ${p.model_call.prompt_version})`),
        h("ol", {}, p.steps.map((step) => h("li", {},
          h("strong", {}, step.tool), ` — ${step.objective}`,
          callInput(parsed(step.input_json)),
          h("span", { class: "muted" }, `done when: ${step.success_criteria}`)))),
        p.stop_conditions.length ? h("p", { class: "muted" }, `stops when: ${p.stop_conditions.join("; ")}`) : null);
    } else {
      const refused = events.find((e) => e.event_type === "PlanRejected");
      if (refused) {
        plan.hidden = false;
        plan.replaceChildren(h("h2", { id: "plan-title" }, "Plan refused"),
          h("ul", {}, refused.payload.errors.map((e) => h("li", {}, e))));
      }
    }
    const final = [...events].reverse().find((e) => e.event_type === "ResponseFinalized")
      || [...events].reverse().find((e) => e.event_type === "ResponseDrafted");
    if (final) {
      reply.hidden = false;
      reply.replaceChildren(h("h2", { id: "answer-title" },
          final.event_type === "ResponseFinalized" ? "Answer" : "Draft answer"),
        h("div", { class: "answer" }, final.payload.text));
    }
    if (status === "awaiting_approval") {
      const asked = [...events].reverse().find((e) => e.event_type === "ApprovalRequested");
      parked.replaceChildren(h("p", { class: "message info" },
        `The call ${asked.payload.step_id} (${asked.payload.tool}) waits for a person: rule ${asked.payload.rule || "(default)"}, `,
        `${until(asked.payload.expires_at)}. `, h("a", { href: "#/approvals" }, "Decide in the approval queue")));
    } else {
      parked.replaceChildren();
    }
  }

  async function follow() {
    let status = "unknown";
    while (!stopped) {
      liveSlot.hidden = false;
      liveSlot.className = "live on";
      liveSlot.textContent = "live";
      let wait = 1000;
      connectedAt = Date.now();
      try {
        const response = await fetch(`/v1/runs/${encodeURIComponent(runId)}/events?timeout_s=120`, {
          headers: { Authorization: `Bearer ${sessionStorage.getItem(KEY_SLOT)}`, Accept: "text/event-stream" },
          signal: controller.signal, cache: "no-store" });
        if (!response.ok) await answer(response);
        note.replaceChildren();
        for await (const frame of frames(response.body)) {
          if (frame.event === "end") {
            status = frame.data.status;
            break;
          }
          if (frame.event === "error") throw new ApiError(frame.data.error.status, frame.data.error.message);
          add(frame.data);
          status = statusOf(events);
          summarize(status);
        }
        summarize(status === "unknown" ? statusOf(events) : status);
        if (["completed", "failed", "cancelled"].includes(status)) break;
      } catch (err) {
        if (err.name === "AbortError" || stopped) return;
        if (err.status === 404 || err.status === 401 || err.status === 403) {
          liveSlot.hidden = true;
          if (!events.length) timeline.hidden = true;
          note.replaceChildren(failure(err, "This run cannot be shown"));
          return;
        }
        note.replaceChildren(failure(err, "The timeline stopped following the run; trying again"));
        wait = err.retryAfter ? Number(err.retryAfter) * 1000 : 3000;
      }
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
    liveSlot.className = "live";
    liveSlot.textContent = "ended";
  }
  follow();
}

// Server-sent events read from a fetch body (EventSource cannot send the key in a header).
async function* frames(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const frame = { event: "message", data: "" };
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") frame.event = value;
        else if (field === "data") frame.data += value;
        else if (field === "id") frame.id = value;
      }
      if (frame.data) {
        frame.data = JSON.parse(frame.data);
        yield frame;
      }
    }
  }
}

function eventRow(doc, offset) {
  const p = doc.payload;
  const what = h("td", {}, doc.summary);
  if (DECISIONS.has(doc.event_type)) {
    const who = p.approved_by || p.rejected_by;
    what.append(h("span", { class: "decision" },
      "rule ", h("span", { class: "mono" }, p.rule || "(none: the policy's default)"),
      " · policy ", h("span", { class: "mono", title: p.policy_version }, shortVersion(p.policy_version)),
      who ? ` · by ${who}` : ""));
  }
  what.append(h("details", {}, h("summary", {}, "payload"), h("pre", {}, pretty(p))));
  return h("tr", { "data-seq": doc.seq, class: TYPE_TONE[doc.event_type] ? `t-${TYPE_TONE[doc.event_type]}` : null },
    h("td", { class: "num seq" }, doc.seq),
    h("td", { class: "num", title: doc.event_time }, `+${ms(offset)}`),
    h("td", { class: "hide-narrow" }, doc.actor),
    h("td", { class: "type" }, doc.event_type),
    what);
}

// A tool call's input as a person reads it: each field, strings as they are (an e-mail's body
// with its lines), anything else as JSON.
function callInput(input) {
  return h("dl", { class: "call" }, Object.entries(input).map(([k, v]) => h("div", {}, h("dt", {}, k),
    h("dd", {}, typeof v === "string" ? v : pretty(v)))));
}

function shortVersion(version) {
  if (!version) return "–";
  const [algo, digest] = version.includes(":") ? version.split(":", 2) : ["", version];
  return algo ? `${algo}:${digest.slice(0, 12)}` : digest.slice(0, 12);
}

// ---------------------------------------------------------------- approvals

function approvalsView() {
  const cards = new Map();   // run_id/step_id → its card, kept across refreshes
  const list = h("div", { class: "cards" });
  const note = h("div", { "aria-live": "polite" });
  const mayDecide = me.roles.includes("approve");
  main.replaceChildren(h("h1", {}, "Approvals"),
    h("p", { class: "muted" }, "Calls the policy parked for a person. ",
      mayDecide ? `Your decisions are recorded as ${identity()}.`
                : "This key may read the queue but not decide (it lacks the approve role)."),
    note, list);

  async function load(quiet) {
    let waiting;
    try {
      waiting = await api("/v1/approvals");
    } catch (err) {
      if (!quiet) note.replaceChildren(failure(err, "The approval queue cannot be read"));
      return;
    }
    note.replaceChildren();
    const now = new Set();
    for (const item of waiting) {
      const id = `${item.run_id}/${item.step_id}`;
      now.add(id);
      if (!cards.has(id)) {
        const card = approvalCard(item, mayDecide);
        cards.set(id, card);
        list.append(card);
      }
    }
    for (const [id, card] of cards) {
      if (!now.has(id) && !card.classList.contains("done")) { card.remove(); cards.delete(id); }
    }
    for (const card of cards.values()) card.tick && card.tick();
    if (!list.children.length) list.replaceChildren(h("p", { class: "empty" }, "Nothing waits for a person."));
    else list.querySelector(".empty")?.remove();
  }
  load();
  every(5000, () => load(true));
}

function approvalCard(item, mayDecide) {
  const expiry = h("span");
  const outcome = h("div", { "aria-live": "polite" });
  const reason = h("textarea", { id: `reason-${item.run_id}-${item.step_id}`, rows: 1,
                                 placeholder: "why (recorded with the decision)" });
  const approve = h("button", { type: "button", class: "approve", disabled: !mayDecide }, "Approve");
  const reject = h("button", { type: "button", class: "reject", disabled: !mayDecide }, "Reject");
  const card = h("article", { class: "card", "data-run": item.run_id, "aria-label": `${item.tool} call of run ${item.run_id}` },
    h("h2", {}, h("span", { class: "mono" }, item.tool), ` · step ${item.step_id}`),
    h("p", {}, "Run ", h("a", { href: `#/run/${encodeURIComponent(item.run_id)}`, class: "mono" }, item.run_id),
      " · waiting since ", when(item.since), " · ", expiry),
    h("p", {}, "Parked by rule ", h("strong", { class: "mono" }, item.rule || "(the policy's default)"),
      h("br"), h("span", { class: "muted" }, item.reason.replace(`rule ${item.rule}: `, ""))),
    callInput(item.input),
    h("div", { class: "actions" },
      h("label", { class: "visually-hidden", for: reason.id }, "Reason"), reason, approve, reject),
    outcome);
  card.tick = () => { expiry.textContent = until(item.expires_at); };
  card.tick();

  async function decide(verb) {
    approve.disabled = reject.disabled = true;  // one click is one decision
    outcome.replaceChildren(h("p", { class: "message info" }, `Sending: ${verb}…`));
    try {
      const done = await api(`/v1/runs/${encodeURIComponent(item.run_id)}/${verb}`, {
        method: "POST", body: { approver: identity(), reason: reason.value.trim() } });
      card.classList.add("done");
      reason.disabled = true;
      setTimeout(refreshPending, 1500);  // once the orchestrator has appended the decision
      outcome.replaceChildren(h("p", { class: "message ok", role: "status" },
        `${done.decision === "approved" ? "Approved" : "Rejected"}: step ${done.step_id} of this run, as ${identity()}. `,
        h("a", { href: `#/run/${encodeURIComponent(item.run_id)}` }, "Follow the run")));
    } catch (err) {
      if (err.status === 409) {
        card.classList.add("done");
        reason.disabled = true;
        outcome.replaceChildren(h("p", { class: "message error", role: "alert" },
          `Not sent: ${err.message}. Nothing was done twice.`));
      } else {
        approve.disabled = reject.disabled = !mayDecide;
        outcome.replaceChildren(failure(err, "The decision was not recorded"));
      }
    }
  }
  approve.addEventListener("click", () => decide("approve"));
  reject.addEventListener("click", () => decide("reject"));
  return card;
}

// ---------------------------------------------------------------- metrics and alerts

const CHARTS = [
  { key: "success_rate", title: "Success rate", unit: "%", scale: 100,
    about: "Runs that ended in RunCompleted with nothing that spoils a success." },
  { key: "violation_rate_per_100", title: "Policy violations per 100 runs", unit: "",
    about: "ToolRejected plus ApprovalRequested events." },
  { key: "cost_per_success_usd", title: "Cost per successful run", unit: "$",
    about: "What all the runs cost, divided by the successful ones." },
  { key: "ttfa_p50_ms", title: "Time to first action (p50)", unit: "ms",
    about: "RunStarted → the first ToolApproved; the mark above each bar is the p95.", whisker: "ttfa_p95_ms" },
];

function metricsView(params) {
  const by = params.get("by") === "model" ? "model" : "route";
  const since = ["7d", "30d", "90d"].includes(params.get("since")) ? params.get("since") : "30d";
  const pick = (name, value, options) => h("select", { id: `m-${name}`, onchange: (e) => {
      const next = new URLSearchParams({ by, since, [name]: e.target.value });
      location.hash = `#/metrics?${next}`;
    } }, ...options.map(([v, label]) => h("option", { value: v, selected: v === value }, label)));
  const charts = h("div", { class: "charts" });
  const alerts = h("section", { "aria-labelledby": "alerts-title" });
  main.replaceChildren(h("h1", {}, "Metrics & alerts"),
    h("div", { class: "filters" },
      h("div", {}, h("label", { for: "m-by" }, "Each bar is a"), pick("by", by, [["route", "route"], ["model", "model (planner)"]])),
      h("div", {}, h("label", { for: "m-since" }, "Runs started in the last"),
        pick("since", since, [["7d", "7 days"], ["30d", "30 days"], ["90d", "90 days"]]))),
    alerts, h("h2", {}, "Daily metrics (UTC days)"), charts);

  async function load() {
    let rows, replays;
    try {
      [rows, replays] = await Promise.all([api(`/v1/metrics?by=day,${by}&since=${since}`),
                                           api(`/v1/metrics/replay?since=${since}`)]);
    } catch (err) {
      charts.replaceChildren(failure(err, "Metrics not read"));
      return;
    }
    const days = [...new Set(rows.map((r) => r.day))].sort();
    const groups = [...new Set(rows.map((r) => r[by] || "(none)"))].sort();
    const figures = CHARTS.map((c) => chartFigure(c, days, groups, rows, by));
    const replayDays = [...new Set(replays.map((r) => r.day))].sort();
    const candidates = [...new Set(replays.map((r) => r.candidate))].sort();
    figures.push(chartFigure({ key: "replay_delta", title: "Replay delta", unit: "",
      about: "A candidate's quality minus the baseline's, per candidate and day (agentlog score)." },
      replayDays, candidates, replays, "candidate"));
    charts.replaceChildren(...figures);
  }

  async function loadAlerts() {
    let list;
    try {
      list = await api("/v1/alerts?limit=50");
    } catch (err) {
      alerts.replaceChildren(h("h2", { id: "alerts-title" }, "Alerts"), failure(err, "Alerts not read"));
      return;
    }
    const firing = list.filter((a) => a.firing);
    const resolved = list.filter((a) => !a.firing).slice(0, 10);
    alerts.replaceChildren(h("h2", { id: "alerts-title" }, `Alerts firing (${firing.length})`),
      firing.length ? h("ul", { class: "alerts" }, firing.map(alertItem))
                    : h("p", { class: "message ok" }, `No alert fires for tenant ${me.tenant_id}.`),
      ...(resolved.length ? [h("details", {}, h("summary", {}, `${resolved.length} resolved recently`),
                                             h("ul", { class: "alerts" }, resolved.map(alertItem)))] : []));
  }
  load();
  loadAlerts();
  every(30000, () => { load(); loadAlerts(); });
}

function alertItem(a) {
  return h("li", {}, h("span", { class: `badge sev-${a.severity}` }, a.severity.toUpperCase()), " ",
    h("strong", {}, a.rule), ` · ${a.scope} · raised `, when(a.raised_at),
    a.resolved_at ? [" · resolved ", when(a.resolved_at)] : " · firing",
    h("div", { class: "muted" }, a.summary));
}

function chartFigure(chart, days, groups, rows, by) {
  const value = (r, key) => (r[key] === null || r[key] === undefined ? null : r[key] * (chart.scale || 1));
  const series = groups.map((g, i) => ({ name: g, color: PALETTE[i % PALETTE.length],
    points: Object.fromEntries(rows.filter((r) => (r[by] || "(none)") === g).map((r) => [r.day, r])) }));
  const figure = h("figure", { class: "chart" }, h("h2", {}, chart.title), h("p", { class: "muted" }, chart.about));
  if (!days.length || rows.every((r) => value(r, chart.key) === null)) {
    figure.append(h("p", { class: "empty" }, chart.key === "replay_delta" ? "No replay scored in this range."
      : rows.length ? "No run in this range has a value yet." : "No runs started in this range."));
    return figure;
  }
  figure.append(barChart(chart, days, series, value));
  figure.append(h("ul", { class: "legend" }, series.map((sr) =>
    h("li", {}, h("span", { class: "swatch", style: null, "data-color": sr.color }), sr.name))));
  for (const swatch of figure.querySelectorAll(".swatch")) swatch.style.background = swatch.dataset.color;
  return figure;
}

function fmt(chart, v) {
  if (v === null) return "none";
  if (v === 0) return chart.unit === "%" ? "0 %" : "0";
  if (chart.unit === "$") return usd(v);
  if (chart.unit === "ms") return ms(v);
  if (chart.unit === "%") return `${Number.isInteger(v) || v >= 10 ? v.toFixed(0) : v.toFixed(1)} %`;
  return Number.isInteger(v) ? String(v) : v.toFixed(Math.abs(v) >= 10 ? 1 : 2);
}

// A round step for about four grid lines up to `v`.
function niceStep(v) {
  if (!(v > 0)) return 0.25;
  const raw = v / 4;
  const p = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * p).find((m) => m >= raw);
}

// Grouped bars: one group per day, one bar per series; negatives hang below the zero line.
function barChart(chart, days, series, value) {
  const W = 480, H = 220, left = 58, right = 10, top = 12, bottom = 34;
  const all = [];
  for (const sr of series) for (const d of days) {
    const r = sr.points[d];
    if (!r) continue;
    for (const k of [chart.key, chart.whisker]) if (k && value(r, k) !== null) all.push(value(r, k));
  }
  const top0 = Math.max(0, ...all), bottom0 = Math.min(0, ...all);
  const step = chart.unit === "%" ? 25 : niceStep(Math.max(top0, -bottom0));
  const hi = chart.unit === "%" ? 100 : Math.max(step, step * Math.ceil(top0 / step));
  const lo = bottom0 < 0 ? -step * Math.ceil(-bottom0 / step) : 0;
  const y = (v) => top + (H - top - bottom) * (hi - v) / (hi - lo);
  const band = (W - left - right) / days.length;
  const labelled = days.length * series.length <= 12;  // few bars: each says its value
  const bar = Math.max(2, Math.min(28, (band * 0.8) / series.length));
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": `${chart.title}: bars per day for ${series.map((x) => x.name).join(", ")}` });
  for (let i = 0; lo + step * i <= hi + step / 1000; i += 1) {
    const v = lo + step * i;
    svg.append(s("line", { class: "grid", x1: left, x2: W - right, y1: y(v), y2: y(v) }),
               s("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end" }, fmt(chart, v)));
  }
  svg.append(s("line", { class: "axis", x1: left, x2: W - right, y1: y(0), y2: y(0) }));
  const labelStep = Math.ceil(days.length / 8);
  days.forEach((d, i) => {
    const x0 = left + band * i + (band - bar * series.length) / 2;
    if (i % labelStep === 0) {
      svg.append(s("text", { x: left + band * (i + 0.5), y: H - bottom + 16, "text-anchor": "middle" }, d.slice(5)));
    }
    series.forEach((sr, j) => {
      const r = sr.points[d];
      const v = r ? value(r, chart.key) : null;
      if (v === null) return;
      const x = x0 + bar * j;
      const rect = s("rect", { x, y: Math.min(y(v), y(0)), width: Math.max(1, bar - 1),
                               height: Math.max(v === 0 ? 1 : 0, Math.abs(y(0) - y(v))), fill: sr.color, rx: 1.5 });
      const runs = r.runs !== undefined ? ` over ${r.runs} run(s)` : "";
      rect.append(s("title", {}, `${sr.name} · ${d}: ${fmt(chart, v)}${runs}`));
      svg.append(rect);
      if (labelled) {
        const w = chart.whisker ? value(r, chart.whisker) : null;
        const at = v < 0 ? y(v) + 12 : y(Math.max(v, w ?? v)) - 4;
        svg.append(s("text", { x: x + bar / 2, y: at, "text-anchor": "middle", class: "value" },
                     w === null ? fmt(chart, v) : `${fmt(chart, v)} · p95 ${fmt(chart, w)}`));
      }
      const w = chart.whisker ? value(r, chart.whisker) : null;
      if (w !== null) {
        svg.append(s("line", { x1: x + bar / 2 - 0.5, x2: x + bar / 2 - 0.5, y1: y(v), y2: y(w), stroke: sr.color,
                               "stroke-width": 1.5 }),
                   s("line", { x1: x + 1, x2: x + bar - 2, y1: y(w), y2: y(w), stroke: sr.color, "stroke-width": 2 },
                     s("title", {}, `${sr.name} · ${d}: p95 ${fmt(chart, w)}`)));
      }
    });
  });
  return svg;
}

// ---------------------------------------------------------------- start

document.getElementById("signout").addEventListener("click", () => {
  sessionStorage.removeItem(KEY_SLOT);
  me = null;
  showBanner("");
  location.hash = "#/";
  route();
});
window.addEventListener("hashchange", () => { showBanner(""); route(); });
route();
