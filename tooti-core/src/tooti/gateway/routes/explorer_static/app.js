// tooti network explorer: polls /explorer/summary and renders it. No dependencies, no build step.
// Everything that came from the network is written with textContent (never as HTML).
"use strict";

(function () {
  const params = new URLSearchParams(window.location.search);
  const POLL_MS = Math.max(1, Number(params.get("poll") || 3)) * 1000;
  const GONE_KEEP_MS = 10 * 60 * 1000;
  const store = window.sessionStorage;
  const seen = new Map(); // peer id -> {row, lastSeenMs}: nodes that left stay listed as "left"
  let paused = false;
  let timer = null;

  const $ = (id) => document.getElementById(id);

  function el(tag, text, attrs) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    return node;
  }

  function cell(row, text, col, title) {
    const td = el("td", text, { "data-col": col });
    if (title) td.title = title;
    row.appendChild(td);
    return td;
  }

  const fmt = (x, digits) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits));
  const withUnit = (x, digits, unit) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits) + unit);
  const num = (x) => (x === null || x === undefined ? "–" : Number(x).toLocaleString("en"));

  function ago(seconds) {
    if (seconds < 1) return "just now";
    if (seconds < 90) return Math.round(seconds) + " s ago";
    if (seconds < 5400) return Math.round(seconds / 60) + " min ago";
    return Math.round(seconds / 3600) + " h ago";
  }

  function priceText(pricing) {
    if (!pricing) return "not announced";
    const one = (p) => (!p ? "–" : p.min === p.max ? String(p.min) : p.min + "–" + p.max);
    return one(pricing.input_per_1k) + " / " + one(pricing.output_per_1k);
  }

  const STANDING = {
    trusted: "✓ verified",
    probation: "… on probation",
    quarantined: "✕ quarantined",
    unverified: "unverified (checks off)",
    left: "left the network",
  };

  function renderGateway(g, nodesTotal) {
    const dl = $("gateway");
    dl.replaceChildren();
    const audits = g.audits || {};
    const facts = [
      ["Peer id", g.peer_id || "starting"],
      ["Version", g.version],
      ["Live nodes", nodesTotal],
      ["Requests per minute", fmt(g.requests_per_minute, 1) + " (over " + Math.round(g.rate_window_s) + " s)"],
      ["Requests since start", num(g.requests_total)],
      ["Errors (5xx)", num(g.errors_total)],
      ["Refused (4xx)", num(g.refused_total)],
      ["Failovers", num(g.failovers_total)],
      [
        "Audits run (canary checks)",
        g.verification
          ? num((audits.pass || 0) + (audits.fail || 0) + (audits.inconclusive || 0)) +
            " — passed " + num(audits.pass || 0) + ", failed " + num(audits.fail || 0) +
            ", inconclusive " + num(audits.inconclusive || 0)
          : "verification is off",
      ],
      ["Up for", ago(g.uptime_s).replace(" ago", "")],
    ];
    for (const [k, v] of facts) {
      const wrap = el("div", null, { "data-fact": k });
      wrap.appendChild(el("dt", k));
      wrap.appendChild(el("dd", v));
      dl.appendChild(wrap);
    }
  }

  function renderModels(models) {
    const tbody = $("models").tBodies[0];
    tbody.replaceChildren();
    if (!models.length) {
      const tr = el("tr");
      tr.appendChild(el("td", "No live node serves a model.", { colspan: "8" }));
      tbody.appendChild(tr);
    }
    for (const m of models) {
      const tr = el("tr", null, { "data-model": m.id });
      const th = el("th", m.id, { scope: "row", "data-col": "model" });
      tr.appendChild(th);
      cell(tr, m.aliases.length ? m.aliases.join(", ") : "–", "aliases");
      cell(tr, m.nodes, "nodes");
      cell(tr, m.verified, "verified");
      cell(tr, m.probation, "probation");
      const q = cell(tr, m.quarantined, "quarantined");
      if (m.quarantined) q.classList.add("bad");
      cell(tr, m.context_length ? num(m.context_length) : "–", "context_length");
      cell(tr, priceText(m.pricing), "price");
      tbody.appendChild(tr);
    }
  }

  function nodeRow(n, left) {
    const tr = el("tr", null, { "data-peer": n.peer_id, "data-standing": left ? "left" : n.standing });
    if (left) tr.classList.add("left");
    tr.appendChild(el("th", n.name || "(no name)", { scope: "row", "data-col": "name" }));
    const pid = cell(tr, null, "peer_id");
    pid.appendChild(el("code", n.peer_id_short, { title: n.peer_id }));
    cell(tr, n.models.join(", "), "models");
    const load = n.load;
    cell(
      tr,
      load.in_flight + " in flight" + (load.capacity ? " of " + load.capacity : "") + (load.queued ? ", " + load.queued + " queued" : ""),
      "load"
    );
    cell(
      tr,
      "measured " + withUnit(n.measured.ttft_ms, 0, " ms") + " · claimed " + withUnit(n.self_reported.ttft_ms, 0, " ms"),
      "ttft"
    );
    cell(
      tr,
      "measured " + fmt(n.measured.tokens_per_s, 1) + " · claimed " + fmt(n.self_reported.tokens_per_s, 1),
      "tokens_per_s"
    );
    const standing = left ? "left" : n.standing;
    const st = cell(tr, STANDING[standing] || standing, "standing");
    st.classList.add("standing-" + standing);
    const checks = left ? "" : " (" + n.checks + " checks, " + n.failed_checks + " failed)";
    st.appendChild(el("span", checks, { class: "checks" }));
    cell(tr, left ? "–" : n.standing_reason || "–", "reason");
    const r = n.reachability;
    cell(
      tr,
      "observed: " + (r.answered_gateway ? "answers this gateway" : "no answer seen yet") +
        (r.direction_known ? ", " + r.connection : "") +
        "; claimed: " + r.claimed_addrs + " address" + (r.claimed_addrs === 1 ? "" : "es") +
        (r.claimed_scopes.length ? " (" + r.claimed_scopes.join(", ") + ")" : ""),
      "reachability",
      "Observed by this gateway: whether it got answers from the node, and who opened the connection " +
        "(direct = the gateway dialled the node; via the node's outbound connection = the node dialled " +
        "the gateway, as a node behind NAT does). The addresses are the node's own claim."
    );
    cell(tr, left ? "left " + ago((Date.now() - left) / 1000) : ago(n.age_s), "last_seen");
    return tr;
  }

  function renderNodes(nodes, total) {
    const now = Date.now();
    const live = new Set();
    const tbody = $("node-table").tBodies[0];
    tbody.replaceChildren();
    for (const n of nodes) {
      live.add(n.peer_id);
      seen.set(n.peer_id, { row: n, lastSeenMs: now });
      tbody.appendChild(nodeRow(n, 0));
    }
    for (const [peer, s] of seen) {
      if (live.has(peer)) continue;
      if (now - s.lastSeenMs > GONE_KEEP_MS) {
        seen.delete(peer);
        continue;
      }
      tbody.appendChild(nodeRow(s.row, s.lastSeenMs));
    }
    if (!tbody.rows.length) {
      const tr = el("tr");
      tr.appendChild(el("td", "No node has joined yet.", { colspan: "10" }));
      tbody.appendChild(tr);
    }
    if (total > nodes.length) {
      const tr = el("tr");
      tr.appendChild(el("td", (total - nodes.length) + " more nodes not shown.", { colspan: "10" }));
      tbody.appendChild(tr);
    }
  }

  function renderUsage(usage) {
    const wrap = $("usage-wrap");
    const note = $("usage-note");
    if (!usage || !usage.shown) {
      wrap.hidden = true;
      note.textContent = usage ? usage.reason : "";
      return;
    }
    note.textContent = usage.keys.length ? "" : "No API key in the store yet.";
    wrap.hidden = false;
    const tbody = $("usage").tBodies[0];
    tbody.replaceChildren();
    for (const k of usage.keys) {
      const tr = el("tr", null, { "data-key": k.id });
      tr.appendChild(el("th", k.prefix + "… (" + k.id + ")" + (k.revoked ? " revoked" : ""), { scope: "row" }));
      cell(tr, k.name || "–", "name");
      cell(tr, num(k.requests), "requests");
      cell(tr, num(k.failed), "failed");
      cell(tr, num(k.prompt_tokens) + " / " + num(k.completion_tokens), "tokens");
      cell(tr, fmt(k.cost, 4), "cost");
      cell(tr, k.budget === null ? "no budget" : fmt(k.spent, 4) + " of " + fmt(k.budget, 4) + " " + (k.budget_kind || ""), "budget");
      cell(tr, k.last_used_at ? new Date(k.last_used_at * 1000).toISOString().replace(".000", "") : "never", "last_used");
      tbody.appendChild(tr);
    }
  }

  function headers() {
    const h = { Accept: "application/json" };
    const api = store.getItem("tooti.apiKey");
    const admin = store.getItem("tooti.adminKey");
    if (api) h.Authorization = "Bearer " + api;
    if (admin) h["X-Tooti-Admin-Key"] = admin;
    return h;
  }

  async function poll() {
    const status = $("status");
    try {
      const resp = await fetch("/explorer/summary", { headers: headers(), cache: "no-store", credentials: "omit" });
      const body = await resp.json().catch(() => ({}));
      if (!resp.ok) {
        const why = body.error && body.error.message ? body.error.message : "HTTP " + resp.status;
        status.textContent = "The gateway refused the summary: " + why + (resp.status === 401 ? " (open “Keys”)." : ".");
        status.dataset.state = "error";
        return;
      }
      renderGateway(body.gateway, body.nodes_total);
      renderModels(body.models);
      renderNodes(body.nodes, body.nodes_total);
      renderUsage(body.usage);
      status.textContent =
        "Updated " + new Date().toLocaleTimeString("en-GB") + " · " + body.nodes_total + " live node" +
        (body.nodes_total === 1 ? "" : "s") + (paused ? " · paused" : " · refreshes every " + POLL_MS / 1000 + " s");
      status.dataset.state = "ok";
      document.body.dataset.updated = String(Date.now());
    } catch (err) {
      status.textContent = "Could not reach the gateway (" + err + "); showing the last data.";
      status.dataset.state = "error";
    }
  }

  function schedule() {
    if (timer) clearTimeout(timer);
    if (!paused) timer = setTimeout(async () => { await poll(); schedule(); }, POLL_MS);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("api-key").value = store.getItem("tooti.apiKey") || "";
    $("admin-key").value = store.getItem("tooti.adminKey") || "";
    $("keys").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const api = $("api-key").value.trim();
      const admin = $("admin-key").value.trim();
      api ? store.setItem("tooti.apiKey", api) : store.removeItem("tooti.apiKey");
      admin ? store.setItem("tooti.adminKey", admin) : store.removeItem("tooti.adminKey");
      poll();
    });
    $("forget").addEventListener("click", () => {
      store.removeItem("tooti.apiKey");
      store.removeItem("tooti.adminKey");
      $("api-key").value = "";
      $("admin-key").value = "";
      poll();
    });
    $("pause").addEventListener("click", (ev) => {
      paused = !paused;
      ev.target.setAttribute("aria-pressed", String(paused));
      ev.target.textContent = paused ? "Resume updates" : "Pause updates";
      schedule();
    });
    $("refresh").addEventListener("click", () => poll());
    poll().then(schedule);
  });
})();
