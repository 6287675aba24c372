// The robotrain dashboard: a small single-page app over the JSON API and its event streams.
// Pages (hash routes): #/jobs, #/jobs/<id>, #/compare?ids=a,b, #/submit. No build step, no framework.
"use strict";

const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const STATUSES = ["queued", "starting", "running", "succeeded", "failed", "cancelled"];
const TOKEN_KEY = "robotrain.token";
const COLORS = ["#0b5cad", "#c62828", "#1a7f37", "#9a6700", "#6f42c1", "#0a7c86", "#d63384", "#57606a"];

// --- auth -----------------------------------------------------------------------------------------------------

const auth = {
  mode: "token",
  clerk: null,
  async token() {
    if (this.mode === "clerk") {
      return this.clerk && this.clerk.session ? await this.clerk.session.getToken() : null;
    }
    return sessionStorage.getItem(TOKEN_KEY);
  },
  async headers() {
    const token = await this.token();
    return token ? { Authorization: `Bearer ${token}` } : {};
  },
  signOut() {
    if (this.mode === "clerk" && this.clerk) return this.clerk.signOut().then(() => location.reload());
    sessionStorage.removeItem(TOKEN_KEY);
    location.hash = "#/jobs";
    route();
  },
};

function loadScript(src, attrs) {
  return new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = src;
    script.crossOrigin = "anonymous";
    for (const [k, v] of Object.entries(attrs || {})) script.setAttribute(k, v);
    script.onload = resolve;
    script.onerror = () => reject(new Error(`could not load ${src}`));
    document.head.appendChild(script);
  });
}

async function initAuth() {
  const config = await (await fetch("/ui/config.json")).json();
  auth.mode = config.auth;
  if (config.auth === "clerk") {
    await loadScript(`https://${config.clerk_host}/npm/@clerk/clerk-js@5/dist/clerk.browser.js`, {
      "data-clerk-publishable-key": config.publishable_key,
    });
    auth.clerk = window.Clerk;
    await auth.clerk.load();
  }
}

// --- HTTP -------------------------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || `http_${status}`;
    this.details = error.details || [];
  }
}

async function api(method, path, body) {
  const headers = { Accept: "application/json", ...(await auth.headers()) };
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = typeof body === "string" ? body : JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

async function fetchBlob(path) {
  const response = await fetch(path, { headers: await auth.headers() });
  if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
  return response.blob();
}

// Server-sent events over fetch (EventSource cannot send the bearer header). Reconnects after a drop with
// Last-Event-ID, so nothing is lost; stops on `end`, on 204, or when `signal` aborts.
async function streamEvents(path, onEvent, signal) {
  let lastId = null;
  let retryMs = 2000;
  while (!signal.aborted) {
    let ended = false;
    try {
      const headers = { Accept: "text/event-stream", ...(await auth.headers()) };
      if (lastId) headers["Last-Event-ID"] = lastId;
      const response = await fetch(path, { headers, signal, cache: "no-store" });
      if (response.status === 204) return;
      if (response.status === 401 || response.status === 404) return;
      if (!response.ok || !response.body) throw new Error(`stream answered ${response.status}`);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        const pendingCr = buffer.endsWith("\r");
        let text = (pendingCr ? buffer.slice(0, -1) : buffer).replace(/\r\n?/g, "\n");
        let cut;
        while ((cut = text.indexOf("\n\n")) >= 0) {
          const block = text.slice(0, cut);
          text = text.slice(cut + 2);
          const message = { event: "message", data: "", id: null };
          for (const line of block.split("\n")) {
            if (!line || line.startsWith(":")) continue;
            const colon = line.indexOf(":");
            const field = colon < 0 ? line : line.slice(0, colon);
            const valueText = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
            if (field === "event") message.event = valueText;
            else if (field === "data") message.data += (message.data ? "\n" : "") + valueText;
            else if (field === "id") message.id = valueText;
            else if (field === "retry" && /^\d+$/.test(valueText)) retryMs = Number(valueText);
          }
          if (message.id) lastId = message.id;
          if (!message.data) continue;
          if (message.event === "end") ended = true;
          onEvent(message.event, JSON.parse(message.data));
        }
        buffer = text + (pendingCr ? "\r" : "");
      }
    } catch (error) {
      if (signal.aborted) return;
    }
    if (ended) return;
    await sleep(retryMs);
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// --- DOM helpers ------------------------------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function toast(message) {
  const box = document.getElementById("toast");
  box.textContent = message;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (box.textContent = ""), 6000);
}

function statusBadge(status) {
  return el("span", { class: `status status-${status}`, "data-status": status }, status);
}

function fmtTime(iso) {
  return iso ? new Date(iso).toLocaleString() : "—";
}

function fmtDuration(job) {
  if (!job.started_at) return "—";
  const end = job.finished_at ? new Date(job.finished_at) : new Date();
  let s = Math.max(0, Math.round((end - new Date(job.started_at)) / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  s %= 60;
  return h ? `${h}h ${m}m` : m ? `${m}m ${s}s` : `${s}s`;
}

function successRate(job) {
  const evaluation = (job.result && job.result.eval) || {};
  if (typeof evaluation.pc_success === "number") return evaluation.pc_success;
  const metrics = (job.result && job.result.metrics) || {};
  return typeof metrics["eval/pc_success"] === "number" ? metrics["eval/pc_success"] : null;
}

function progressBar(job) {
  const { step, total_steps: total } = job.progress || {};
  const value = total ? Math.min(step, total) : 0;
  const label = total ? `${value} of ${total} steps` : "not started";
  return el("progress", { max: total || 1, value, "aria-label": `Progress: ${label}`, title: label });
}

// --- charts (uPlot) ---------------------------------------------------------------------------------------------

class Chart {
  // One figure: several named series over steps, growing as points arrive.
  constructor(container, title, series, { yLabel = "", percent = false } = {}) {
    this.series = series; // [{key, label}]
    this.points = new Map(series.map((s) => [s.key, new Map()]));
    this.percent = percent;
    this.yLabel = yLabel;
    this.plot = null;
    this.body = el("div", { class: "chart-body" }, el("p", { class: "chart-empty" }, "No points yet"));
    this.summary = el("p", { class: "visually-hidden", "aria-live": "off" });
    this.figure = el("figure", { class: "card chart", "data-chart": title, "data-points": "0" },
      el("figcaption", {}, title), this.body, this.summary);
    container.append(this.figure);
    this.title = title;
  }

  add(key, pairs) {
    const target = this.points.get(key);
    if (!target) return;
    for (const [step, value] of pairs) target.set(step, value);
    this.render();
  }

  count() {
    let n = 0;
    for (const m of this.points.values()) n += m.size;
    return n;
  }

  data() {
    const steps = new Set();
    for (const m of this.points.values()) for (const s of m.keys()) steps.add(s);
    const xs = [...steps].sort((a, b) => a - b);
    return [xs, ...this.series.map((s) => xs.map((x) => (this.points.get(s.key).has(x) ? this.points.get(s.key).get(x) : null)))];
  }

  render() {
    const n = this.count();
    this.figure.setAttribute("data-points", String(n));
    if (!n || typeof uPlot === "undefined") return;
    const data = this.data();
    const last = this.series.map((s) => {
      const m = this.points.get(s.key);
      if (!m.size) return null;
      const step = Math.max(...m.keys());
      return `${s.label} ${fmtNumber(m.get(step))} at step ${step}`;
    }).filter(Boolean);
    this.summary.textContent = `${this.title}: ${last.join(", ")}`;
    if (this.plot) {
      this.plot.setData(data);
      return;
    }
    this.body.replaceChildren();
    const width = Math.max(300, this.body.clientWidth || 480);
    this.plot = new uPlot({
      width,
      height: 220,
      scales: { x: { time: false } },
      axes: [{ label: "step" }, { label: this.yLabel, size: 64, values: (u, splits) => splits.map(fmtTick) }],
      series: [{ label: "step" }, ...this.series.map((s, i) => ({
        // uPlot draws points itself where they are sparse (an evaluation every few thousand steps, or one at the end).
        label: s.label, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: true,
      }))],
    }, data, this.body);
  }

  resize() {
    if (this.plot) this.plot.setSize({ width: Math.max(300, this.body.clientWidth), height: 220 });
  }
}

function fmtTick(v) {
  if (v === null || v === undefined) return "";
  return Math.abs(v) >= 10000 || (Math.abs(v) < 0.0001 && v !== 0) ? v.toExponential(1) : String(Number(v.toPrecision(3)));
}

function fmtNumber(v) {
  if (v === null || v === undefined) return "—";
  return Math.abs(v) >= 1000 || (Math.abs(v) < 0.001 && v !== 0) ? v.toExponential(2) : v.toPrecision(4);
}

// --- pages ------------------------------------------------------------------------------------------------------

let current = null; // {controller} of the page on screen; its streams stop when another page opens

function page(title, ...children) {
  const main = document.getElementById("main");
  main.replaceChildren(el("h1", {}, title), ...children);
  document.title = `${title} · robotrain`;
  return main;
}

function signInPage() {
  const input = el("input", { id: "token", type: "password", autocomplete: "off", required: true, class: "grow" });
  const error = el("p", { class: "errors", role: "alert" });
  const form = el("form", { class: "card", "aria-labelledby": "signin-title" },
    el("p", {}, "Paste an access token. On the server's machine, ", el("code", {}, "robotrain token --user NAME"), " prints one."),
    el("div", { class: "field" }, el("label", { for: "token" }, "Access token"), el("div", { class: "row" }, input,
      el("button", { class: "primary", type: "submit" }, "Sign in"))),
    error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    try {
      await api("GET", "/jobs?limit=1");
    } catch (e) {
      sessionStorage.removeItem(TOKEN_KEY);
      error.textContent = e.status === 401 ? "That token was refused." : e.message;
      return;
    }
    route();
  });
  page("Sign in", form);
  const heading = document.querySelector("main h1");
  heading.id = "signin-title";
  input.focus();
}

async function jobsPage(signal, params) {
  const filter = params.get("status") || "";
  const select = el("select", { id: "status-filter" }, el("option", { value: "" }, "All"),
    STATUSES.map((s) => el("option", { value: s, selected: s === filter }, s)));
  select.addEventListener("change", () => { location.hash = select.value ? `#/jobs?status=${select.value}` : "#/jobs"; });
  const compare = el("button", { type: "button", disabled: true }, "Compare selected");
  const tbody = el("tbody");
  const table = el("table", { "aria-label": "Your jobs" },
    el("thead", {}, el("tr", {}, ["", "Name", "Status", "Progress", "Policy", "Dataset", "Created", "Duration", "Success rate"]
      .map((h, i) => el("th", { scope: "col" }, i === 0 ? el("span", { class: "visually-hidden" }, "Select") : h)))),
    tbody);
  const selected = new Set();
  compare.addEventListener("click", () => { location.hash = `#/compare?ids=${[...selected].join(",")}`; });
  const rows = new Map();

  function row(job) {
    const box = el("input", { type: "checkbox", "aria-label": `Select ${job.name} to compare`, checked: selected.has(job.id) });
    box.addEventListener("change", () => {
      if (box.checked) selected.add(job.id); else selected.delete(job.id);
      compare.disabled = selected.size < 2;
    });
    const rate = successRate(job);
    const spec = job.spec || {};
    return el("tr", { "data-job": job.id },
      el("td", {}, box),
      el("td", {}, el("a", { href: `#/jobs/${job.id}` }, job.name)),
      el("td", {}, statusBadge(job.status)),
      el("td", {}, progressBar(job)),
      el("td", {}, (spec.policy || {}).type || "—"),
      el("td", { class: "muted" }, ((spec.dataset || {}).uri || "—").split("?")[0]),
      el("td", {}, fmtTime(job.created_at)),
      el("td", { class: "num" }, fmtDuration(job)),
      el("td", { class: "num" }, rate === null ? "—" : `${rate.toFixed(1)}%`));
  }

  function upsert(job, atTop) {
    if (filter && job.status !== filter) {
      const old = rows.get(job.id);
      if (old) { old.remove(); rows.delete(job.id); }
      return;
    }
    const fresh = row(job);
    const old = rows.get(job.id);
    if (old) old.replaceWith(fresh);
    else if (atTop) tbody.prepend(fresh);
    else tbody.append(fresh);
    rows.set(job.id, fresh);
  }

  const empty = el("p", { class: "muted" });
  page("Jobs", el("div", { class: "row", style: null },
    el("div", { class: "field" }, el("label", { for: "status-filter" }, "Status"), select),
    el("div", { class: "grow" }), compare), table, empty);
  const query = filter ? `?status=${filter}&limit=100` : "?limit=100";
  const listing = await api("GET", `/jobs${query}`);
  for (const job of listing.data) upsert(job, false);
  empty.textContent = listing.data.length ? "" : "No jobs yet. Submit one from the Submit page.";
  streamEvents("/jobs", (event, data) => {
    if (event === "job") { upsert(data, true); empty.textContent = ""; }
  }, signal);
}

function isVideo(path) {
  return /\.(mp4|webm)$/i.test(path);
}

async function jobPage(signal, jobId) {
  const header = el("div", { class: "row" });
  const details = el("dl", { class: "kv card" });
  const charts = el("div", { class: "charts" });
  const log = el("ol", { class: "log card", "aria-label": "Event log" });
  const spec = el("pre", { tabindex: "0", "aria-label": "Spec" });
  const artifacts = el("ul", { class: "artifacts" });
  const artifactsBox = el("details", { class: "card" }, el("summary", {}, "Files (available when the job ends)"), artifacts);
  const videos = el("div", { class: "videos" }, el("p", { class: "muted" }, "Shown when the job has ended."));
  const main = page("Job", header, details,
    el("h2", {}, "Curves"), charts,
    el("h2", { id: "rollouts-title" }, "Evaluation rollouts"), el("section", { "aria-labelledby": "rollouts-title" }, videos),
    el("h2", {}, "Event log"), log,
    el("h2", {}, "Artifacts"), artifactsBox,
    el("h2", {}, "Spec"), spec);
  const loss = new Chart(charts, "Loss", [{ key: "train/loss", label: "train loss" }, { key: "val/loss", label: "val loss" }], { yLabel: "loss" });
  const lr = new Chart(charts, "Learning rate", [{ key: "train/lr", label: "lr" }], { yLabel: "lr" });
  const success = new Chart(charts, "Eval success", [{ key: "eval/pc_success", label: "success %" }], { yLabel: "%" });
  const byName = { "train/loss": loss, "val/loss": loss, "train/lr": lr, "eval/pc_success": success };
  window.addEventListener("resize", () => [loss, lr, success].forEach((c) => c.resize()), { signal });

  let job = null;
  let artifactsShown = false;

  function renderJob(next) {
    job = next;
    document.querySelector("main h1").textContent = job.name;
    document.title = `${job.name} · robotrain`;
    const buttons = [];
    if (!TERMINAL.has(job.status)) {
      buttons.push(el("button", { class: "danger", type: "button", onclick: () => act("cancel") }, "Cancel job"));
    }
    if (job.status === "failed" || job.status === "cancelled") {
      buttons.push(el("button", { type: "button", onclick: () => act("retry") }, "Retry job"));
    }
    header.replaceChildren(statusBadge(job.status), progressBar(job), el("span", { class: "muted" },
      `step ${job.progress.step}/${job.progress.total_steps}`), el("div", { class: "grow" }), ...buttons);
    const rate = successRate(job);
    const rows = [["Id", job.id], ["Policy", (job.spec.policy || {}).type], ["Dataset", (job.spec.dataset || {}).uri],
      ["Created", fmtTime(job.created_at)], ["Duration", fmtDuration(job)], ["Attempt", job.attempt],
      ["Success rate", rate === null ? "—" : `${rate.toFixed(1)}%`]];
    if (job.error) rows.push(["Error", `${job.error.code}: ${job.error.message}`]);
    if (job.retry_of) rows.push(["Retry of", el("a", { href: `#/jobs/${job.retry_of}` }, job.retry_of)]);
    details.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
    spec.textContent = JSON.stringify(job.spec, null, 2);
    if (TERMINAL.has(job.status) && !artifactsShown) {
      artifactsShown = true;
      showArtifacts().catch((e) => toast(e.message));
    }
  }

  async function act(what) {
    try {
      const result = await api("POST", `/jobs/${jobId}/${what}`);
      if (what === "retry") { location.hash = `#/jobs/${result.id}`; return; }
      renderJob(result);
      toast(`Job ${result.status}`);
    } catch (e) {
      toast(e.message);
    }
  }

  async function showArtifacts() {
    const listing = await api("GET", `/jobs/${jobId}/artifacts`);
    artifactsBox.querySelector("summary").textContent = `Files (${listing.data.length})`;
    artifacts.replaceChildren(...(listing.data.length ? listing.data.map((a) => el("li", {},
      el("button", { type: "button", class: "link", onclick: () => download(a.path) }, `Download ${a.path}`),
      el("span", { class: "muted" }, ` ${a.size} bytes`))) : [el("li", { class: "muted" }, "No artifacts.")]));
    const listed = (job.result && Array.isArray(job.result.videos)) ? job.result.videos : [];
    const paths = listed.length ? listed : listing.data.map((a) => a.path).filter((p) => p.startsWith("eval/videos/") && isVideo(p));
    if (!paths.length) { videos.replaceChildren(el("p", { class: "muted" }, "This job has no rollout videos.")); return; }
    videos.replaceChildren(...paths.map((path) => {
      const video = el("video", { controls: true, preload: "metadata", "aria-label": `Rollout ${path}`, "data-path": path });
      fetchBlob(`/jobs/${jobId}/artifacts/${path}`).then((blob) => { video.src = URL.createObjectURL(blob); })
        .catch((e) => toast(`${path}: ${e.message}`));
      return el("figure", { class: "card" }, el("figcaption", {}, path.replace(/^eval\/videos\//, "")), video);
    }));
  }

  async function download(path) {
    try {
      const blob = await fetchBlob(`/jobs/${jobId}/artifacts/${path}`);
      const link = el("a", { href: URL.createObjectURL(blob), download: path.split("/").pop() });
      document.body.append(link);
      link.click();
      link.remove();
    } catch (e) {
      toast(e.message);
    }
  }

  try {
    renderJob(await api("GET", `/jobs/${jobId}`));
  } catch (e) {
    page(e.status === 404 ? "Job not found" : "Error", el("p", {}, e.message));
    return;
  }
  streamEvents(`/jobs/${jobId}/events`, (event, data) => {
    if (event === "job") renderJob(data);
    else if (event === "status" || event === "log") {
      log.append(el("li", {}, el("span", { class: "muted" }, `${new Date(data.at).toLocaleTimeString()} `),
        el("span", { class: `kind-${data.kind}` }, `[${data.kind}] `), data.message));
      log.scrollTop = log.scrollHeight;
    } else if (event === "metrics") {
      for (const [name, points] of Object.entries(data.series)) {
        if (byName[name]) byName[name].add(name, points);
      }
      window.dispatchEvent(new CustomEvent("robotrain:metrics", { detail: { job: jobId, series: data.series } }));
    }
  }, signal);
  main.focus();
}

async function comparePage(signal, params) {
  const ids = (params.get("ids") || "").split(",").filter(Boolean);
  const listing = await api("GET", "/jobs?limit=100");
  const picker = el("fieldset", { class: "card" }, el("legend", {}, "Jobs to compare"),
    listing.data.map((job) => el("label", { class: "row" },
      el("input", { type: "checkbox", value: job.id, checked: ids.includes(job.id) }), `${job.name} (${job.status}, ${job.id.slice(-6)})`)));
  const apply = el("button", { type: "button", class: "primary" }, "Compare");
  apply.addEventListener("click", () => {
    const chosen = [...picker.querySelectorAll("input:checked")].map((i) => i.value);
    location.hash = `#/compare?ids=${chosen.join(",")}`;
  });
  const charts = el("div", { class: "charts" });
  page("Compare", picker, el("p", {}, apply), charts);
  if (ids.length < 2) { charts.append(el("p", { class: "muted" }, "Pick two or more jobs.")); return; }
  const jobs = await Promise.all(ids.map((id) => api("GET", `/jobs/${id}`).catch(() => null)));
  const found = jobs.filter(Boolean);
  const series = found.map((job) => ({ key: job.id, label: `${job.name} (${job.id.slice(-6)})` }));
  const loss = new Chart(charts, "Train loss", series, { yLabel: "loss" });
  const success = new Chart(charts, "Eval success", series, { yLabel: "%" });
  const rates = el("table", { "aria-label": "Final success rates" }, el("thead", {}, el("tr", {},
    ["Job", "Status", "Steps", "Success rate"].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, found.map((job) => { const r = successRate(job); return el("tr", {}, el("td", {},
      el("a", { href: `#/jobs/${job.id}` }, job.name)), el("td", {}, statusBadge(job.status)),
      el("td", { class: "num" }, `${job.progress.step}/${job.progress.total_steps}`),
      el("td", { class: "num" }, r === null ? "—" : `${r.toFixed(1)}%`)); })));
  charts.after(el("h2", {}, "Results"), rates);
  await Promise.all(found.map(async (job) => {
    const metrics = await api("GET", `/jobs/${job.id}/metrics`);
    loss.add(job.id, metrics.series["train/loss"] || []);
    success.add(job.id, metrics.series["eval/pc_success"] || []);
  }));
}

const EXAMPLE_SPEC = {
  name: "push2d mlp",
  policy: { type: "mlp" },
  dataset: { uri: "builtin://push2d?episodes=50" },
  training: { steps: 2000, batch_size: 64 },
  eval: { env: "push2d", episodes: 20 },
};

function submitPage() {
  const fields = [
    { path: "name", label: "Name", input: el("input", { value: EXAMPLE_SPEC.name }) },
    { path: "policy.type", label: "Policy", input: el("select", {}, ["mlp", "act", "diffusion"].map((p) => el("option", { value: p }, p))) },
    { path: "dataset.uri", label: "Dataset URI", input: el("input", { value: EXAMPLE_SPEC.dataset.uri, size: 40 }) },
    { path: "training.steps", label: "Steps", input: el("input", { value: "2000", inputmode: "numeric" }), number: true },
    { path: "training.batch_size", label: "Batch size", input: el("input", { value: "64", inputmode: "numeric" }), number: true },
    { path: "training.log_every", label: "Log every (steps)", input: el("input", { value: "100", inputmode: "numeric" }), number: true },
    { path: "eval.env", label: "Evaluation env", input: el("select", {}, el("option", { value: "push2d" }, "push2d"), el("option", { value: "pusht" }, "pusht"), el("option", { value: "" }, "none")) },
    { path: "eval.episodes", label: "Evaluation episodes", input: el("input", { value: "20", inputmode: "numeric" }), number: true },
    { path: "compute.gpu", label: "GPU (optional)", input: el("input", { value: "", placeholder: "server default" }) },
  ];
  const errorsFor = new Map();
  const formFields = fields.map((f) => {
    const id = `f-${f.path.replace(/\./g, "-")}`;
    f.input.id = id;
    f.input.name = f.path;
    const error = el("p", { class: "field-error", id: `${id}-error` });
    f.input.setAttribute("aria-describedby", error.id);
    errorsFor.set(f.path, { input: f.input, error });
    return el("div", { class: "field" }, el("label", { for: id }, f.label), f.input, error);
  });
  const json = el("textarea", { id: "f-json", rows: 14, spellcheck: "false" });
  const useJson = el("input", { type: "checkbox", id: "f-use-json" });
  const summary = el("div", { class: "errors", role: "alert", id: "submit-errors" });
  const form = el("form", { class: "card", novalidate: true, "aria-describedby": "submit-errors" },
    el("div", { class: "row" }, formFields),
    el("div", { class: "field" }, el("label", { for: "f-use-json", class: "row" }, useJson, "Submit the JSON below instead of the fields")),
    el("div", { class: "field" }, el("label", { for: "f-json" }, "Spec as JSON"), json),
    summary,
    el("button", { class: "primary", type: "submit" }, "Submit job"));

  function specFromFields() {
    const spec = {};
    for (const f of fields) {
      let value = f.input.value.trim();
      if (value === "" && f.path !== "eval.env") continue;
      if (f.path === "eval.env" && value === "") value = null;
      else if (f.number && /^-?\d+$/.test(value)) value = Number(value);
      const keys = f.path.split(".");
      let target = spec;
      for (const k of keys.slice(0, -1)) target = target[k] = target[k] || {};
      target[keys[keys.length - 1]] = value;
    }
    return spec;
  }
  json.value = JSON.stringify(specFromFields(), null, 2);
  form.addEventListener("input", (event) => {
    if (event.target !== json && event.target !== useJson) json.value = JSON.stringify(specFromFields(), null, 2);
  });

  function clearErrors() {
    summary.replaceChildren();
    for (const { input, error } of errorsFor.values()) { input.removeAttribute("aria-invalid"); error.textContent = ""; }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    let body;
    if (useJson.checked) {
      try { body = JSON.parse(json.value); } catch (e) { summary.append(el("p", {}, `The JSON does not parse: ${e.message}`)); return; }
    } else {
      body = specFromFields();
    }
    try {
      const job = await api("POST", "/jobs", body);
      location.hash = `#/jobs/${job.id}`;
    } catch (e) {
      const items = [];
      for (const detail of e.details || []) {
        const path = detail.loc.filter((part, i) => !(i === 0 && part === "body")).join(".");
        const field = errorsFor.get(path) || errorsFor.get(path.split(".").slice(0, 2).join("."));
        if (field && !useJson.checked) {
          field.input.setAttribute("aria-invalid", "true");
          field.error.textContent = detail.msg;
        }
        items.push(el("li", { "data-field": path }, `${path || "spec"}: ${detail.msg}`));
      }
      summary.append(el("p", {}, e.details && e.details.length ? "The spec was refused:" : e.message));
      if (items.length) summary.append(el("ul", {}, items));
      const firstInvalid = form.querySelector('[aria-invalid="true"]');
      if (firstInvalid) firstInvalid.focus();
    }
  });
  page("Submit a job", form);
}

// --- routing ----------------------------------------------------------------------------------------------------

async function route() {
  if (current) current.abort();
  const controller = new AbortController();
  current = controller;
  const hash = location.hash.replace(/^#/, "") || "/jobs";
  const [path, query] = hash.split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean);
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === parts[0]) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const who = document.getElementById("who");
  if (!(await auth.token())) {
    who.replaceChildren();
    if (auth.mode === "clerk") {
      page("Sign in", el("div", { id: "clerk-sign-in" }));
      auth.clerk.mountSignIn(document.getElementById("clerk-sign-in"));
    } else {
      signInPage();
    }
    return;
  }
  who.replaceChildren(el("button", { type: "button", onclick: () => auth.signOut() }, "Sign out"));
  try {
    if (parts[0] === "jobs" && parts[1]) await jobPage(controller.signal, parts[1]);
    else if (parts[0] === "compare") await comparePage(controller.signal, params);
    else if (parts[0] === "submit") submitPage();
    else await jobsPage(controller.signal, params);
  } catch (e) {
    if (e.status === 401) { sessionStorage.removeItem(TOKEN_KEY); route(); return; }
    page("Error", el("p", {}, e.message));
  }
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", async () => {
  try {
    await initAuth();
  } catch (e) {
    page("Error", el("p", {}, `Sign-in could not start: ${e.message}`));
    return;
  }
  route();
});
