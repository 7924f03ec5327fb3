"use strict";

(() => {
  const s = UC.requireRole(["partner", "operator"]);
  UC.header(s, "/console/partner");
  const { el, clear, api, report } = UC;
  const $ = (id) => document.getElementById(id);

  // Colours only, at the server's default alert thresholds (alert_nearly_empty_max,
  // alert_nearly_full_max_free); the alerts themselves come from the server's rules.
  const NEARLY = 2;
  const POLL_MS = 2000;

  const state = {
    partnerId: s.role === "partner" ? s.partner_id : null,
    kiosks: new Map(),
    totals: null,
    alerts: [],
    source: null,
    pollTimer: null,
    generation: 0, // bumps when the partner changes, so late answers for the old one are dropped
  };

  function query(extra) {
    const q = new URLSearchParams(extra || {});
    if (state.partnerId !== null) q.set("partner_id", String(state.partnerId));
    const str = q.toString();
    return str ? "?" + str : "";
  }

  function alertKinds(kioskId) {
    return new Set(state.alerts.filter((a) => a.kiosk_id === kioskId).map((a) => a.kind));
  }

  function kioskState(k) {
    const kinds = alertKinds(k.id);
    if (!k.online) return "offline";
    if (k.umbrellas <= NEARLY || kinds.has("nearly_empty")) return "nearly-empty";
    if (k.empty_slots <= NEARLY || kinds.has("nearly_full")) return "nearly-full";
    return "online";
  }

  function setLive(on, text) {
    const live = $("live");
    live.className = "live " + (on ? "on" : "off");
    live.textContent = text;
  }

  // ---------------------------------------------------------------- rendering

  function render() {
    const kiosks = [...state.kiosks.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
    const t = state.totals;
    if (t) {
      clear(
        $("totals"),
        [
          ["Kiosks", t.kiosks, "kiosks"],
          ["Online", t.online, "online"],
          ["Offline", t.offline, "offline"],
          ["Umbrellas", t.umbrellas, "umbrellas"],
          ["Empty slots", t.empty_slots, "empty-slots"],
          ["Faulty slots", t.faulty_slots, "faulty-slots"],
          ["Rentals today / week", `${t.rentals_today} / ${t.rentals_week}`, "rentals"],
          ["Forfeited today / week", `${t.forfeitures_today} / ${t.forfeitures_week}`, "forfeitures"],
          ["Ad plays today", t.ad_plays_today, "ad-plays"],
          ["Open alerts", t.open_alerts, "open-alerts"],
        ].map(([label, v, key]) => el("div", {}, label, el("b", { id: `total-${key}` }, v))),
      );
    }
    UC.drawKiosks($("kiosk-map"), kiosks, {
      classes: (k) => [kioskState(k), k.faulty_slots > 0 ? "faulty" : ""].filter(Boolean),
      title: (k) => `${k.id} ${k.name}: ${kioskState(k)}, ${k.umbrellas} umbrellas, ${k.empty_slots} empty, ${k.faulty_slots} faulty`,
      onClick: (k) => {
        const row = document.querySelector(`#kiosk-rows tr[data-kiosk-id="${CSS.escape(k.id)}"]`);
        if (row) row.scrollIntoView({ block: "center" });
      },
    });
    clear(
      $("kiosk-rows"),
      kiosks.map((k) => {
        const st = kioskState(k);
        return el(
          "tr",
          { dataset: { kioskId: k.id, online: k.online ? "true" : "false" } },
          el("td", {}, el("b", {}, k.id), " ", k.name),
          el("td", {}, el("span", { class: `pill state-${st}`, "data-state": st }, k.online ? (st === "online" ? "online" : `online · ${st.replace("-", " ")}`) : "offline")),
          el("td", { title: UC.when(k.last_seen_at) }, UC.ago(k.last_seen_at)),
          el("td", { class: "num", "data-field": "umbrellas" }, k.umbrellas),
          el("td", { class: "num", "data-field": "empty_slots" }, k.empty_slots),
          el("td", { class: "num" + (k.faulty_slots ? " state-faulty" : ""), "data-field": "faulty_slots" }, k.faulty_slots),
          [k.rentals_today, k.rentals_week, k.forfeitures_today, k.forfeitures_week, k.ad_plays_today, k.open_alerts].map((n) => el("td", { class: "num" }, n)),
        );
      }),
    );
    const options = () => kiosks.map((k) => el("option", { value: k.id }, `${k.id} ${k.name} (${k.umbrellas})`));
    for (const id of ["task-from", "task-to"]) {
      const keep = $(id).value;
      clear($(id), options());
      if (keep) $(id).value = keep;
    }
    renderAlerts();
    $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  }

  function renderAlerts() {
    clear(
      $("alert-rows"),
      state.alerts.length === 0
        ? el("tr", {}, el("td", { colspan: 4, class: "muted" }, "no open alerts"))
        : state.alerts.map((a) =>
            el(
              "tr",
              { dataset: { alertId: a.id, kind: a.kind, kioskId: a.kiosk_id } },
              el("td", {}, `${a.kiosk_id} ${a.kiosk_name || ""}`),
              el("td", {}, el("span", { class: `pill state-${a.kind.replace("_", "-").replace("slot-faulty", "faulty")}` }, a.kind.replace("_", " ")), " ", a.message, a.slot_no ? ` (slot ${a.slot_no})` : ""),
              el("td", { title: UC.when(a.opened_at) }, UC.ago(a.opened_at)),
              el("td", {}, a.acked_at ? el("span", { class: "muted" }, `acknowledged by ${a.acked_by || "?"}`) : el("button", { type: "button", class: "secondary", onclick: () => ack(a.id) }, "Acknowledge")),
            ),
          ),
    );
  }

  // ---------------------------------------------------------------- data

  function take(d) {
    state.kiosks = new Map(d.kiosks.map((k) => [k.id, k]));
    state.totals = d.totals;
    state.alerts = d.alerts;
    render();
  }

  async function loadDashboard() {
    const gen = state.generation;
    const d = await api("GET", "/api/v1/partner/dashboard" + query());
    if (gen !== state.generation) return;
    report($("dashboard-error"), null);
    take(d);
  }

  async function ack(id) {
    try {
      await api("POST", `/api/v1/partner/alerts/${id}/ack`);
      const r = await api("GET", "/api/v1/partner/alerts" + query());
      state.alerts = r.open;
      render();
    } catch (e) {
      report($("alerts-error"), e);
    }
  }

  // Live: the server's event stream; if it cannot be kept open, poll every 2 s instead.
  function startLive() {
    stopLive();
    const gen = state.generation;
    if (!window.EventSource) return startPolling();
    const es = new EventSource("/api/v1/partner/dashboard/stream" + query({ token: s.token }));
    state.source = es;
    let failures = 0;
    es.addEventListener("ready", () => {
      failures = 0;
      setLive(true, "live");
      // Whatever changed between the first load and the stream opening.
      loadDashboard().catch((e) => report($("dashboard-error"), e));
    });
    es.addEventListener("kiosks", (ev) => {
      if (gen !== state.generation) return;
      const d = JSON.parse(ev.data);
      for (const k of d.kiosks) state.kiosks.set(k.id, k);
      if (d.totals) state.totals = d.totals;
      render();
    });
    es.addEventListener("alerts", (ev) => {
      if (gen !== state.generation) return;
      state.alerts = JSON.parse(ev.data).alerts;
      render();
    });
    es.onerror = () => {
      failures += 1;
      setLive(false, "reconnecting…");
      if (es.readyState === EventSource.CLOSED || failures >= 3) {
        es.close();
        startPolling();
      }
    };
  }

  function startPolling() {
    setLive(true, `live (refreshing every ${POLL_MS / 1000} s)`);
    state.pollTimer = setInterval(() => {
      loadDashboard().then(
        () => setLive(true, `live (refreshing every ${POLL_MS / 1000} s)`),
        (e) => {
          setLive(false, "connection lost");
          report($("dashboard-error"), e);
        },
      );
    }, POLL_MS);
  }

  function stopLive() {
    if (state.source) state.source.close();
    state.source = null;
    clearInterval(state.pollTimer);
    state.pollTimer = null;
  }

  // ---------------------------------------------------------------- rebalancing

  function kioskLabel(id, name) {
    return `${id}${name ? " " + name : ""}`;
  }

  async function loadSuggestions() {
    if (state.partnerId === null) {
      clear($("suggestion-rows"), el("tr", {}, el("td", { colspan: 5, class: "muted" }, "pick a partner to see suggestions")));
      return;
    }
    const r = await api("GET", "/api/v1/partner/rebalancing/suggestions" + query());
    clear(
      $("suggestion-rows"),
      r.suggestions.length === 0
        ? el("tr", {}, el("td", { colspan: 5, class: "muted" }, "nothing to move"))
        : r.suggestions.map((g) =>
            el(
              "tr",
              { dataset: { from: g.from_kiosk_id, to: g.to_kiosk_id } },
              el("td", {}, kioskLabel(g.from_kiosk_id, g.from_kiosk_name)),
              el("td", {}, kioskLabel(g.to_kiosk_id, g.to_kiosk_name)),
              el("td", { class: "num" }, g.quantity),
              el("td", { class: "num" }, g.distance_m === null || g.distance_m === undefined ? "" : `${Math.round(g.distance_m)} m`),
              el("td", {}, el("button", { type: "button", dataset: { action: "create-task" }, onclick: () => createTask(g.from_kiosk_id, g.to_kiosk_id, g.quantity, "suggested") }, "Create task")),
            ),
          ),
    );
  }

  function observed(side) {
    if (!side) return "";
    return `${side.kiosk_id}: −${side.removed} +${side.inserted}, now ${side.umbrellas_now}`;
  }

  async function loadTasks() {
    const r = await api("GET", "/api/v1/partner/rebalancing/tasks" + query());
    clear(
      $("task-rows"),
      r.items.length === 0
        ? el("tr", {}, el("td", { colspan: 6, class: "muted" }, "no tasks"))
        : r.items.map((t) =>
            el(
              "tr",
              { dataset: { taskId: t.id, status: t.status } },
              el("td", {}, t.id),
              el("td", {}, `${t.quantity} umbrella${t.quantity === 1 ? "" : "s"}: ${kioskLabel(t.from_kiosk_id, t.from_kiosk_name)} → ${kioskLabel(t.to_kiosk_id, t.to_kiosk_name)}`, t.note ? el("div", { class: "muted" }, t.note) : null),
              el("td", {}, el("span", { class: `pill status-${t.status}`, "data-status": t.status }, t.status)),
              el("td", { title: UC.when(t.created_at) }, `${UC.ago(t.created_at)} by ${t.created_by || "?"}`),
              el("td", { class: "muted" }, t.observed ? [el("div", {}, "from ", observed(t.observed.from)), el("div", {}, "to ", observed(t.observed.to))] : ""),
              el(
                "td",
                {},
                t.status === "open"
                  ? el("button", { type: "button", dataset: { action: "done" }, onclick: () => markDone(t.id) }, "Done")
                  : el("span", { class: "muted" }, `done ${UC.ago(t.done_at)} by ${t.done_by || "?"}`),
              ),
            ),
          ),
    );
  }

  async function createTask(from, to, quantity, note) {
    report($("rebalancing-error"), null);
    try {
      await api("POST", "/api/v1/partner/rebalancing/tasks" + query(), { from_kiosk_id: from, to_kiosk_id: to, quantity, note: note || "" });
      await Promise.all([loadTasks(), loadSuggestions()]);
    } catch (e) {
      report($("rebalancing-error"), e);
    }
  }

  async function markDone(id) {
    report($("rebalancing-error"), null);
    try {
      await api("POST", `/api/v1/partner/rebalancing/tasks/${id}/done`, { note: "" });
      await loadTasks();
    } catch (e) {
      report($("rebalancing-error"), e);
    }
  }

  $("task-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    createTask($("task-from").value, $("task-to").value, Number($("task-quantity").value), $("task-note").value);
  });
  $("refresh-suggestions").addEventListener("click", () => loadSuggestions().catch((e) => report($("rebalancing-error"), e)));

  // ---------------------------------------------------------------- start

  function start() {
    state.generation += 1;
    state.kiosks = new Map();
    loadDashboard()
      .then(startLive)
      .catch((e) => report($("dashboard-error"), e));
    Promise.all([loadSuggestions(), loadTasks()]).catch((e) => report($("rebalancing-error"), e));
  }

  async function pickPartner() {
    // Operators see every partner; the dashboard narrows to the one picked.
    const partners = await api("GET", "/api/v1/partners");
    $("partner-pick").hidden = false;
    const wanted = Number(new URLSearchParams(location.search).get("partner_id")) || null;
    clear($("partner-select"), el("option", { value: "" }, "all partners"), partners.map((p) => el("option", { value: String(p.id) }, `${p.name} (${p.region})`)));
    if (wanted && partners.some((p) => p.id === wanted)) {
      $("partner-select").value = String(wanted);
      state.partnerId = wanted;
    }
    $("partner-select").addEventListener("change", () => {
      state.partnerId = $("partner-select").value ? Number($("partner-select").value) : null;
      start();
    });
  }

  // Relative times ("12 s ago") keep moving between updates.
  setInterval(() => state.kiosks.size && render(), 5000);
  setInterval(() => loadTasks().catch((e) => report($("rebalancing-error"), e)), 5000);

  if (s.role === "operator") {
    pickPartner()
      .then(start)
      .catch((e) => report($("dashboard-error"), e));
  } else {
    start();
  }
})();
