"use strict";

(() => {
  const s = UC.requireRole(["operator"]);
  UC.header(s, "/console/operator");
  const { el, clear, api, report } = UC;
  const $ = (id) => document.getElementById(id);
  const partners = new Map();

  // ---------------------------------------------------------------- fleet health

  function kioskState(k) {
    if (!k.online) return "offline";
    if (k.faulty_slots > 0) return "faulty";
    return "online";
  }

  async function loadFleet() {
    try {
      const kiosks = await UC.allKiosks();
      report($("fleet-error"), null);
      const online = kiosks.filter((k) => k.online).length;
      const faultySlots = kiosks.reduce((n, k) => n + k.faulty_slots, 0);
      const faultyKiosks = kiosks.filter((k) => k.faulty_slots > 0).length;
      const umbrellas = kiosks.reduce((n, k) => n + k.umbrellas, 0);
      clear(
        $("fleet-totals"),
        [
          ["Kiosks", kiosks.length, "kiosks"],
          ["Online", online, "online"],
          ["Offline", kiosks.length - online, "offline"],
          ["Faulty slots", faultySlots, "faulty-slots"],
          ["Kiosks with faults", faultyKiosks, "faulty-kiosks"],
          ["Umbrellas in kiosks", umbrellas, "umbrellas"],
        ].map(([label, v, key]) => el("div", {}, label, el("b", { id: `fleet-${key}` }, v))),
      );
      UC.drawKiosks($("fleet-map"), kiosks, {
        classes: (k) => {
          const st = kioskState(k);
          return st === "faulty" ? ["online", "faulty"] : [st];
        },
        title: (k) => `${k.id} ${k.name}: ${kioskState(k)}, ${k.umbrellas} umbrellas, ${k.free_slots} empty`,
      });
      const bad = kiosks.filter((k) => !k.online || k.faulty_slots > 0);
      clear(
        $("fleet-rows"),
        bad.map((k) =>
          el(
            "tr",
            { dataset: { kioskId: k.id } },
            el("td", {}, `${k.id} ${k.name}`),
            el("td", {}, (partners.get(k.partner_id) || {}).name || k.partner_id),
            el("td", { class: `state-${kioskState(k)}` }, kioskState(k)),
            el("td", { title: UC.when(k.last_seen_at) }, UC.ago(k.last_seen_at)),
            el("td", { class: "num" }, k.faulty_slots),
          ),
        ),
      );
      $("fleet-updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    } catch (e) {
      report($("fleet-error"), e);
    }
  }

  // ---------------------------------------------------------------- creative review

  async function review(id, action, note, override) {
    report($("review-error"), null);
    try {
      const body = action === "approve" ? { note, override } : { note };
      await api("POST", `/api/v1/ops/creatives/${id}/${action}`, body);
      await loadReview();
    } catch (e) {
      report($("review-error"), e);
    }
  }

  async function loadReview() {
    const status = $("review-filter").value;
    try {
      const items = await api("GET", `/api/v1/ops/creatives?status=${encodeURIComponent(status)}&limit=200`);
      report($("review-error"), null);
      clear(
        $("review-list"),
        items.length === 0 ? el("p", { class: "muted", id: "review-empty" }, `no ${status} creatives`) : null,
        items.map((c) => {
          const note = el("input", { placeholder: "note (required to reject or override)", maxlength: "500", class: "note" });
          const buttons = [];
          if (c.status === "pending") {
            buttons.push(el("button", { type: "button", dataset: { action: "approve" }, onclick: () => review(c.id, "approve", note.value, false) }, "Approve"));
          }
          if (c.status === "rejected") {
            buttons.push(el("button", { type: "button", dataset: { action: "override" }, onclick: () => review(c.id, "approve", note.value, true) }, "Approve anyway"));
          }
          if (c.status !== "rejected") {
            buttons.push(el("button", { type: "button", class: "danger", dataset: { action: "reject" }, onclick: () => review(c.id, "reject", note.value) }, c.status === "approved" ? "Pull off screens" : "Reject"));
          }
          return el(
            "div",
            { class: "creative-card", dataset: { creativeId: c.id } },
            c.kind === "image" ? el("img", { src: `/api/v1/media/${c.sha256}`, alt: c.title }) : el("video", { src: `/api/v1/media/${c.sha256}`, muted: true, controls: true, width: 160 }),
            el(
              "div",
              { class: "body" },
              el("div", {}, el("b", {}, `#${c.id} ${c.title}`), " · ", c.advertiser_name, " · ", `${c.kind}, ${c.duration_ms / 1000} s`, " · ", el("span", { class: `pill status-${c.status}` }, c.status)),
              c.body_text ? el("div", {}, "Text: ", c.body_text) : null,
              c.declared_text ? el("div", {}, "Other text: ", c.declared_text) : null,
              c.check ? el("div", { class: "state-faulty" }, `Automatic check (${c.check.rule}): ${c.check.message}`) : null,
              c.review_note ? el("div", { class: "muted" }, `Note: ${c.review_note} (${c.reviewed_by || ""})`) : null,
              el("div", { class: "row" }, note, buttons),
            ),
          );
        }),
      );
    } catch (e) {
      report($("review-error"), e);
    }
  }

  $("review-filter").addEventListener("change", loadReview);

  // ---------------------------------------------------------------- partners and kiosks

  async function loadPartners() {
    const list = await api("GET", "/api/v1/partners");
    partners.clear();
    for (const p of list) partners.set(p.id, p);
    const options = () => list.map((p) => el("option", { value: String(p.id) }, `${p.name} (${p.region})`));
    for (const id of ["kiosk-partner", "partner-user-partner"]) {
      const keep = $(id).value;
      clear($(id), options());
      if (keep) $(id).value = keep;
    }
    clear(
      $("partner-rows"),
      list.map((p) => el("tr", { dataset: { partnerId: p.id } }, el("td", {}, p.id), el("td", {}, p.name), el("td", {}, p.region), el("td", {}, UC.when(p.created_at)))),
    );
  }

  async function loadVenues() {
    const prices = await api("GET", "/api/v1/ads/prices");
    clear($("kiosk-venue"), prices.map((v) => el("option", { value: v.venue_type }, `${v.venue_type} ${v.key || ""} ${v.label_zh || ""}`)));
  }

  $("partner-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    report($("partner-error"), null);
    $("partner-notice").hidden = true;
    try {
      const p = await api("POST", "/api/v1/partners", { name: $("partner-name").value, region: $("partner-region").value });
      UC.flash($("partner-notice"), `Partner #${p.id} ${p.name} registered.`);
      $("partner-form").reset();
      await loadPartners();
    } catch (e) {
      report($("partner-error"), e);
    }
  });

  $("partner-user-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    report($("partner-error"), null);
    $("partner-notice").hidden = true;
    try {
      const u = await api("POST", "/api/v1/users", {
        login: $("partner-user-login").value.trim(),
        password: $("partner-user-password").value,
        role: "partner",
        partner_id: Number($("partner-user-partner").value),
      });
      UC.flash($("partner-notice"), `User ${u.login} can now log in for partner #${u.partner_id}.`);
      $("partner-user-form").reset();
    } catch (e) {
      report($("partner-error"), e);
    }
  });

  $("kiosk-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    report($("kiosk-error"), null);
    $("kiosk-notice").hidden = true;
    const body = {
      name: $("kiosk-name").value,
      partner_id: Number($("kiosk-partner").value),
      lat: Number($("kiosk-lat").value),
      lon: Number($("kiosk-lon").value),
      address: $("kiosk-address").value,
      venue_type: $("kiosk-venue").value,
      slot_count: Number($("kiosk-slots").value),
    };
    if ($("kiosk-id").value.trim()) body.id = $("kiosk-id").value.trim();
    try {
      const k = await api("POST", "/api/v1/kiosks", body);
      // The password is shown once (only its hash is stored): the installer copies it now.
      clear(
        $("kiosk-notice"),
        `Kiosk ${k.id} registered. MQTT username `,
        el("code", { id: "mqtt-username" }, k.mqtt_username),
        ", password ",
        el("code", { id: "mqtt-password" }, k.mqtt_password),
        " — shown once.",
      );
      $("kiosk-notice").hidden = false;
      $("kiosk-form").reset();
      await loadFleet();
    } catch (e) {
      report($("kiosk-error"), e);
    }
  });

  // ---------------------------------------------------------------- stuck rentals

  async function forceEnd(id, reason) {
    report($("stuck-error"), null);
    try {
      await api("POST", `/api/v1/ops/rentals/${id}/end`, { reason }, { "X-Operator": s.login.slice(0, 64) });
      await loadStuck();
    } catch (e) {
      report($("stuck-error"), e);
    }
  }

  async function loadStuck() {
    try {
      const st = await api("GET", "/api/v1/ops/rentals/stuck");
      report($("stuck-error"), null);
      $("stuck-counts").textContent =
        "Rentals by status: " +
        (Object.entries(st.counts_by_status)
          .map(([k, v]) => `${k} ${v}`)
          .join(", ") || "none");
      const rows = [];
      for (const [kind, label] of [["ejecting", "unlock unanswered"], ["overdue", "overdue"], ["in_slot_but_on_rent", "umbrella back in a slot"]]) {
        for (const r of st[kind]) {
          const reason = el("input", { placeholder: "reason (3+ characters)", minlength: "3", maxlength: "500", class: "reason" });
          rows.push(
            el(
              "tr",
              { dataset: { rentalId: r.id } },
              el("td", {}, r.id),
              el("td", {}, label),
              el("td", {}, r.status),
              el("td", {}, `${r.kiosk_id} / ${r.slot_no}`),
              el("td", {}, r.umbrella_tag || "—"),
              kind === "overdue"
                ? el("td", { title: UC.when(r.deadline_at) }, `deadline ${UC.ago(r.deadline_at)}`)
                : el("td", { title: UC.when(r.started_at || r.created_at) }, UC.ago(r.started_at || r.created_at)),
              el("td", { class: "row" }, reason, el("button", { type: "button", class: "danger", dataset: { action: "force-end" }, onclick: () => forceEnd(r.id, reason.value) }, "Force end")),
            ),
          );
        }
      }
      clear($("stuck-rows"), rows.length ? rows : el("tr", {}, el("td", { colspan: 7, class: "muted" }, "no stuck rentals")));
    } catch (e) {
      report($("stuck-error"), e);
    }
  }

  // ---------------------------------------------------------------- start

  loadPartners()
    .then(loadFleet)
    .catch((e) => report($("partner-error"), e));
  loadVenues().catch((e) => report($("kiosk-error"), e));
  loadReview();
  loadStuck();
  setInterval(loadFleet, 5000);
  // Periodic refreshes leave a list alone while someone is typing a note or a reason in it.
  const typing = (id) => Array.from($(id).querySelectorAll("input"), (i) => i.value).some(Boolean) || $(id).contains(document.activeElement);
  setInterval(() => typing("review-list") || loadReview(), 15000);
  setInterval(() => typing("stuck-rows") || loadStuck(), 30000);
})();
