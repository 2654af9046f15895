"use strict";
// The Clipper dashboard: polls /dashboard/api/* every 2 s and draws the views (no libraries).
(function () {
  const POLL_MS = 2000, WINDOW_S = 600;
  const COLORS = ["#5b9cff", "#3ecf8e", "#f5b942", "#b28cff", "#ff6b6b", "#4dd0e1"];
  const state = { csrf: null, overview: null, samples: [], lastT: 0, view: "cluster", shapes: {}, actions: {}, unavailable: {} };
  const $ = (sel, root) => (root || document).querySelector(sel);

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (v !== null && v !== undefined && v !== false) e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c.nodeType ? c : String(c));
    return e;
  }
  // replaceChildren does not flatten arrays nor drop nulls: this does
  const put = (parent, ...children) => parent.replaceChildren(...children.flat(2).filter((c) => c !== null && c !== undefined));
  const pill = (text, kind) => el("span", { class: "pill " + (kind || "") }, text);
  const fmt = (x, d) => (x === null || x === undefined || Number.isNaN(x) ? "–" : Number(x).toFixed(d === undefined ? 1 : d));
  const pct = (x) => (x === null || x === undefined ? "–" : (100 * x).toFixed(1) + " %");
  const ago = (t) => new Date(t * 1000).toLocaleTimeString();

  async function api(path, opts) {
    const r = await fetch("/dashboard/api/" + path, Object.assign({ credentials: "same-origin" }, opts || {}));
    if (r.status === 401) { location.reload(); throw new Error("logged out"); }
    const body = await r.json();
    if (!r.ok) throw new Error(body.error || body.result || r.statusText);
    return body;
  }

  function toast(text, bad) {
    const t = $("#toast");
    t.textContent = text;
    t.className = "toast show" + (bad ? " bad" : "");
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => (t.className = "toast"), 5000);
  }

  async function act(body) {
    try {
      const r = await api("action", { method: "POST", headers: { "Content-Type": "application/json",
        "X-CSRF-Token": state.csrf }, body: JSON.stringify(body) });
      toast("Done: " + r.what + " — " + r.result.slice(0, 200));
      state.shapes = {};
      await poll();
    } catch (e) { toast("Failed: " + e.message, true); }
  }

  // -- charts: a canvas line chart with a time axis, y grid, legend and an optional threshold ----------
  function drawChart(canvas, series, opts) {
    const dpr = window.devicePixelRatio || 1, w = canvas.clientWidth, h = canvas.clientHeight;
    canvas.width = w * dpr; canvas.height = h * dpr;
    const g = canvas.getContext("2d");
    g.scale(dpr, dpr);
    g.clearRect(0, 0, w, h);
    const L = 44, R = 8, T = 8, B = 20, now = Date.now() / 1000, t0 = now - (opts.window || 300);
    let ymax = opts.threshold || 0;
    for (const s of series) for (const [, y] of s.points) ymax = Math.max(ymax, y);
    ymax = opts.max || (ymax <= 0 ? 1 : ymax * 1.15);
    const X = (t) => L + ((t - t0) / (now - t0)) * (w - L - R), Y = (y) => T + (1 - y / ymax) * (h - T - B);
    g.font = "11px system-ui, sans-serif"; g.fillStyle = "#8a96b0"; g.strokeStyle = "#2a3550"; g.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const y = (ymax * i) / 4, py = Y(y);
      g.beginPath(); g.moveTo(L, py); g.lineTo(w - R, py); g.stroke();
      const label = opts.percent ? (100 * y).toFixed(ymax < 0.05 ? 2 : ymax < 0.5 ? 1 : 0) + "%"
        : y >= 100 || ymax >= 400 ? y.toFixed(0) : y.toFixed(ymax >= 40 ? 1 : ymax >= 0.4 ? 2 : 3);
      g.fillText(label, 4, py + 4);
    }
    const span = now - t0, step = span <= 120 ? 30 : span <= 300 ? 60 : 120;
    for (let k = 0; k * step <= span; k++) {
      const px = X(now - k * step), label = k === 0 ? "now" : step < 60 ? "-" + k * step + "s" : "-" + (k * step) / 60 + "m";
      g.fillText(label, Math.min(px - 10, w - R - 22), h - 5);
    }
    if (opts.threshold) {
      g.setLineDash([5, 4]); g.strokeStyle = "#ff6b6b";
      g.beginPath(); g.moveTo(L, Y(opts.threshold)); g.lineTo(w - R, Y(opts.threshold)); g.stroke();
      g.setLineDash([]); g.fillStyle = "#ff6b6b"; g.fillText(opts.thresholdLabel || "objective", w - R - 60, Y(opts.threshold) - 4);
    }
    series.forEach((s, i) => {
      const pts = s.points.filter(([t]) => t >= t0);
      g.strokeStyle = s.color || COLORS[i % COLORS.length]; g.lineWidth = 2; g.beginPath();
      pts.forEach(([t, y], j) => (j ? g.lineTo(X(t), Y(y)) : g.moveTo(X(t), Y(y))));
      g.stroke();
    });
    canvas.dataset.points = String(series.reduce((n, s) => n + s.points.length, 0));
  }

  // the charts show what has been sampled since the page opened, between 1 and 10 minutes
  const windowS = () => Math.min(WINDOW_S, Math.max(60, state.samples.length ? Date.now() / 1000 - state.samples[0].t : 60));

  function chartCard(id, title, legend) {
    return el("div", { class: "card" },
      el("div", { class: "chart-title" }, el("b", {}, title),
        el("span", { class: "legend" }, legend.map(([name, c]) => el("span", {}, el("i", { style: "background:" + c }), name)))),
      el("canvas", { class: "chart", id }));
  }

  const pointsOf = (kind, name, field) =>
    state.samples.filter((s) => s[kind] && s[kind][name] && s[kind][name][field] !== undefined)
      .map((s) => [s.t, s[kind][name][field]]);

  // -- views -----------------------------------------------------------------------------------------
  function renderCluster(o) {
    const c = o.cluster, v = $("#view-cluster");
    const up = c.frontends.filter((f) => f.up).length;
    const stat = (label, value, extra) => el("div", { class: "card stat" }, el("div", { class: "label" }, label),
      el("div", { class: "value" }, value), extra || null);
    const healthy = o.replicas.filter((r) => r.healthy).length;
    put(v, 
      el("h2", {}, "Cluster"),
      el("div", { class: "grid" },
        stat("Clipper", c.version),
        stat("Backend", c.backend),
        stat("Store", el("code", { class: "small" }, c.store)),
        stat("Query frontends", c.frontends.length ? up + " / " + c.frontends.length + " up" : "not recorded"),
        stat("Sync", c.sync),
        stat("Applications", o.apps.length),
        stat("Models", o.models.length),
        stat("Replicas", healthy + " healthy / " + o.replicas.length),
        stat("Admin token", c.auth_required ? "required" : "none (open)"),
        stat("Management up", Math.round(c.uptime_s / 60) + " min")),
      el("h2", {}, "Query frontends"),
      el("div", { class: "card" }, el("table", {},
        el("tr", {}, el("th", {}, "metrics"), el("th", {}, "state"), el("th", {}, "error")),
        c.frontends.length ? c.frontends.map((f) => el("tr", {}, el("td", {}, el("code", {}, f.metrics_url)),
          el("td", {}, f.up ? pill("up", "ok") : pill("down", "bad")), el("td", { class: "muted" }, f.error || "")))
          : el("tr", {}, el("td", { class: "muted", colspan: 3 }, "no query frontend metrics address given (--metrics-url)")))),
      el("h2", {}, "Throughput of every application"),
      el("div", { class: "charts wide" }, chartCard("chart-cluster-qps", "requests / s",
        o.apps.map((a, i) => [a.name, COLORS[i % COLORS.length]]))));
    drawChart($("#chart-cluster-qps"), o.apps.map((a) => ({ points: pointsOf("apps", a.name, "qps") })), { window: windowS() });
  }

  const statsText = (t) => (t.stats ? `${t.stats.requests} req · ${t.stats.errors} err` : "");

  function trafficEditor(a) {
    const tr = a.traffic;
    if (!tr || !tr.targets.length) return el("p", { class: "muted" }, "no target: link a model to this application");
    const total = tr.targets.reduce((n, t) => n + t.weight, 0) || 1;
    const bar = el("div", { class: "bar" }, tr.targets.map((t, i) =>
      el("span", { style: `width:${(100 * t.weight) / total}%;background:${COLORS[i % COLORS.length]}`,
        title: `${t.model_name}:${t.model_version} ${t.weight}` })));
    const inputs = tr.targets.map((t) => el("input", { class: "weight", type: "number", min: "0", step: "any",
      value: String(t.weight), "data-target": t.model_name + ":" + t.model_version }));
    const rows = tr.targets.map((t, i) => el("tr", {},
      el("td", {}, el("i", { style: `display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px;background:${COLORS[i % COLORS.length]}` }),
        el("code", {}, t.model_name + ":" + t.model_version)),
      el("td", {}, inputs[i]), el("td", {}, pct(t.weight / total)),
      el("td", { class: "muted stats", "data-app": a.name, "data-index": String(i) }, statsText(t))));
    const apply = el("button", { class: "set-traffic", onclick: () => {
      const targets = tr.targets.map((t, i) => ({ model_name: t.model_name, model_version: t.model_version,
        weight: Number(inputs[i].value) }));
      const body = { action: "set_app_traffic", name: a.name, targets };
      if (tr.sticky_key) body.sticky_key = tr.sticky_key;
      if (tr.shadow) body.shadow = { model_name: tr.shadow.model_name, model_version: tr.shadow.model_version, percent: tr.shadow.percent };
      if (tr.selection) body.selection = { policy: tr.selection.policy, eta: tr.selection.eta, gamma: tr.selection.gamma };
      act(body);
    } }, "Set weights");
    return el("div", {}, bar, el("table", {}, el("tr", {}, el("th", {}, "target"), el("th", {}, "weight"),
      el("th", {}, "share"), el("th", {}, "since configured")), rows),
      el("div", { class: "row", style: "margin-top:8px" }, apply,
        tr.shadow ? el("span", { class: "muted" }, `shadow ${tr.shadow.model_name}:${tr.shadow.model_version} at ${tr.shadow.percent} %`) : null));
  }

  function renderApps(o) {
    const v = $("#view-apps");
    // re-rendered only when the configuration changes (a weight being edited survives the polls)
    const shape = JSON.stringify(o.apps, (k, v) => (k === "stats" ? undefined : v));
    if (state.shapes.apps !== shape) {
      state.shapes.apps = shape;
      put(v, el("h2", {}, "Applications"), o.apps.length ? null : el("p", { class: "muted" }, "no application"),
        o.apps.map((a) => el("div", { class: "app card", id: "app-" + a.name },
          el("div", { class: "app-head" }, el("span", { class: "name" }, a.name), pill(a.input_type),
            pill("objective " + fmt(a.slo_ms, 1) + " ms"), el("span", { class: "muted" }, "default output " + JSON.stringify(a.default_output)),
            el("span", { class: "muted" }, "models: " + (a.links.join(", ") || "none"))),
          el("div", { class: "row", style: "align-items:flex-start;gap:24px" },
            el("div", { style: "flex:1;min-width:320px" }, el("h3", {}, "Targets and weights"), trafficEditor(a))),
          el("div", { class: "charts", style: "margin-top:12px" },
            chartCard(`q-${a.name}`, "throughput (req/s)", [["req/s", COLORS[0]]]),
            chartCard(`l-${a.name}`, "latency (ms)", [["p50", COLORS[1]], ["p99", COLORS[2]], ["objective", "#ff6b6b"]]),
            chartCard(`d-${a.name}`, "default output rate", [["defaults", COLORS[4]]]),
            chartCard(`c-${a.name}`, "cache hit rate", [["hits", COLORS[3]]]),
            chartCard(`b-${a.name}`, "batch size", [["mean", COLORS[0]], ["p99", COLORS[5]]])))));
    }
    for (const td of v.querySelectorAll("td.stats")) {
      const a = o.apps.find((x) => x.name === td.dataset.app), t = a && a.traffic && a.traffic.targets[Number(td.dataset.index)];
      if (t) td.textContent = statsText(t);
    }
    for (const a of o.apps) {
      const targets = a.traffic ? a.traffic.targets.map((t) => t.model_name + ":" + t.model_version) : [];
      const model = targets[0];
      drawChart($(`#q-${CSS.escape(a.name)}`), [{ points: pointsOf("apps", a.name, "qps") }], { window: windowS() });
      drawChart($(`#l-${CSS.escape(a.name)}`), [{ points: pointsOf("apps", a.name, "p50_ms"), color: COLORS[1] },
        { points: pointsOf("apps", a.name, "p99_ms"), color: COLORS[2] }], { window: windowS(), threshold: a.slo_ms });
      drawChart($(`#d-${CSS.escape(a.name)}`), [{ points: pointsOf("apps", a.name, "default_ratio"), color: COLORS[4] }], { window: windowS(), percent: true });
      drawChart($(`#c-${CSS.escape(a.name)}`), [{ points: model ? pointsOf("models", model, "cache_hit_ratio") : [], color: COLORS[3] }], { window: windowS(), percent: true, max: 1 });
      drawChart($(`#b-${CSS.escape(a.name)}`), [{ points: model ? pointsOf("models", model, "batch_mean") : [] },
        { points: model ? pointsOf("models", model, "batch_p99") : [], color: COLORS[5] }], { window: windowS() });
    }
  }

  async function showLogs(m, ver, box) {
    try {
      const r = await api(`logs?model=${encodeURIComponent(m)}&version=${encodeURIComponent(ver)}`);
      if (!r.available) { put(box, el("p", { class: "muted" }, r.reason)); return; }
      put(box, ...(r.replicas.length ? r.replicas.map((x) => el("div", {}, el("h3", { style: "margin-top:10px" }, `${m}:${ver} replica ${x.replica}`),
        el("pre", { class: "log" }, x.lines.join("\n") || "(empty)"))) : [el("p", { class: "muted" }, "no log file")]));
    } catch (e) { put(box, el("p", { class: "error" }, e.message)); }
  }

  function renderModels(o) {
    const v = $("#view-models");
    const shape = JSON.stringify([o.models, o.replicas]);
    if (state.shapes.models === shape) return;
    state.shapes.models = shape;
    put(v, el("h2", {}, "Models"), o.models.length ? null : el("p", { class: "muted" }, "no model"),
      o.models.map((m) => {
        const logBox = el("div", {});
        return el("div", { class: "card app", id: "model-" + m.name },
          el("div", { class: "app-head" }, el("span", { class: "name" }, m.name),
            pill("current " + (m.current || "none"), "ok"), m.previous ? pill("previous " + m.previous) : null),
          el("table", {}, el("tr", {}, el("th", {}, "version"), el("th", {}, "image"), el("th", {}, "replicas"), el("th", {}, "")),
            m.versions.map((ver) => {
              const reps = o.replicas.filter((r) => r.model === m.name && r.version === ver.version);
              let scale = null;
              if (state.actions.set_num_replicas && ver.desired_replicas) {
                const n = el("input", { class: "replicas", type: "number", min: "1", max: "32", step: "1", value: String(ver.desired_replicas) });
                scale = el("span", { class: "row", style: "gap:6px" }, n, el("button", { class: "ghost scale", "data-model": m.name, "data-version": ver.version,
                  onclick: () => act({ action: "set_num_replicas", model_name: m.name, model_version: ver.version, num_replicas: Number(n.value) }) }, "Scale"));
              }
              return el("tr", {},
                el("td", {}, el("code", {}, ver.version), " ", ver.version === m.current ? pill("current", "ok") : ver.version === m.previous ? pill("previous") : null),
                el("td", { class: "muted" }, el("code", {}, ver.image)),
                el("td", {}, reps.length ? reps.map((r) => el("span", { style: "margin-right:6px" },
                  pill(`#${r.replica} ${r.state}` + (r.restarts !== null && r.restarts !== undefined ? ` · ${r.restarts} restarts` : ""), r.healthy ? "ok" : "warn"))) : el("span", { class: "muted" }, "none connected"),
                  ver.desired_replicas !== null && ver.desired_replicas !== undefined ? el("span", { class: "muted desired" }, ` (${ver.desired_replicas} desired)`) : null),
                el("td", { class: "row" }, scale,
                  ver.version !== m.current ? el("button", { class: "make-current", "data-model": m.name, "data-version": ver.version,
                    onclick: () => { if (confirm(`Make ${m.name}:${ver.version} the current version?`)) act({ action: "set_model_version", model_name: m.name, model_version: ver.version }); } },
                    ver.version === m.previous ? "Roll back" : "Make current") : null,
                  el("button", { class: "ghost logs", onclick: () => showLogs(m.name, ver.version, logBox) }, "Logs")));
            })),
          state.unavailable.set_num_replicas ? el("p", { class: "hint scale" }, "Scale (replicas): not from this dashboard: " + state.unavailable.set_num_replicas)
            : el("p", { class: "hint scale" }, "Scale: sets the replicas of a version in the local cluster's process table, which its supervisor runs (a new replica runs the same command as those there; a version without one is started by clipper apply or the admin API). A model that clipper apply manages is scaled back to its spec.replicas by the next apply or watch."),
          logBox);
      }));
  }

  // -- rollouts: the reconciler's canary / blueGreen records (read from the cluster's store) ---------
  const PHASES = { Progressing: "warn", Succeeded: "ok", RolledBack: "bad", Aborted: "bad" };
  const limit = (x, percent) => (x === null || x === undefined ? "none" : percent ? (100 * x).toFixed(1) + " %" : fmt(x, 2));

  // the analysis numbers and the record's times change at every poll of the driving apply: they are
  // redrawn in place, the rest of the card (and its buttons, perhaps being clicked) only on a change
  function analysisTable(r) {
    const a = r.analysis || {}, n = r.numbers || {};
    const check = (label, value, max, percent, bad) => el("tr", {}, el("td", {}, label),
      el("td", { class: bad ? "bad-text" : "" }, value), el("td", { class: "muted" }, "max " + limit(max, percent)));
    const over = (x, max) => x !== null && x !== undefined && max !== null && max !== undefined && x > max;
    return el("table", { class: "analysis" },
      el("tr", {}, el("th", {}, "analysis of step " + Math.min(r.step + 1, r.steps.length)), el("th", {}, "now"), el("th", {}, "threshold")),
      el("tr", {}, el("td", {}, "requests to " + r.to_version), el("td", {}, String(n.requests === undefined ? "–" : n.requests)),
        el("td", { class: "muted" }, "min " + a.min_requests + " · " + fmt(n.elapsedSeconds, 0) + " s into the step (without them, rolled back after " + fmt(a.step_timeout_seconds, 0) + " s)")),
      check("error rate", pct(n.errorRate), a.max_error_rate, true, over(n.errorRate, a.max_error_rate)),
      check("default rate", pct(n.defaultRate), a.max_default_rate, true, over(n.defaultRate, a.max_default_rate)),
      check("p99 latency / objective", n.p99LatencyRatio === null || n.p99LatencyRatio === undefined ? "–" : Number(n.p99LatencyRatio).toPrecision(2), a.max_p99_latency_ratio, false, over(n.p99LatencyRatio, a.max_p99_latency_ratio)));
  }

  const rolloutMeta = (r) => el("p", { class: "muted meta" }, `started ${r.started} by ${r.who || "?"} · updated ${r.updated}` +
    (r.step_started && r.phase === "Progressing" ? ` · step since ${r.step_started}` : ""));

  function rolloutCard(r, o, canAct) {
    const done = r.phase !== "Progressing";
    const current = done ? (r.phase === "Succeeded" ? r.steps.length : -1) : r.step;
    const steps = el("div", { class: "steps" }, r.steps.map((s, i) => el("div", {
      class: "step" + (i === current ? " current" : "") + (i < current || r.phase === "Succeeded" ? " passed" : ""),
      "data-step": String(i) },
      el("div", { class: "label" }, "step " + (i + 1)), el("div", { class: "value" }, fmt(s.weight, 0) + " %"),
      el("div", { class: "muted" }, s.pause ? "pause " + fmt(s.pause, 0) + " s" : "no pause"))));
    const model = o.models.find((m) => m.name === r.model);
    const fromReplicas = o.replicas.filter((x) => x.model === r.model && x.version === r.from_version).length;
    let actions;
    if (!done && canAct) {
      actions = el("div", {}, el("div", { class: "row" },
        el("button", { class: "promote", "data-model": r.model, onclick: () => {
          if (confirm(`Promote ${r.model}:${r.to_version} to 100 % now?`)) act({ action: "rollout_promote", model: r.model }); } }, "Promote"),
        el("button", { class: "abort danger", "data-model": r.model, onclick: () => {
          if (confirm(`Abort the rollout and send all traffic back to ${r.model}:${r.from_version}?`)) act({ action: "rollout_abort", model: r.model }); } }, "Abort (roll back)")),
        el("p", { class: "hint" }, "Promote and abort are requests left in the cluster's store: the clipper apply or watch driving this rollout carries them out at its next poll (about a second); if none runs, they take effect when the next apply or watch resumes the rollout (clipper rollout promote|abort acts at once when no apply runs)."));
    } else if (!done) {
      actions = el("p", { class: "hint" }, "Promote or abort with clipper rollout promote|abort " + r.model + " on the applying machine (this management API has no admin token, so the dashboard does not act on rollouts).");
    } else if (r.phase === "Succeeded" && model && model.current === r.to_version) {
      actions = fromReplicas && canAct
        ? el("div", { class: "row" }, el("button", { class: "rollback", "data-model": r.model, onclick: () => {
          if (confirm(`Make ${r.model}:${r.from_version} the current version again?`)) act({ action: "set_model_version", model_name: r.model, model_version: r.from_version }); } }, "Roll back to " + r.from_version))
        : el("p", { class: "hint" }, `Roll back: ${r.from_version} has no replica running (the apply stopped them after the promotion), so switching to it here would only send defaults; use clipper rollback, or the manifests, which start its replicas.`);
    }
    return el("div", { class: "card app rollout", id: "rollout-" + r.model, "data-phase": r.phase },
      el("div", { class: "app-head" }, el("span", { class: "name" }, r.model), pill(r.strategy), pill(r.phase, PHASES[r.phase] || ""),
        el("span", {}, el("code", {}, r.from_version), " → ", el("code", {}, r.to_version)),
        el("span", { class: "muted" }, "applications: " + (r.apps.join(", ") || "none"))),
      r.reason ? el("p", { class: "reason " + (r.phase === "Succeeded" ? "" : "error") }, r.reason) : null,
      el("div", { class: "bar" }, el("span", { style: `width:${100 - r.weight}%;background:${COLORS[0]}`, title: r.from_version }),
        el("span", { style: `width:${r.weight}%;background:${COLORS[1]}`, title: r.to_version })),
      el("div", { class: "muted weights" }, `${r.from_version} ${fmt(100 - r.weight, 0)} % · ${r.to_version} ${fmt(r.weight, 0)} %`),
      steps,
      el("div", { class: "row", style: "align-items:flex-start;gap:24px;margin-top:10px" },
        el("div", { style: "flex:1;min-width:360px" }, analysisTable(r)),
        el("div", { style: "flex:1;min-width:300px" },
          rolloutMeta(r),
          r.pending && !done ? el("p", { class: "pending" }, pill(`${r.pending.command} requested`, "warn"), ` by ${r.pending.who} at ${r.pending.time}: waiting for the apply or watch driving the rollout`) : null,
          actions || null)));
  }

  async function renderRollouts(o) {
    const r = await api("rollouts");
    const v = $("#view-rollouts");
    const volatile = ["numbers", "updated", "step_started"];
    const shape = JSON.stringify([r, o.models, o.replicas.map((x) => [x.model, x.version])], (k, x) => (volatile.includes(k) ? undefined : x));
    if (state.shapes.rollouts === shape) {
      for (const x of r.rollouts || []) {
        const card = document.getElementById("rollout-" + x.model);
        if (!card) continue;
        card.querySelector("table.analysis").replaceWith(analysisTable(x));
        card.querySelector("p.meta").replaceWith(rolloutMeta(x));
      }
      return;
    }
    state.shapes.rollouts = shape;
    put(v, el("h2", {}, "Rollouts"),
      el("p", { class: "muted" }, "Canary and blueGreen rollouts driven by clipper apply / watch, as the reconciler records them in the cluster."),
      !r.available ? el("p", { class: "muted" }, r.reason)
        : r.rollouts.length ? r.rollouts.map((x) => rolloutCard(x, o, r.actions))
          : el("p", { class: "muted" }, "no rollout recorded (a Model with spec.rollout canary or blueGreen records one when a new version rolls out)"));
  }

  async function renderHistory() {
    const h = await api("history");
    const v = $("#view-history");
    put(v, el("h2", {}, "Dashboard actions"),
      el("p", { class: "muted" }, "Every action taken from this dashboard, kept in the cluster's store."),
      el("div", { class: "card" }, el("table", { id: "history" },
        el("tr", {}, el("th", {}, "when"), el("th", {}, "kind"), el("th", {}, "who"), el("th", {}, "what"), el("th", {}, "result")),
        h.entries.length ? h.entries.map((e) => el("tr", { class: "entry" }, el("td", {}, ago(e.when)), el("td", {}, pill(e.kind)),
          el("td", { class: "muted" }, e.who), el("td", {}, el("code", {}, e.what + " " + JSON.stringify(e.args))),
          el("td", {}, e.ok ? pill("ok", "ok") : pill("failed", "bad"), " ", el("span", { class: "muted" }, e.result.slice(0, 120)))))
          : el("tr", {}, el("td", { class: "muted", colspan: 5 }, "nothing yet")))),
      el("h2", {}, "Applies (clipper apply / rollback)"),
      el("div", { class: "card" }, h.applies.length ? el("table", { id: "applies" },
        el("tr", {}, el("th", {}, "#"), el("th", {}, "when"), el("th", {}, "revision"), el("th", {}, "who"), el("th", {}, "plan"), el("th", {}, "result")),
        h.applies.map((a) => el("tr", {}, el("td", {}, a.number), el("td", {}, a.time), el("td", {}, el("code", {}, a.revision || "–")),
          el("td", { class: "muted" }, a.who), el("td", {}, (a.changes || []).map((c) => el("div", {}, el("code", {}, c)))),
          el("td", {}, String(a.result).startsWith("succeeded") ? pill(a.result, "ok") : pill(a.result, "bad")))))
        : el("p", { class: "muted" }, "Apply history: " + h.apply_history + " (a cluster whose admin API needs no token keeps it on the applying machine).")));
  }

  // -- loop ------------------------------------------------------------------------------------------
  async function poll() {
    try {
      const [o, m] = await Promise.all([api("overview"), api("metrics?since=" + state.lastT)]);
      state.overview = o;
      for (const s of m.samples) { state.samples.push(s); state.lastT = Math.max(state.lastT, s.t); }
      const cut = Date.now() / 1000 - WINDOW_S;
      while (state.samples.length && state.samples[0].t < cut) state.samples.shift();
      if (state.view === "cluster") renderCluster(o);
      if (state.view === "apps") renderApps(o);
      if (state.view === "models") renderModels(o);
      if (state.view === "rollouts") await renderRollouts(o);
      if (state.view === "history") await renderHistory();
      const live = $("#live");
      live.textContent = "live · " + state.samples.length + " samples";
      live.className = "pill ok";
    } catch (e) {
      const live = $("#live");
      live.textContent = "disconnected"; live.className = "pill bad";
    }
  }

  function route() {
    state.view = (location.hash || "#cluster").slice(1);
    if (!["cluster", "apps", "models", "rollouts", "history"].includes(state.view)) state.view = "cluster";
    state.shapes = {};
    document.querySelectorAll(".view").forEach((v) => v.classList.toggle("active", v.id === "view-" + state.view));
    document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.view === state.view));
    if (state.overview) poll();
  }

  async function start() {
    const s = await api("session");
    state.csrf = s.csrf;
    state.unavailable = s.unavailable || {};
    state.actions = s.actions || {};
    if (!s.auth_required) $("#logout").style.display = "none";
    $("#logout").addEventListener("click", async () => {
      await fetch("/dashboard/logout", { method: "POST", headers: { "X-CSRF-Token": state.csrf } });
      location.reload();
    });
    window.addEventListener("hashchange", route);
    route();
    await poll();
    setInterval(poll, POLL_MS);
  }
  start();
})();
