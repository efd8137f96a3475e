/* The web UI of clientswarm serve: clusters, a cluster live, submit, results and compare.
   Plain JavaScript on the service's REST API (/api/v1); charts by the vendored uPlot. The API
   token stays in this tab (sessionStorage) and goes only in Authorization headers, never in a
   URL; the live progress is read with a streaming fetch (EventSource cannot send headers). */
(function () {
  "use strict";
  const API = "/api/v1";
  const TOKEN_KEY = "clientswarm-token";
  const FINAL = ["completed", "failed", "cancelled"];
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];
  const main = document.getElementById("main");
  let page = {timers: [], aborts: [], charts: []};

  // ------------------------------------------------------------------ helpers
  function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

  function authHeaders(extra) {
    const headers = Object.assign({}, extra || {});
    if (token()) headers.Authorization = "Bearer " + token();
    return headers;
  }

  class ApiError extends Error {
    constructor(status, body) {
      const detail = body && body.error ? body.error : {};
      super(detail.message || ("HTTP " + status));
      this.status = status;
      this.problems = detail.problems || [];
      this.locations = detail.locations || [];
    }
  }

  async function request(path, options) {
    const opts = options || {};
    const resp = await fetch(API + path, {
      method: opts.method || "GET",
      headers: authHeaders(opts.headers),
      body: opts.body,
      signal: opts.signal,
    });
    if (!resp.ok) {
      let body = null;
      try { body = await resp.json(); } catch (e) { body = null; }
      throw new ApiError(resp.status, body);
    }
    return resp;
  }

  async function api(path, options) {
    const resp = await request(path, options);
    const text = await resp.text();
    return text ? JSON.parse(text) : null;
  }

  function el(tag, attrs) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of Array.prototype.slice.call(arguments, 2)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function fmt(value, digits) {
    if (value === null || value === undefined || Number.isNaN(value)) return "-";
    const d = digits === undefined ? 3 : digits;
    if (Math.abs(value) >= 1000) return Math.round(value).toLocaleString("en");
    return Number(value.toPrecision(d)).toString();
  }

  function ms(seconds) { return seconds === null || seconds === undefined ? "-" : fmt(seconds * 1000); }

  function statusTag(status) { return el("span", {class: "status status-" + status, text: status}); }

  function table(headings, rows, attrs) {
    const head = el("tr", {}, ...headings.map((h) => el("th", {text: h})));
    return el("table", attrs || {}, el("thead", {}, head), el("tbody", {}, ...rows));
  }

  function banner(kind, text, id) { return el("div", {class: "banner " + kind, id: id, text: text}); }

  function explain(error) {
    if (error.status === 401) return "This service needs an API token: enter it above.";
    if (error.status === 403) return "The token is not accepted by this service.";
    return error.message;
  }

  function every(seconds, fn) {
    const id = setInterval(() => { if (!document.hidden) fn(); }, seconds * 1000);
    page.timers.push(id);
  }

  function leave() {
    page.timers.forEach(clearInterval);
    page.aborts.forEach((a) => a.abort());
    page.charts.forEach((c) => c.destroy());
    page = {timers: [], aborts: [], charts: []};
  }

  async function download(path, filename) {
    const resp = await request(path);
    const url = URL.createObjectURL(await resp.blob());
    const link = el("a", {href: url, download: filename});
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  // ------------------------------------------------------------------ login
  function showLogin() {
    document.getElementById("login-state").textContent = token() ? "token set" : "no token";
    document.getElementById("token").value = "";
  }

  document.getElementById("login").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = document.getElementById("token").value.trim();
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    showLogin();
    route();
  });
  document.getElementById("token-forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin();
    route();
  });

  // ------------------------------------------------------------------ clusters
  function clustersPage() {
    const filter = el("input", {type: "text", id: "filter", placeholder: "filter by name or id"});
    const status = el("select", {id: "status-filter"},
      ...["", "pending", "starting", "running", "stopping", "completed", "failed", "cancelled"]
        .map((s) => el("option", {value: s, text: s || "any status"})));
    const compare = el("button", {id: "compare", disabled: true, text: "Compare selected"});
    const body = el("div", {id: "clusters"});
    const selected = new Set();
    compare.addEventListener("click", () => {
      location.hash = "#/compare/" + Array.from(selected).join(",");
    });
    main.replaceChildren(el("h1", {text: "Clusters"}),
      el("div", {class: "toolbar"}, filter, status, compare), body);

    async function load() {
      let clusters;
      try {
        clusters = await api("/clusters" + (status.value ? "?status=" + status.value : ""));
      } catch (error) {
        body.replaceChildren(banner("bad", explain(error), "error"));
        return;
      }
      const words = filter.value.trim().toLowerCase();
      const shown = clusters.filter((c) =>
        !words || c.name.toLowerCase().includes(words) || c.id.includes(words));
      const rows = shown.map((c) => {
        const box = el("input", {type: "checkbox", "aria-label": "select " + c.id});
        box.checked = selected.has(c.id);
        box.addEventListener("change", () => {
          if (box.checked) selected.add(c.id); else selected.delete(c.id);
          compare.disabled = selected.size < 2;
        });
        return el("tr", {"data-id": c.id},
          el("td", {}, box),
          el("td", {}, el("a", {href: "#/clusters/" + c.id, text: c.id})),
          el("td", {text: c.name}), el("td", {}, statusTag(c.status)),
          el("td", {text: (c.created_at || "").replace("T", " ").slice(0, 19)}),
          el("td", {class: "num", text: fmt(c.elapsed_s) + " s"}),
          el("td", {class: "now", "data-now": c.id}),
          el("td", {class: "muted", text: c.reason || ""}));
      });
      body.replaceChildren(rows.length
        ? table(["", "id", "name", "status", "created", "elapsed", "now", "why"], rows, {id: "cluster-table"})
        : el("p", {class: "muted", id: "no-clusters", text: "No clusters yet: submit one."}));
      // What each running cluster is doing now: its last 10 s.
      for (const c of shown.filter((c) => c.status === "running")) {
        api("/monitor/clusters/" + c.id + "/stats").then((live) => {
          const recent = (live.window_10s || {}).total || {};
          const clients = Object.values(live.active_clients || {}).reduce((a, b) => a + b, 0);
          const cell = body.querySelector('[data-now="' + c.id + '"]');
          if (cell) cell.textContent = fmt(recent.request_rate) + " req/s, " + clients + " clients, TTFT p50 " + ms((recent.ttft_s || {}).p50) + " ms";
        }).catch(() => {});
      }
    }
    filter.addEventListener("input", load);
    status.addEventListener("change", load);
    load();
    every(2, load);
  }

  // ------------------------------------------------------------------ one cluster
  function liveChart(id, title, series, yLabel, y2) {
    // y2: [label of the right axis, names of the series on it]
    const right = y2 ? y2[1] : [];
    const opts = {
      title: title, width: 380, height: 220,
      scales: {x: {time: false}},
      series: [{label: "s"}].concat(series.map((s, i) => ({
        label: s, stroke: COLORS[i % COLORS.length], width: 2,
        scale: right.includes(s) ? "y2" : "y",
      }))),
      axes: [{label: "elapsed (s)"}, {label: yLabel, size: 56}],
    };
    if (y2) opts.axes.push({scale: "y2", side: 1, label: y2[0], size: 56, grid: {show: false}});
    const holder = el("div", {class: "chart", id: "live-" + id});
    const data = [[]].concat(series.map(() => []));
    const chart = new uPlot(opts, data, holder);
    page.charts.push(chart);
    return {holder: holder, push: function (x, values) {
      data[0].push(x);
      values.forEach((v, i) => data[i + 1].push(v === undefined ? null : v));
      chart.setData(data);
      holder.setAttribute("data-points", String(data[0].length));
    }};
  }

  function clusterPage(id) {
    const head = el("div", {id: "cluster-head"});
    const now = el("div", {id: "now"});
    const charts = el("div", {class: "charts", id: "live-charts"});
    const groups = el("div", {id: "groups"});
    const clients = el("div", {id: "clients"});
    const events = el("div", {id: "events", class: "events"});
    const results = el("div", {id: "results"});
    main.replaceChildren(head, now, charts, results,
      el("h2", {text: "Groups"}), groups, el("h2", {text: "Clients"}), clients,
      el("h2", {text: "Events"}), events);
    let final = false;
    let lastEvent = 0;

    async function act(path, button) {
      button.disabled = true;
      try { await api(path, {method: "POST"}); } catch (error) {
        head.append(banner("bad", explain(error)));
      }
      refresh();
    }

    async function refresh() {
      let cluster;
      try { cluster = await api("/clusters/" + id); } catch (error) {
        head.replaceChildren(banner("bad", explain(error), "error"));
        return;
      }
      const running = !FINAL.includes(cluster.status);
      const stop = running
        ? el("button", {class: "danger", id: "stop-cluster", text: "Stop cluster",
          onclick: (e) => act("/clusters/" + id + "/stop", e.target)})
        : null;
      head.replaceChildren(el("h1", {}, cluster.name + " ", el("span", {class: "muted", text: id})),
        el("div", {class: "toolbar"}, statusTag(cluster.status),
          el("span", {class: "muted", text: cluster.reason || ""}), stop));
      groups.replaceChildren(table(["group", "clients", "interaction", "load", "client states", ""],
        (cluster.groups || []).map((g) => el("tr", {"data-group": g.name},
          el("td", {text: g.name}), el("td", {class: "num", text: g.clients}),
          el("td", {text: g.interaction}), el("td", {text: g.load}),
          el("td", {text: Object.entries(g.client_states || {}).map(([k, v]) => k + " " + v).join(", ")}),
          el("td", {}, running ? el("button", {class: "danger stop-group", text: "Stop group",
            onclick: (e) => act("/clusters/" + id + "/groups/" + encodeURIComponent(g.name) + "/stop", e.target)}) : null)))));
      const list = await api("/clusters/" + id + "/clients").catch(() => []);
      clients.replaceChildren(table(["client", "group", "worker", "state", "ok", "failed", ""],
        list.slice(0, 200).map((c) => el("tr", {"data-client": c.id},
          el("td", {class: "num", text: c.id}), el("td", {text: c.group}),
          el("td", {class: "num", text: c.worker}), el("td", {text: c.state}),
          el("td", {class: "num", text: c.succeeded}), el("td", {class: "num", text: c.failed}),
          el("td", {}, running && c.state === "running" ? el("button", {class: "stop-client", text: "Stop",
            onclick: (e) => act("/clusters/" + id + "/clients/" + c.id + "/stop", e.target)}) : null)))));
      if (list.length > 200) clients.append(el("p", {class: "muted", text: (list.length - 200) + " more"}));
      const fresh = await api("/clusters/" + id + "/events?after=" + lastEvent).catch(() => []);
      for (const e of fresh) {
        lastEvent = Math.max(lastEvent, e.id);
        events.prepend(el("div", {class: "event", "data-kind": e.kind},
          el("span", {class: "muted", text: new Date(e.ts * 1000).toISOString().slice(11, 19) + " "}),
          el("b", {text: e.kind + " "}), e.message));
      }
      if (!running && !final) { final = true; showResults(cluster); }
    }

    function showLive() {
      const rate = liveChart("rate", "Throughput (last 10 s)", ["req/s", "out tok/s"], "requests/s",
        ["output tokens/s", ["out tok/s"]]);
      const lat = liveChart("latency", "Latency (last 10 s)", ["TTFT p50", "TTFT p99", "ITL p50", "ITL p99"], "ms");
      const load = liveChart("load", "Errors and load", ["in flight", "active clients", "workers running", "failed/s"],
        "count", ["failed/s", ["failed/s"]]);
      charts.replaceChildren(rate.holder, lat.holder, load.holder);
      let engine = null;  // the first scraped target's engine, once its metrics come
      const abort = new AbortController();
      page.aborts.push(abort);
      follow(id, abort.signal, (kind, view) => {
        if (kind === "end") { refresh(); return; }
        const live = view.live || {};
        const recent = (live.window_10s || {}).total || {};
        const x = view.elapsed_s || 0;
        rate.push(x, [recent.request_rate, recent.output_token_rate]);
        lat.push(x, [(recent.ttft_s || {}).p50 * 1000, (recent.ttft_s || {}).p99 * 1000,
          (recent.itl_s || {}).p50 * 1000, (recent.itl_s || {}).p99 * 1000].map((v) => Number.isFinite(v) ? v : null));
        const failedRate = recent.duration_s > 0 ? recent.failed / recent.duration_s : 0;
        const active = Object.values(live.active_clients || {}).reduce((a, b) => a + b, 0);
        load.push(x, [view.in_flight, active, (view.workers || {}).running || 0, failedRate]);
        const scraped = Object.entries(view.engine || {});
        if (scraped.length) {
          const [target, gauges] = scraped[0];
          if (!engine) {
            engine = liveChart("engine", "Engine of " + target + " (its metrics)",
              ["running", "waiting", "KV cache %"], "requests", ["KV cache %", ["KV cache %"]]);
            charts.append(engine.holder);
          }
          const usage = gauges.kv_cache_usage === null || gauges.kv_cache_usage === undefined
            ? null : 100 * gauges.kv_cache_usage;
          engine.push(x, [gauges.running, gauges.waiting, usage]);
        }
        const since = (live.since_start || {}).total || {};
        const warnings = view.warnings || [];
        now.replaceChildren(el("div", {class: "kv"},
          el("span", {text: "elapsed"}), el("span", {id: "elapsed", text: fmt(x) + " s"}),
          el("span", {text: "ok / failed"}), el("span", {id: "ok-failed", text: (since.succeeded || 0) + " / " + (since.failed || 0)}),
          el("span", {text: "in flight"}), el("span", {text: view.in_flight === undefined ? "-" : view.in_flight}),
          el("span", {text: "req/s now"}), el("span", {text: fmt(recent.request_rate)}),
          el("span", {text: "TTFT p50 now"}), el("span", {text: ms((recent.ttft_s || {}).p50) + " ms"})),
          warnings.length ? banner("warn", "Not trustworthy right now: " + warnings[0], "validity")
            : banner("ok", "The numbers are trustworthy so far.", "validity"));
      }).catch((error) => { if (error.name !== "AbortError") now.append(banner("bad", explain(error))); });
    }

    async function showResults(cluster) {
      page.aborts.forEach((a) => a.abort());
      charts.replaceChildren();
      let summary;
      try { summary = await api("/clusters/" + id + "/results"); } catch (error) {
        results.replaceChildren(banner("bad", explain(error)));
        return;
      }
      const failed = (summary.thresholds || []).filter((t) => !t.passed);
      const verdict = cluster.status !== "completed" ? cluster.status + ": " + (cluster.reason || "")
        : failed.length ? "thresholds failed: " + failed.map((t) => t.expr).join(", ")
          : summary.trustworthy === false ? "completed, but not trustworthy: " + (summary.warnings || [])[0]
            : "completed";
      const name = cluster.name + "-" + id;
      const downloads = el("div", {class: "toolbar"},
        el("button", {text: "summary.json", onclick: () => download("/clusters/" + id + "/results", name + "-summary.json")}),
        ...["jsonl", "csv", "parquet"].map((f) => el("button", {text: "samples." + f, "data-format": f,
          onclick: () => download("/clusters/" + id + "/samples?format=" + f, name + "-samples." + f)})),
        el("button", {text: "report.html", onclick: () => download("/clusters/" + id + "/report", name + "-report.html")}));
      // Sandboxed: the report's scripts run in an origin of their own, away from the token.
      const frame = el("iframe", {class: "report", id: "report", title: "report", sandbox: "allow-scripts"});
      now.replaceChildren();
      results.replaceChildren(el("h2", {text: "Results"}),
        banner(verdict.startsWith("completed") && verdict === "completed" ? "ok" : "warn", verdict, "verdict"),
        downloads, frame);
      try {
        frame.srcdoc = await (await request("/clusters/" + id + "/report")).text();
      } catch (error) { results.append(banner("bad", explain(error))); }
    }

    refresh().then(() => { if (!final) showLive(); });
    every(2, () => { if (!final) refresh(); });
  }

  async function follow(id, signal, onEvent) {
    const resp = await request("/clusters/" + id + "/progress?interval_s=1", {signal: signal});
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, {stream: true});
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const chunk = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let kind = "message";
        const data = [];
        for (const line of chunk.split("\n")) {
          if (line.startsWith("event:")) kind = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).trim());
        }
        if (data.length) onEvent(kind, JSON.parse(data.join("\n")));
      }
    }
  }

  // ------------------------------------------------------------------ submit
  const EXAMPLE = [
    "name: hello",
    "target: {url: \"http://127.0.0.1:8000\", model: my-model}",
    "groups:",
    "  - name: chat",
    "    clients: 4",
    "    interaction: {kind: chat, prompts: [\"Hello!\"], max_tokens: 32}",
    "    load: {kind: closed}",
    "    stop: {duration_s: 30}",
    "",
  ].join("\n");

  function submitPage() {
    const text = el("textarea", {id: "config", spellcheck: "false", "aria-label": "configuration"});
    text.value = sessionStorage.getItem("clientswarm-draft") || EXAMPLE;
    const file = el("input", {type: "file", id: "config-file", accept: ".yaml,.yml,.json"});
    const run = el("button", {id: "run", disabled: true, text: "Run"});
    const verdict = el("div", {id: "validation"});
    const annotated = el("pre", {class: "annotated", id: "annotated"});
    main.replaceChildren(el("h1", {text: "Submit a configuration"}),
      el("div", {class: "toolbar"}, el("label", {}, "Upload ", file), run),
      el("div", {class: "editor"}, el("div", {class: "pane"}, text),
        el("div", {class: "pane"}, verdict, annotated)));
    let timer = null;
    let generation = 0;

    function annotate(problems) {
      const byLine = new Map();
      for (const p of problems) {
        if (!byLine.has(p.line)) byLine.set(p.line, []);
        byLine.get(p.line).push(p);
      }
      const lines = text.value.split("\n");
      annotated.replaceChildren(...lines.flatMap((line, i) => {
        const n = i + 1;
        const here = byLine.get(n) || [];
        return [el("span", {class: "ln" + (here.length ? " has-problem" : ""), "data-n": n}, line || " "),
          ...here.map((p) => el("span", {class: "problem", "data-line": n, "data-column": p.column,
            text: "↑ column " + p.column + ": " + p.message}))];
      }));
      const beyond = problems.filter((p) => p.line > lines.length);
      beyond.forEach((p) => annotated.append(el("span", {class: "problem", "data-line": p.line, text: p.message})));
    }

    async function validate() {
      const mine = ++generation;
      sessionStorage.setItem("clientswarm-draft", text.value);
      try {
        const ok = await api("/validate", {method: "POST", body: text.value,
          headers: {"Content-Type": "application/yaml"}});
        if (mine !== generation) return;
        run.disabled = false;
        verdict.replaceChildren(banner("ok", "Valid: " + ok.name + " — " + ok.groups.map((g) =>
          g.name + " (" + g.clients + " × " + g.interaction + ")").join(", "), "valid"));
        annotate([]);
      } catch (error) {
        if (mine !== generation) return;
        run.disabled = true;
        if (error.status !== 422) {
          verdict.replaceChildren(banner("bad", explain(error), "error"));
          return;
        }
        const located = error.locations.length ? error.locations
          : error.problems.map((m) => ({message: m, line: 1, column: 1}));
        verdict.replaceChildren(el("ul", {class: "problems", id: "problems"},
          ...located.map((p) => el("li", {"data-line": p.line, text: "line " + p.line + ", column " + p.column + ": " + p.message}))));
        annotate(located);
      }
    }

    text.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(validate, 350);
    });
    file.addEventListener("change", async () => {
      if (!file.files.length) return;
      text.value = await file.files[0].text();
      validate();
    });
    run.addEventListener("click", async () => {
      run.disabled = true;
      try {
        const created = await api("/clusters", {method: "POST", body: text.value,
          headers: {"Content-Type": "application/yaml"}});
        location.hash = "#/clusters/" + created.id;
      } catch (error) {
        verdict.replaceChildren(banner("bad", explain(error), "error"));
        run.disabled = false;
      }
    });
    validate();
  }

  // ------------------------------------------------------------------ compare
  async function comparePage(ids) {
    main.replaceChildren(el("h1", {text: "Compare " + ids.join(" · ")}),
      el("p", {class: "muted", text: "The first cluster is the baseline; each other is compared with it."}));
    const frame = el("iframe", {class: "report", id: "comparison", title: "comparison", sandbox: "allow-scripts"});
    main.append(frame);
    try {
      const query = ids.map((id) => "clusters=" + encodeURIComponent(id)).join("&");
      frame.srcdoc = await (await request("/compare?format=html&" + query)).text();
    } catch (error) { main.append(banner("bad", explain(error), "error")); }
  }

  // ------------------------------------------------------------------ routing
  let session = {token_required: false};

  function route() {
    leave();
    const hash = location.hash || "#/";
    document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.getAttribute("href") === hash));
    if (session.token_required && !token()) {
      // Ask first rather than let every call fail with 401.
      main.replaceChildren(el("h1", {text: "clientswarm"}),
        banner("warn", "This service needs an API token: enter it above.", "need-token"));
      document.getElementById("token").focus();
      return;
    }
    let match;
    if ((match = hash.match(/^#\/clusters\/([\w-]+)$/))) clusterPage(match[1]);
    else if ((match = hash.match(/^#\/compare\/([\w,-]+)$/))) comparePage(match[1].split(","));
    else if (hash === "#/submit") submitPage();
    else clustersPage();
  }

  window.addEventListener("hashchange", route);
  showLogin();
  fetch("/ui/session").then((r) => r.json()).then((s) => { session = s; }).catch(() => {}).then(route);
})();
