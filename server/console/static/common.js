// Shared by every console page: the session (token in sessionStorage), the API client,
// a DOM builder that only ever sets text (never parses HTML), formatting, and the kiosk drawing.
"use strict";

const UC = (() => {
  const KEY = "umbrella.console.session";
  const HOME = { operator: "/console/operator", partner: "/console/partner", advertiser: "/console/advertiser" };

  function session() {
    try {
      return JSON.parse(sessionStorage.getItem(KEY) || "null");
    } catch (_) {
      return null;
    }
  }

  function saveSession(s) {
    sessionStorage.setItem(KEY, JSON.stringify(s));
  }

  function logout() {
    sessionStorage.removeItem(KEY);
    location.assign("/console/login");
  }

  // The page's own check is a convenience: the API refuses whatever the role may not see.
  function requireRole(roles) {
    const s = session();
    if (!s || !roles.includes(s.role)) {
      location.assign("/console/login?next=" + encodeURIComponent(location.pathname + location.search));
      throw new Error("not logged in");
    }
    return s;
  }

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || `HTTP ${status}`);
      this.status = status;
      this.code = (body && body.error) || `http_${status}`;
      this.details = (body && body.details) || {};
    }
  }

  // A 401 from one endpoint may mean it wants other credentials (e.g. the operator token);
  // only a token /auth/me refuses too has expired.
  async function sessionValid(s) {
    const r = await fetch("/api/v1/auth/me", { headers: { Authorization: "Bearer " + s.token } });
    return r.ok;
  }

  async function api(method, path, body, extraHeaders) {
    const s = session();
    const headers = Object.assign({ Accept: "application/json" }, extraHeaders || {});
    if (s && s.token) headers.Authorization = "Bearer " + s.token;
    let payload;
    if (body instanceof ArrayBuffer || body instanceof Blob) {
      headers["Content-Type"] = "application/octet-stream";
      payload = body;
    } else if (body !== undefined && body !== null) {
      headers["Content-Type"] = "application/json";
      payload = JSON.stringify(body);
    }
    const r = await fetch(path, { method, headers, body: payload });
    if (r.status === 401 && s && path !== "/api/v1/auth/me" && !(await sessionValid(s))) {
      logout();
      throw new ApiError(401, { message: "session expired" });
    }
    const type = r.headers.get("content-type") || "";
    const data = type.includes("json") ? await r.json() : await r.text();
    if (!r.ok) throw new ApiError(r.status, typeof data === "object" ? data : { message: data });
    return data;
  }

  async function download(path, fileName) {
    const s = session();
    const r = await fetch(path, { headers: { Authorization: "Bearer " + (s ? s.token : "") } });
    if (!r.ok) throw new ApiError(r.status, await r.json().catch(() => null));
    const url = URL.createObjectURL(await r.blob());
    const a = el("a", { href: url, download: fileName });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  // el("td", {class: "x", dataset: {id: 1}, onclick: f}, "text", child, ...)
  function el(tag, attrs, ...children) {
    const svg = ["svg", "circle", "g", "title", "text", "rect", "line"].includes(tag);
    const node = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "dataset") Object.assign(node.dataset, v);
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (k === "class") node.setAttribute("class", v);
      else if (!svg && k in node && typeof v !== "string") node[k] = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function clear(node, ...children) {
    node.replaceChildren(...children.flat().filter((c) => c !== undefined && c !== null && c !== false));
  }

  // Integer fen to yuan without floating point: 123456 -> "¥1234.56".
  function yuan(fen) {
    const n = Math.trunc(Number(fen));
    const sign = n < 0 ? "-" : "";
    const abs = Math.abs(n);
    return `${sign}¥${Math.floor(abs / 100)}.${String(abs % 100).padStart(2, "0")}`;
  }

  function when(iso) {
    if (!iso) return "never";
    const d = new Date(iso);
    return d.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
  }

  function ago(iso) {
    if (!iso) return "never";
    const s = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 1000));
    if (s < 90) return `${s} s ago`;
    if (s < 5400) return `${Math.round(s / 60)} min ago`;
    if (s < 129600) return `${Math.round(s / 3600)} h ago`;
    return `${Math.round(s / 86400)} d ago`;
  }

  function isoDate(d) {
    const p = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
  }

  // Shows an error next to the control that caused it; clears it on success.
  function report(node, err) {
    if (!node) return;
    if (!err) {
      clear(node);
      node.hidden = true;
      return;
    }
    node.hidden = false;
    const code = err.code ? ` (${err.code})` : "";
    clear(node, el("span", {}, (err.message || String(err)) + code));
  }

  function flash(node, text) {
    node.hidden = false;
    clear(node, text);
  }

  // Header: who is logged in, the pages of the role, log out.
  function header(s, current) {
    const nav = document.getElementById("nav");
    if (!nav) return;
    const links = [];
    if (s.role === "operator") {
      links.push(["/console/operator", "Operations"], ["/console/partner", "Station dashboard"]);
    } else {
      links.push([HOME[s.role], s.role === "partner" ? "Station dashboard" : "Advertising"]);
    }
    clear(
      nav,
      links.map(([href, label]) => el("a", { href, class: href === current ? "current" : "" }, label)),
      el("span", { class: "who", id: "who" }, `${s.login} · ${s.role}`),
      el("button", { type: "button", id: "logout", onclick: logout }, "Log out"),
    );
  }

  // Paged GET of the public kiosk list (limit 500 per page).
  async function allKiosks(query) {
    const out = [];
    for (let offset = 0; ; offset += 500) {
      const q = new URLSearchParams(Object.assign({ limit: "500", offset: String(offset) }, query || {}));
      const page = await api("GET", "/api/v1/kiosks?" + q);
      out.push(...page.items);
      if (out.length >= page.total || page.items.length === 0) return out;
    }
  }

  // Kiosks drawn by position in an SVG: an equirectangular projection of the kiosks' own
  // bounding box (longitude scaled by cos(latitude) so distances look right), no tiles.
  function drawKiosks(svg, kiosks, opts) {
    const o = Object.assign({ width: 640, height: 400, pad: 24, r: 7 }, opts || {});
    svg.setAttribute("viewBox", `0 0 ${o.width} ${o.height}`);
    svg.setAttribute("role", "img");
    const nodes = [el("rect", { x: 0, y: 0, width: o.width, height: o.height, class: "map-bg" })];
    if (kiosks.length === 0) {
      nodes.push(el("text", { x: o.width / 2, y: o.height / 2, "text-anchor": "middle", class: "map-empty" }, "no kiosks"));
      clear(svg, nodes);
      return;
    }
    const lats = kiosks.map((k) => k.lat);
    const lons = kiosks.map((k) => k.lon);
    const minLat = Math.min(...lats), maxLat = Math.max(...lats);
    const minLon = Math.min(...lons), maxLon = Math.max(...lons);
    const kx = Math.cos((((minLat + maxLat) / 2) * Math.PI) / 180);
    const spanX = Math.max((maxLon - minLon) * kx, 1e-6);
    const spanY = Math.max(maxLat - minLat, 1e-6);
    const scale = Math.min((o.width - 2 * o.pad) / spanX, (o.height - 2 * o.pad) / spanY);
    const offX = (o.width - spanX * scale) / 2;
    const offY = (o.height - spanY * scale) / 2;
    const single = kiosks.length === 1 || (maxLat === minLat && maxLon === minLon);
    for (const k of kiosks) {
      const x = single ? o.width / 2 : offX + (k.lon - minLon) * kx * scale;
      const y = single ? o.height / 2 : o.height - (offY + (k.lat - minLat) * scale);
      const cls = ["kiosk", ...(o.classes ? o.classes(k) : [])].join(" ");
      const dot = el(
        "circle",
        {
          cx: x.toFixed(1),
          cy: y.toFixed(1),
          r: o.r,
          class: cls,
          tabindex: 0,
          "data-kiosk-id": k.id,
          onclick: o.onClick ? () => o.onClick(k) : undefined,
        },
        el("title", {}, o.title ? o.title(k) : `${k.id} ${k.name}`),
      );
      nodes.push(dot);
    }
    clear(svg, nodes);
  }

  return { session, saveSession, logout, requireRole, api, download, el, clear, yuan, when, ago, isoDate, report, flash, header, allKiosks, drawKiosks, HOME, ApiError };
})();
