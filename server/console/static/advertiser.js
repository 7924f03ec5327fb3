"use strict";

(() => {
  const s = UC.requireRole(["advertiser"]);
  UC.header(s, "/console/advertiser");
  const { el, clear, api, report } = UC;
  const $ = (id) => document.getElementById(id);

  const state = {
    kiosks: [],
    regionOf: new Map(), // partner id -> region
    picked: new Set(),
    creatives: [],
    draft: null, // the last quoted booking
    delivery: null, // booking id followed in the delivery section
    deliveryTimer: null,
  };

  // ---------------------------------------------------------------- creatives

  async function sha256Hex(buf) {
    if (!(window.crypto && crypto.subtle)) return null; // not a secure context: the server hashes anyway
    const d = await crypto.subtle.digest("SHA-256", buf);
    return Array.from(new Uint8Array(d), (b) => b.toString(16).padStart(2, "0")).join("");
  }

  async function loadCreatives() {
    const page = await api("GET", "/api/v1/ads/creatives?limit=200");
    state.creatives = page.items;
    clear(
      $("creative-rows"),
      page.items.map((c) =>
        el(
          "tr",
          { dataset: { creativeId: c.id } },
          el("td", {}, c.id),
          el("td", {}, c.kind === "image" ? el("img", { src: `/api/v1/media/${c.sha256}`, alt: c.title, class: "thumb", width: 64, height: 36 }) : "video"),
          el("td", {}, c.title),
          el("td", {}, c.kind, " · ", `${c.duration_ms / 1000} s`),
          el("td", {}, el("span", { class: `pill status-${c.status}`, "data-status": c.status }, c.status)),
          el("td", { class: "muted" }, c.check ? c.check.message : c.review_note || ""),
        ),
      ),
    );
    const selectable = page.items.filter((c) => c.status !== "rejected");
    const before = new Set(Array.from(document.querySelectorAll("#creative-picks input:checked"), (i) => Number(i.value)));
    clear(
      $("creative-picks"),
      selectable.length === 0
        ? el("span", { class: "muted" }, "upload a creative first")
        : selectable.map((c) =>
            el("label", { class: "check" }, el("input", { type: "checkbox", value: String(c.id), checked: before.has(c.id), dataset: { creativeId: c.id } }), `#${c.id} ${c.title} (${c.status})`),
          ),
    );
  }

  $("upload-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    report($("upload-error"), null);
    $("upload-notice").hidden = true;
    const file = $("creative-file").files[0];
    if (!file) return;
    $("creative-submit").disabled = true;
    try {
      const buf = await file.arrayBuffer();
      const digest = await sha256Hex(buf);
      const media = await api("POST", "/api/v1/ads/media", buf, digest ? { "X-Content-SHA256": digest } : {});
      const seconds = Number($("creative-seconds").value);
      const c = await api("POST", "/api/v1/ads/creatives", {
        kind: media.kind,
        duration_ms: Math.round(seconds * 1000),
        title: $("creative-title").value,
        body_text: $("creative-text").value,
        sha256: media.sha256,
      });
      UC.flash($("upload-notice"), `Creative #${c.id} submitted: ${c.status}${c.check ? " — " + c.check.message : ""}`);
      $("upload-form").reset();
      await loadCreatives();
    } catch (e) {
      report($("upload-error"), e);
    } finally {
      $("creative-submit").disabled = false;
    }
  });

  // ---------------------------------------------------------------- picking kiosks

  function matchesFilters(k) {
    const region = $("region").value;
    const venue = $("venue").value;
    if (!region && !venue) return false;
    return (!region || state.regionOf.get(k.partner_id) === region) && (!venue || k.venue_type === venue);
  }

  function drawMap() {
    UC.drawKiosks($("kiosk-map"), state.kiosks, {
      classes: (k) => [state.picked.has(k.id) ? "selected" : matchesFilters(k) ? "matches" : "available"],
      title: (k) => `${k.id} ${k.name} · ${state.regionOf.get(k.partner_id) || ""} · ${k.venue_name || k.venue_type}`,
      onClick: (k) => {
        if (state.picked.has(k.id)) state.picked.delete(k.id);
        else state.picked.add(k.id);
        drawMap();
      },
    });
    $("picked-count").textContent = `${state.picked.size} kiosk${state.picked.size === 1 ? "" : "s"} picked`;
  }

  async function loadPicker() {
    const [kiosks, partners, prices] = await Promise.all([
      UC.allKiosks(),
      api("GET", "/api/v1/partners"),
      api("GET", "/api/v1/ads/prices"),
    ]);
    state.kiosks = kiosks;
    for (const p of partners) state.regionOf.set(p.id, p.region);
    const regions = [...new Set(partners.map((p) => p.region))].sort();
    clear($("region"), el("option", { value: "" }, "any"), regions.map((r) => el("option", { value: r }, r)));
    clear(
      $("venue"),
      el("option", { value: "" }, "any"),
      prices.map((v) => el("option", { value: v.venue_type }, `${v.venue_type} ${v.label_zh || v.key || ""}`)),
    );
    clear(
      $("price-rows"),
      prices.map((v) => el("tr", {}, el("td", {}, `${v.venue_type} ${v.key || ""} ${v.label_zh || ""}`), el("td", { class: "num" }, v.price))),
    );
    drawMap();
  }

  $("region").addEventListener("change", drawMap);
  $("venue").addEventListener("change", drawMap);
  $("clear-picks").addEventListener("click", () => {
    state.picked.clear();
    drawMap();
  });

  function selection() {
    const sel = {};
    if (state.picked.size) sel.kiosk_ids = [...state.picked].sort();
    if ($("region").value) sel.regions = [$("region").value];
    if ($("venue").value) sel.venue_types = [$("venue").value];
    return sel;
  }

  function period() {
    return { start_date: $("start-date").value, end_date: $("end-date").value, dayparts: $("dayparts").value.trim() };
  }

  // ---------------------------------------------------------------- availability and quote

  $("check-availability").addEventListener("click", async () => {
    report($("booking-error"), null);
    try {
      const a = await api("POST", "/api/v1/ads/availability", Object.assign({ selection: selection() }, period()));
      const want = Number($("spots").value);
      clear(
        $("availability"),
        el("h3", {}, `Availability ${a.start_date} – ${a.end_date}, ${a.dayparts}`),
        el(
          "table",
          { id: "availability-table" },
          el("thead", {}, el("tr", {}, ["Kiosk", "Spots per loop", "Least free in an hour", `Hours short of ${want}`].map((h) => el("th", {}, h)))),
          el(
            "tbody",
            {},
            a.kiosks.map((k) => {
              const short = k.free.filter((f) => f < want).length;
              return el(
                "tr",
                { dataset: { kioskId: k.kiosk_id } },
                el("td", {}, k.kiosk_id),
                el("td", { class: "num" }, k.capacity),
                el("td", { class: "num" }, k.free.length ? Math.min(...k.free) : "—"),
                el("td", { class: "num " + (short ? "state-faulty" : "state-online") }, short ? `${short} of ${k.free.length}` : "none"),
              );
            }),
          ),
        ),
      );
    } catch (e) {
      report($("booking-error"), e);
    }
  });

  function renderQuote(b) {
    state.draft = b;
    const actions = [];
    if (b.status === "draft") actions.push(el("button", { type: "button", class: "secondary", id: "hold", onclick: () => act(b.id, "hold") }, "Hold 30 min"));
    if (b.status === "draft" || b.status === "held") actions.push(el("button", { type: "button", id: "confirm", onclick: () => act(b.id, "confirm") }, "Confirm"));
    clear(
      $("quote-view"),
      el("h3", {}, `Booking #${b.id} · `, el("span", { class: `pill status-${b.status}`, id: "quote-status" }, b.status)),
      el("p", {}, "Total ", el("b", { id: "quote-total" }, b.price), b.held_until ? ` · held until ${UC.when(b.held_until)}` : ""),
      el(
        "table",
        {},
        el("thead", {}, el("tr", {}, el("th", {}, "Kiosk"), el("th", { class: "num" }, "Days"), el("th", { class: "num" }, "Price"))),
        el("tbody", {}, b.kiosks.map((k) => el("tr", {}, el("td", {}, k.kiosk_id), el("td", { class: "num" }, k.days), el("td", { class: "num" }, UC.yuan(k.price_fen))))),
      ),
      el("p", { class: "row" }, actions),
    );
  }

  $("booking-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    report($("booking-error"), null);
    const creativeIds = Array.from(document.querySelectorAll("#creative-picks input:checked"), (i) => Number(i.value));
    try {
      const b = await api(
        "POST",
        "/api/v1/ads/bookings",
        Object.assign({ name: $("booking-name").value.trim(), spots_per_loop: Number($("spots").value), selection: selection(), creative_ids: creativeIds }, period()),
      );
      renderQuote(b);
      await loadBookings();
    } catch (e) {
      report($("booking-error"), e);
    }
  });

  async function act(id, action) {
    report($("booking-error"), null);
    report($("bookings-error"), null);
    try {
      const b = await api("POST", `/api/v1/ads/bookings/${id}/${action}`);
      if (state.draft && state.draft.id === id) renderQuote(b);
      await loadBookings();
    } catch (e) {
      report(state.draft && state.draft.id === id ? $("booking-error") : $("bookings-error"), e);
    }
  }

  // ---------------------------------------------------------------- bookings and delivery

  async function loadBookings() {
    const page = await api("GET", "/api/v1/ads/bookings?limit=200");
    clear(
      $("booking-rows"),
      page.items.map((b) => {
        const buttons = [];
        if (b.status === "draft") buttons.push(el("button", { type: "button", class: "secondary", onclick: () => act(b.id, "hold") }, "Hold"));
        if (b.status === "draft" || b.status === "held") buttons.push(el("button", { type: "button", onclick: () => act(b.id, "confirm") }, "Confirm"));
        if (b.status === "draft" || b.status === "held" || b.status === "expired") buttons.push(el("button", { type: "button", class: "secondary", onclick: () => act(b.id, "release") }, "Release"));
        buttons.push(el("button", { type: "button", class: "secondary", dataset: { action: "delivery" }, onclick: () => followDelivery(b.id) }, "Delivery"));
        return el(
          "tr",
          { dataset: { bookingId: b.id } },
          el("td", {}, b.id),
          el("td", {}, b.name),
          el("td", {}, el("span", { class: `pill status-${b.status}`, "data-status": b.status }, b.status)),
          el("td", {}, `${b.start_date} – ${b.end_date}`),
          el("td", {}, b.dayparts),
          el("td", { class: "num" }, b.kiosks.length),
          el("td", { class: "num" }, b.price),
          el("td", { class: "row" }, buttons),
        );
      }),
    );
  }

  async function refreshDelivery() {
    const id = state.delivery;
    if (id === null) return;
    try {
      const d = await api("GET", `/api/v1/ads/bookings/${id}/delivery`);
      if (state.delivery !== id) return;
      report($("bookings-error"), null);
      $("delivery-title").textContent = `Delivery of booking #${d.booking_id} ${d.name} (${d.status})`;
      const t = d.totals;
      clear(
        $("delivery-totals"),
        [["Booked", t.booked, "booked"], ["Played", t.played, "played"], ["Pending", t.pending, "pending"], ["Lost", t.lost, "lost"], ["Extra", t.extra, "extra"], ["Credited", UC.yuan(t.credited_fen), "credited"]].map(
          ([label, v, key]) => el("div", {}, label, el("b", { id: `delivery-total-${key}` }, v)),
        ),
      );
      clear(
        $("delivery-rows"),
        d.lines.map((l) =>
          el(
            "tr",
            { dataset: { kioskId: l.kiosk_id, day: l.local_date } },
            el("td", {}, l.kiosk_id),
            el("td", {}, l.local_date),
            [l.booked, l.played, l.pending, l.lost, l.extra, l.make_good_owed].map((n) => el("td", { class: "num" }, n)),
            el("td", { class: "num" }, UC.yuan(l.credited_fen)),
            el("td", {}, l.settled ? "yes" : "no"),
          ),
        ),
      );
      $("delivery-updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    } catch (e) {
      report($("bookings-error"), e);
    }
  }

  function followDelivery(id) {
    state.delivery = id;
    $("delivery").hidden = false;
    clearInterval(state.deliveryTimer);
    state.deliveryTimer = setInterval(refreshDelivery, 3000);
    refreshDelivery();
    $("delivery").scrollIntoView({ block: "nearest" });
  }

  // ---------------------------------------------------------------- invoices

  async function loadInvoices() {
    const items = await api("GET", "/api/v1/ads/invoices");
    clear(
      $("invoice-rows"),
      items.map((i) =>
        el(
          "tr",
          { dataset: { invoiceId: i.id } },
          el("td", {}, i.id),
          el("td", {}, i.kind.replace("_", " ")),
          el("td", {}, `${i.period_start} – ${i.period_end}`),
          el("td", {}, i.issued_on),
          el("td", {}, i.due_on),
          el("td", { class: "num" }, UC.yuan(i.subtotal_fen)),
          el("td", { class: "num" }, UC.yuan(i.credits_fen)),
          el("td", { class: "num" }, UC.yuan(i.total_fen)),
          el("td", {}, el("span", { class: `pill status-${i.status}` }, i.status)),
          el(
            "td",
            {},
            el("button", { type: "button", class: "secondary", onclick: () => UC.download(`/api/v1/ads/invoices/${i.id}.csv`, `invoice-${i.id}.csv`).catch((e) => report($("invoices-error"), e)) }, "CSV"),
          ),
        ),
      ),
    );
  }

  // ---------------------------------------------------------------- start

  const tomorrow = new Date(Date.now() + 86400000);
  $("start-date").value = UC.isoDate(tomorrow);
  $("end-date").value = UC.isoDate(new Date(tomorrow.getTime() + 6 * 86400000));

  const guard = (node, p) => p.catch((e) => report(node, e));
  guard($("upload-error"), loadCreatives());
  guard($("booking-error"), loadPicker());
  guard($("bookings-error"), loadBookings());
  guard($("invoices-error"), loadInvoices());
  // Review states change on the operator's side: keep them current without a reload,
  // often while a creative waits for review, now and then otherwise (one can be pulled).
  let ticks = 0;
  setInterval(() => {
    ticks += 1;
    if (ticks % 6 === 0 || state.creatives.some((c) => c.status === "pending")) guard($("upload-error"), loadCreatives());
  }, 5000);
  document.body.dataset.ready = "1";
})();
