"use strict";

(() => {
  const err = document.getElementById("login-error");

  function next(role) {
    const wanted = new URLSearchParams(location.search).get("next") || "";
    // Only a console path of this server, and only one the role has a page for.
    const allowed = role === "operator" ? ["/console/operator", "/console/partner"] : [UC.HOME[role]];
    const path = wanted.split("?")[0];
    return allowed.includes(path) && wanted.startsWith("/console/") ? wanted : UC.HOME[role];
  }

  function enter(me, token) {
    UC.saveSession({
      token,
      role: me.role,
      login: me.login,
      user_id: me.user_id,
      partner_id: me.partner_id,
      advertiser_id: me.advertiser_id,
    });
    location.assign(next(me.role));
  }

  document.getElementById("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    UC.report(err, null);
    try {
      const r = await UC.api("POST", "/api/v1/auth/login", {
        login: document.getElementById("login").value.trim(),
        password: document.getElementById("password").value,
      });
      enter(r, r.token);
    } catch (e) {
      UC.report(err, e);
    }
  });

  document.getElementById("token-submit").addEventListener("click", async () => {
    UC.report(err, null);
    const token = document.getElementById("token").value.trim();
    try {
      const r = await fetch("/api/v1/auth/me", { headers: { Authorization: "Bearer " + token } });
      const body = await r.json();
      if (!r.ok) throw new UC.ApiError(r.status, body);
      enter(body, token);
    } catch (e) {
      UC.report(err, e);
    }
  });
})();
