// The console (/console) and the customer portal (/portal): one page over the JSON API.
//
// Everything shown comes from the API and much of it from strangers (receivers'
// response bodies, endpoint descriptions, URLs), so nothing here ever parses HTML:
// every node is built with createElement and filled with textContent. The
// Content-Security-Policy forbids inline script as a second line.
"use strict";

const MODE = location.pathname.startsWith("/console") ? "console" : "portal";
const BASE = "/" + MODE;
const STATUSES = ["pending", "retrying", "delivered", "retries_exhausted"];
const REFRESH_MS = 3000;
// An event id is 1 to 255 characters without whitespace (the producer's; the API
// refuses a longer one). Shown at most SHOWN_ID characters long: it is a stranger's.
const EVENT_ID_MAX = 255;
const SHOWN_ID = 80;

const state = { session: null, csrf: "", tenant: null, timer: null, view: 0, focusSearch: false };

// --- DOM ------------------------------------------------------------------------

function h(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function link(path, ...children) {
  return h("a", { href: BASE + path, onclick: (e) => { e.preventDefault(); go(path); } },
    ...children);
}

function badge(text, kind) { return h("span", { class: "badge " + (kind || text) }, text); }

function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

function fill(node, ...children) {
  node.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
}

function show(...nodes) { fill(document.getElementById("main"), ...nodes); }

function flash(message, ok) {
  const box = document.getElementById("flash");
  box.textContent = message;
  box.className = ok ? "ok" : "";
  box.hidden = !message;
}

// --- API ------------------------------------------------------------------------

class ApiFailure extends Error {
  constructor(status, error) {
    super((error && error.message) || "the server answered " + status);
    this.status = status;
    this.code = error && error.code;
    this.field = error && error.field;
  }
}

async function api(method, path, body) {
  const init = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (method !== "GET") init.headers["X-CSRF-Token"] = state.csrf;
  embeddedCredential(init);
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch("/api/v1" + path, init);
  let data = null;
  if (response.status !== 204) {
    try { data = await response.json(); } catch (_) { data = null; }
  }
  if (!response.ok) throw new ApiFailure(response.status, data && data.error);
  return data;
}

function enc(value) { return encodeURIComponent(value); }

// Characters, not UTF-16 units, as the server counts them.
function length(text) { return Array.from(text).length; }

function shortened(text) {
  const chars = Array.from(text);
  return chars.length > SHOWN_ID ? chars.slice(0, SHOWN_ID).join("") + "…" : text;
}

// --- Routing --------------------------------------------------------------------

function go(path, replace) {
  const url = BASE + path;
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  route();
}

window.addEventListener("popstate", route);

function stopRefresh() {
  if (state.timer) clearInterval(state.timer);
  state.timer = null;
}

function every(ms, fn) {
  stopRefresh();
  state.timer = setInterval(() => { if (!document.hidden) fn(); }, ms);
}

async function route() {
  stopRefresh();
  flash("");
  const view = ++state.view;  // a slower answer for a view left meanwhile is dropped
  const path = location.pathname.slice(BASE.length) || "/";
  const query = new URLSearchParams(location.search);
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  try {
    if (parts[0] !== "tenants" || parts.length < 2) return await home();
    const tenant = parts[1];
    await enterTenant(tenant);
    if (view !== state.view) return;
    if (parts[2] === "endpoints" && parts.length === 3) return await endpointsView(tenant, view);
    if (parts[2] === "event-types" && parts.length === 3) return await catalogView(view);
    if (parts[2] === "deliveries" && parts.length === 4) return await deliveryView(tenant, parts[3], view);
    if (parts[2] === "activity" && parts.length === 3) return await activityView(tenant, query, view);
    if ((parts[2] === "deliveries" || parts.length === 2) && parts.length <= 3) {
      return await deliveriesView(tenant, query, view);
    }
    notFound("There is no such page.");
  } catch (error) {
    if (view !== state.view) return;
    failed(error);
  }
}

function failed(error) {
  if (error instanceof ApiFailure && error.status === 401) return signIn("Your session has ended.");
  if (error instanceof ApiFailure && error.status === 404) return notFound(error.message);
  show(h("h1", {}, "Something went wrong"), h("p", {}, error.message));
}

function notFound(message) {
  stopRefresh();
  show(h("div", { id: "not-found", class: "card" },
    h("h1", {}, "Not found"),
    h("p", { class: "muted" }, message || "Nothing here."),
    state.tenant ? link("/tenants/" + enc(state.tenant.id) + "/deliveries", "Back to deliveries") : null));
}

async function home() {
  if (MODE === "portal" || state.session.role === "tenant") {
    return go("/tenants/" + enc(state.session.tenant_id) + "/deliveries", true);
  }
  const page = await api("GET", "/tenants?limit=1");
  if (page.data.length) return go("/tenants/" + enc(page.data[0].id) + "/deliveries", true);
  await header(null);
  show(h("h1", {}, "No tenants yet"),
    h("p", { class: "muted" }, "Register one with the API (POST /api/v1/tenants) or `webhooks tenants add`."),
    await statsPanel());
}

// --- Sessions -------------------------------------------------------------------

async function start() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const token = fragment.get("token");
  if (MODE === "portal") applyBrand();  // not awaited: the token leaves the address bar first
  if (token !== null) {
    // Out of the address bar (and history) before anything else happens.
    history.replaceState(null, "", location.pathname + location.search);
    try {
      state.session = await api("POST", "/session", EMBEDDED ? { token, embedded: true } : { token });
      state.bearer = state.session.session_token || "";
    } catch (error) {
      return signIn(error.status === 401 ? "This link is not valid, or it has expired. Ask for a new one." : error.message);
    }
  } else {
    try {
      state.session = await api("GET", "/session");
    } catch (error) {
      return signIn(error.status === 401 ? "" : error.message);
    }
  }
  state.csrf = state.session.csrf_token;
  if (MODE === "console" && state.session.role !== "operator") {
    return signIn("The console needs the operator's token.");
  }
  if (MODE === "portal" && state.session.role === "operator") {
    location.replace("/console");
    return;
  }
  route();
}

function signIn(message) {
  stopRefresh();
  fill(document.getElementById("nav"));
  fill(document.getElementById("who"));
  if (MODE === "portal") {
    show(h("div", { class: "card signin", id: "signed-out" },
      h("h1", {}, "Portal"),
      h("p", {}, message || "Open this portal with the link you were given; links expire.")));
    return;
  }
  const input = h("input", { type: "password", name: "token", autocomplete: "current-password", required: true });
  const form = h("form", { class: "stack", id: "signin", onsubmit: async (e) => {
    e.preventDefault();
    try {
      state.session = await api("POST", "/session", { token: input.value });
      state.csrf = state.session.csrf_token;
      input.value = "";
      if (state.session.role !== "operator") return signIn("That is a portal token, not the operator's.");
      route();
    } catch (error) {
      flash(error.status === 401 ? "That token is not valid." : error.message);
    }
  } }, h("label", {}, "Operator token (WEBHOOKS_API_TOKEN)", input),
  h("button", { class: "primary", type: "submit" }, "Sign in"));
  show(h("div", { class: "card signin" }, h("h1", {}, "Console"),
    message ? h("p", { class: "muted" }, message) : null, form));
}

async function signOut() {
  try { await api("DELETE", "/session"); } catch (_) { /* signed out either way */ }
  state.session = null;
  state.bearer = "";
  state.tenant = null;
  signIn("Signed out.");
}

// --- Frame: header, tenant switcher, stats ---------------------------------------

async function enterTenant(tenantId) {
  if (MODE === "portal" && tenantId !== state.session.tenant_id) {
    throw new ApiFailure(404, { message: "tenant " + JSON.stringify(tenantId) + " not found" });
  }
  if (!state.tenant || state.tenant.id !== tenantId) {
    state.tenant = await api("GET", "/tenants/" + enc(tenantId));
  }
  await header(state.tenant);
}

async function header(tenant) {
  document.getElementById("mode").textContent = MODE === "console" ? "Console" : "Portal";
  const brand = document.getElementById("brand");
  brand.href = BASE;
  brand.onclick = (e) => { e.preventDefault(); go("/"); };
  const nav = document.getElementById("nav");
  const here = location.pathname;
  fill(nav);
  if (tenant) {
    const root = "/tenants/" + enc(tenant.id);
    const pages = [["Deliveries", root + "/deliveries"], ["Endpoints", root + "/endpoints"], ["Activity", root + "/activity"]];
    pages.push(["Event types", root + "/event-types"]);
    for (const [label, path] of pages) {
      const a = link(path, label);
      if (here.startsWith(BASE + path)) a.className = "current";
      nav.append(a);
    }
  }
  const who = document.getElementById("who");
  const parts = [];
  if (MODE === "console") parts.push(await switcher(tenant));
  else if (tenant) parts.push(h("span", { id: "tenant-name" }, tenant.name || tenant.id));
  parts.push(h("button", { id: "sign-out", type: "button", onclick: signOut }, "Sign out"));
  fill(who, ...parts);
}

async function switcher(tenant) {
  const page = await api("GET", "/tenants?limit=200");
  const select = h("select", { id: "tenant-switcher", "aria-label": "Tenant", onchange: () => {
    if (select.value) go("/tenants/" + enc(select.value) + "/deliveries");
  } });
  const ids = page.data.map((t) => t.id);
  if (tenant && !ids.includes(tenant.id)) page.data.unshift(tenant);
  select.append(h("option", { value: "" }, "Tenant…"));
  for (const t of page.data) {
    select.append(h("option", { value: t.id, selected: tenant && t.id === tenant.id },
      t.name ? t.name + " (" + t.id + ")" : t.id));
  }
  const other = h("input", { id: "tenant-id", placeholder: "tenant id", size: 12, onkeydown: (e) => {
    if (e.key === "Enter" && other.value.trim()) go("/tenants/" + enc(other.value.trim()) + "/deliveries");
  } });
  return h("span", {}, select, other);
}

function statTiles(numbers, id) {
  return h("div", { class: "stats", id },
    Object.entries(numbers).map(([name, value]) =>
      h("div", { class: "stat" + (name === "overdue" && value ? " alert" : ""), dataset: { stat: name } },
        h("b", {}, value.toLocaleString()), h("span", {}, name))));
}

async function statsPanel() {
  return h("div", {}, h("h2", {}, "All tenants"), statTiles(await api("GET", "/stats"), "stats"));
}

// --- Deliveries -----------------------------------------------------------------

async function deliveriesView(tenantId, query, view) {
  const root = "/tenants/" + enc(tenantId);
  const status = STATUSES.includes(query.get("status")) ? query.get("status") : "";
  const endpointId = query.get("endpoint_id") || "";
  const eventId = (query.get("event_id") || "").trim();
  const cursor = eventId ? "" : query.get("cursor") || "";  // an event's deliveries: one page
  const endpoints = (await api("GET", root + "/endpoints")).data;

  const params = () => {
    const p = new URLSearchParams();
    if (status) p.set("status", status);
    if (endpointId) p.set("endpoint_id", endpointId);
    if (eventId) p.set("event_id", eventId);
    return p;
  };
  const refilter = (name, value) => {
    const p = params();
    if (value) p.set(name, value); else p.delete(name);
    const qs = p.toString();
    go(root + "/deliveries" + (qs ? "?" + qs : ""));
  };
  const statusSelect = h("select", { id: "status-filter", onchange: () => refilter("status", statusSelect.value) },
    h("option", { value: "" }, "any status"),
    STATUSES.map((s) => h("option", { value: s, selected: s === status }, s)));
  const endpointSelect = h("select", { id: "endpoint-filter", onchange: () => refilter("endpoint_id", endpointSelect.value) },
    h("option", { value: "" }, "any endpoint"),
    endpoints.map((e) => h("option", { value: e.id, selected: e.id === endpointId }, e.url)));
  const search = eventSearch(eventId, (wanted) => refilter("event_id", wanted));

  const body = h("tbody");
  const pager = h("div", { class: "pager" });
  const stats = h("div");
  const table = h("table", { id: "deliveries" },
    h("thead", {}, h("tr", {}, ["Created", "Status", "Event", "Destination", "Attempts", "Last answer"].map((c) => h("th", {}, c)))),
    body);
  const urls = Object.fromEntries(endpoints.map((e) => [e.id, e.url]));

  let last = "";
  async function load() {
    const p = params();
    p.set("limit", "25");
    if (cursor) p.set("cursor", cursor);
    // No event has a longer id: nothing to ask (the API would refuse it).
    const none = Promise.resolve({ data: [], next_cursor: null });
    const [page, numbers] = await Promise.all([
      eventId && length(eventId) > EVENT_ID_MAX ? none : api("GET", root + "/deliveries?" + p.toString()),
      api("GET", root + "/stats")]);
    if (view !== state.view) return;
    const seen = JSON.stringify([page, numbers]);
    if (seen === last) return;  // unchanged: keep the reader's selection and scroll
    last = seen;
    fill(stats, statTiles(numbers, "tenant-stats"));
    fill(body, ...page.data.map((d) => deliveryRow(root, d, urls)));
    if (!page.data.length && eventId) {
      body.append(h("tr", {}, h("td", { colSpan: 6, class: "muted", id: "no-event-deliveries" },
        "No deliveries of event ", h("code", { class: "event-id" }, shortened(eventId)),
        status || endpointId ? " match these filters." : ".")));
    } else if (!page.data.length) {
      body.append(h("tr", {}, h("td", { colSpan: 6, class: "muted" }, "No deliveries" + (status || endpointId ? " match these filters." : " yet."))));
    }
    fill(pager,
      cursor ? h("button", { type: "button", id: "newest", onclick: () => {
        const qs = params().toString();
        go(root + "/deliveries" + (qs ? "?" + qs : ""));
      } }, "⇤ Newest") : null,
      page.next_cursor ? h("button", { type: "button", id: "older", onclick: () => {
        const q = params();
        q.set("cursor", page.next_cursor);
        go(root + "/deliveries?" + q.toString());
      } }, "Older →") : null,
      h("span", { class: "muted" }, cursor ? "" : "Refreshed every few seconds while open."));
  }
  const extra = MODE === "console" ? await statsPanel() : null;
  if (view !== state.view) return;
  const everything = () => {
    const p = params();
    p.delete("event_id");
    const qs = p.toString();
    return root + "/deliveries" + (qs ? "?" + qs : "");
  };
  const searching = eventId ? h("p", { id: "event-shown", class: "muted" },
    "The deliveries of event ", h("code", { class: "event-id" }, shortened(eventId)), ", one per endpoint. ",
    link(everything(), "Show all deliveries")) : null;
  show(h("h1", {}, "Deliveries"), stats,
    h("div", { class: "filters" }, h("label", {}, "Status", statusSelect), h("label", {}, "Endpoint", endpointSelect),
      search.form),
    searching, table, pager, extra);
  if (state.focusSearch) search.input.focus();  // the reader was typing in it
  state.focusSearch = false;
  await load();
  every(REFRESH_MS, () => load().catch(failed));
}

// The search by event id (the producer's id, the `id` of the event it published):
// submitting shows that event's deliveries; submitting it empty, or clearing it with
// the field's own clear button, shows them all again.
function eventSearch(eventId, find) {
  let sent = false;
  const input = h("input", { type: "search", id: "event-search", name: "event_id", value: eventId,
    placeholder: "evt_…", autocomplete: "off", spellcheck: "false", size: 24,
    // Chromium's and Safari's clear button (and Enter): "search", with the field empty.
    onsearch: () => { if (!input.value.trim()) submit(); } });
  function submit() {
    const wanted = input.value.trim();
    if (length(wanted) > EVENT_ID_MAX) {
      flash("An event id has at most " + EVENT_ID_MAX + " characters.");
      return;
    }
    if (sent || wanted === eventId) return;
    sent = true;
    state.focusSearch = true;
    find(wanted);
  }
  const form = h("form", { id: "event-search-form", class: "search", role: "search",
    onsubmit: (e) => { e.preventDefault(); submit(); } },
  h("label", {}, "Event id", input), h("button", { type: "submit" }, "Find"));
  return { form, input };
}

// A delivery published with an ordering key waits for the one before it of its key.
function behind(root, d) {
  if (!d.waiting_behind) return null;
  return h("div", { class: "muted waiting-behind" }, "behind ",
    link(root + "/deliveries/" + enc(d.waiting_behind), d.waiting_behind));
}

function deliveryRow(root, d, urls) {
  const lastAttempt = d.last_attempt;
  let answer = "—";
  if (lastAttempt) {
    answer = lastAttempt.status_code !== null ? String(lastAttempt.status_code) : (lastAttempt.error ? lastAttempt.error.kind : "—");
  }
  return h("tr", { dataset: { delivery: d.id } },
    h("td", {}, link(root + "/deliveries/" + enc(d.id), when(d.created_at))),
    h("td", {}, badge(d.status), d.test ? [" ", badge("test")] : null, behind(root, d)),
    h("td", {}, d.event_type, h("div", { class: "muted" }, d.event_id)),
    h("td", { class: "url" }, d.url, d.endpoint_id && !urls[d.endpoint_id] ? h("div", { class: "muted" }, "endpoint deleted") : null),
    h("td", { class: "attempts" }, String(d.attempt_count)),
    h("td", {}, answer));
}

async function deliveryView(tenantId, deliveryId, view) {
  const root = "/tenants/" + enc(tenantId);
  const path = root + "/deliveries/" + enc(deliveryId);
  const holder = h("div");
  let last = "";
  async function load() {
    const d = await api("GET", path);
    if (view !== state.view) return;
    const seen = JSON.stringify(d);
    if (seen === last) return;
    last = seen;
    fill(holder, deliveryDetail(root, path, d, load));
  }
  const sent = sentPanel(path, view);
  show(h("p", {}, link(root + "/deliveries", "← Deliveries")), holder, sent.node);
  await Promise.all([load(), sent.load()]);
  // What was sent changes only with the delivery (a new attempt, a new cycle): asked
  // again only then, since its body can be large.
  const refresh = async () => {
    const before = last;
    await load();
    if (last !== before) await sent.load();
  };
  every(REFRESH_MS, () => refresh().catch(failed));
}

// A button that POSTs to `url`, says `done` and reloads the delivery's page.
function postButton(id, label, url, done, reload, primary) {
  const button = h("button", { id, class: primary ? "primary" : null, type: "button", onclick: async () => {
    button.disabled = true;
    try {
      await api("POST", url);
      flash(done, true);
      await reload();
    } catch (error) {
      flash(error.message);
    } finally {
      button.disabled = false;
    }
  } }, label);
  return button;
}

function deliveryDetail(root, path, d, reload) {
  const redeliver = postButton("redeliver", "Redeliver", path + "/redeliver",
    "Redelivering: a new attempt is on its way.", reload, true);
  // The operator gives up on an unfinished delivery (a stuck head of an ordering key).
  const skip = MODE === "console" && (d.status === "pending" || d.status === "retrying")
    ? postButton("skip", "Skip", path + "/skip",
      "Skipped: marked retries_exhausted; the next delivery of its ordering key starts.", reload)
    : null;
  const fields = [["Delivery", d.id], ["Event", d.event_type + " · " + d.event_id], ["URL", d.url],
    ["Endpoint", d.endpoint_id || "—"], ["Created", when(d.created_at)], ["Updated", when(d.updated_at)],
    ["Next attempt", when(d.next_attempt_at)]];
  if (d.ordering_key !== null && d.ordering_key !== undefined) fields.push(["Ordering key", d.ordering_key]);
  if (d.waiting_behind) fields.push(["Waiting behind", link(root + "/deliveries/" + enc(d.waiting_behind), d.waiting_behind)]);
  const rows = d.attempts.slice().reverse().map((a) => h("tr", { dataset: { attempt: a.number } },
    h("td", {}, String(a.number)),
    h("td", {}, when(a.started_at)),
    h("td", {}, Math.round(a.duration_ms) + " ms"),
    h("td", {}, a.status_code === null ? "—" : badge(String(a.status_code), a.error ? "failed" : "delivered")),
    h("td", {}, a.error ? a.error.kind : "—"),
    h("td", { class: "wrap" }, a.error ? a.error.message : ""),
    h("td", {}, a.response_body ? h("pre", { class: "body" }, a.response_body) : h("span", { class: "muted" }, "empty"))));
  return h("div", {},
    h("h1", {}, "Delivery ", badge(d.status), d.test ? [" ", badge("test")] : null),
    h("div", { class: "card" }, h("dl", { class: "fields" }, fields.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]))),
    h("div", { class: "actions" }, redeliver,
      h("span", { class: "muted" }, "Sends the same event again with the same webhook-id; earlier attempts are kept.")),
    skip ? h("div", { class: "actions" }, skip,
      h("span", { class: "muted" }, "Gives up on it (retries_exhausted); the next delivery of its ordering key starts.")) : null,
    h("h2", {}, "Attempts (" + d.attempts.length + ")"),
    h("table", { id: "attempts" },
      h("thead", {}, h("tr", {}, ["#", "Time", "Duration", "Status", "Error", "Message", "Response body"].map((c) => h("th", {}, c)))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colSpan: 7, class: "muted" }, "No attempt yet.")))));
}

// --- Endpoints ------------------------------------------------------------------

function secretBox(secret, url) {
  return h("div", { class: "secret", id: "secret-box" },
    h("strong", {}, "Signing secret for " + url), h("br"),
    h("code", { id: "secret" }, secret), h("br"),
    h("span", { class: "muted" }, "Copy it now: it is shown only this once. Receivers verify signatures with it."));
}

async function endpointsView(tenantId, view) {
  const root = "/tenants/" + enc(tenantId);
  const list = h("div");
  const notice = h("div");
  async function load() {
    const endpoints = (await api("GET", root + "/endpoints")).data;
    if (view !== state.view) return;
    fill(list, endpointsTable(root, endpoints, load, notice));
  }
  const form = addEndpointForm(root, async (created) => {
    fill(notice, secretBox(created.secret, created.url));
    await load();
  });
  show(h("h1", {}, "Endpoints"), notice, list, h("h2", {}, "Add an endpoint"), form);
  await load();
}

function parseHeaders(text) {
  const headers = {};
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const at = line.indexOf(":");
    if (at < 1) throw new Error("headers: write one 'Name: value' per line");
    headers[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return headers;
}

function addEndpointForm(root, done) {
  const url = h("input", { name: "url", type: "url", required: true, placeholder: "https://example.com/webhooks", size: 50 });
  const description = h("input", { name: "description", maxLength: 1000 });
  const types = eventTypeChoices();
  const headers = h("textarea", { name: "headers", placeholder: "Authorization: Bearer …" });
  const rate = rateInput();
  const form = h("form", { class: "stack card", id: "add-endpoint", onsubmit: async (e) => {
    e.preventDefault();
    try {
      const body = { url: url.value.trim(), description: description.value };
      if (rate.value.trim()) body.rate_limit = Number(rate.value);
      const wanted = types.chosen();
      if (wanted.length) body.event_types = wanted;
      const extra = parseHeaders(headers.value);
      if (Object.keys(extra).length) body.headers = extra;
      const created = await api("POST", root + "/endpoints", body);
      form.reset();
      flash("Endpoint added.", true);
      await done(created);
    } catch (error) {
      flash(error.message);
    }
  } },
  h("label", {}, "URL", url), h("label", {}, "Description", description),
  types.node, h("label", {}, "Headers sent with every attempt", headers),
  h("label", {}, "Rate limit (deliveries a second; empty: none)", rate),
  h("div", {}, h("button", { class: "primary", type: "submit" }, "Add endpoint")));
  return form;
}

// Any number goes to the server, which says what it refuses (and why) in one line.
function rateInput(value) {
  return h("input", { name: "rate_limit", type: "number", step: "any", min: 0, max: 10000,
    size: 8, value: value == null ? "" : String(value) });
}

// The endpoint's rate limit, and the pace adaptive pacing keeps below its limits.
function paceNote(ep) {
  const parts = [ep.rate_limit == null ? "no rate limit" : "rate limit " + ep.rate_limit + "/s"];
  if (ep.pace) {
    parts.push("paced to " + (ep.pace.rate == null ? "" : ep.pace.rate + "/s, ") +
      ep.pace.concurrency + " in flight");
  }
  return h("div", { class: "muted pace" }, parts.join("; "));
}

function endpointsTable(root, endpoints, reload, notice) {
  if (!endpoints.length) return h("p", { class: "muted", id: "no-endpoints" }, "No endpoints yet.");
  const act = (fn) => async (e) => {
    const button = e.currentTarget;
    button.disabled = true;
    try { await fn(); await reload(); } catch (error) { flash(error.message); } finally { button.disabled = false; }
  };
  const rows = endpoints.map((ep) => {
    const path = root + "/endpoints/" + enc(ep.id);
    const recoverRow = h("tr", { hidden: true, class: "recover-row" });
    const tester = testSender(root, path, ep);
    const since = h("input", { type: "datetime-local", name: "since", required: true, step: 1 });
    const until = h("input", { type: "datetime-local", name: "until", step: 1 });
    recoverRow.append(h("td", { colSpan: 5 }, h("form", { class: "inline-form", onsubmit: async (e) => {
      e.preventDefault();
      try {
        const body = { since: new Date(since.value).toISOString() };
        if (until.value) body.until = new Date(until.value).toISOString();
        const result = await api("POST", path + "/recover", body);
        flash("Recovering " + result.delivery_ids.length + " exhausted deliveries.", true);
        recoverRow.hidden = true;
      } catch (error) { flash(error.message); }
    } }, h("label", {}, "Since (your time)", since), h("label", {}, "Until (empty: now)", until),
    h("button", { type: "submit", class: "primary" }, "Recover exhausted deliveries"))));
    const rateRow = h("tr", { hidden: true, class: "rate-row" });
    const rate = rateInput(ep.rate_limit);
    rateRow.append(h("td", { colSpan: 5 }, h("form", { class: "inline-form", onsubmit: async (e) => {
      e.preventDefault();
      try {
        await api("PATCH", path, { rate_limit: rate.value.trim() ? Number(rate.value) : null });
        flash("Rate limit saved.", true);
        await reload();
      } catch (error) { flash(error.message); }
    } }, h("label", {}, "Deliveries a second (empty: no limit)", rate),
    h("button", { type: "submit", class: "primary" }, "Save rate limit"))));
    const row = h("tr", { dataset: { endpoint: ep.id } },
      h("td", { class: "url" }, ep.url, ep.description ? h("div", { class: "muted" }, ep.description) : null),
      h("td", {}, ep.event_types ? ep.event_types.join(", ") : "every type"),
      h("td", {}, ep.enabled ? badge("enabled") : badge("disabled"),
        ep.disabled_reason ? h("div", { class: "muted" }, ep.disabled_reason) : null, paceNote(ep)),
      h("td", {}, link(root + "/deliveries?endpoint_id=" + enc(ep.id), "deliveries")),
      h("td", { class: "actions" },
        h("button", { type: "button", class: "toggle", onclick: act(() => api("PATCH", path, { enabled: !ep.enabled })) },
          ep.enabled ? "Disable" : "Enable"),
        h("button", { type: "button", class: "rotate", onclick: act(async () => {
          if (!confirm("Make a new signing secret? The old one keeps working for the grace period.")) return;
          const rotated = await api("POST", path + "/rotate-secret");
          fill(notice, secretBox(rotated.secret, rotated.url));
        }) }, "Rotate secret"),
        h("button", { type: "button", class: "recover", onclick: () => { recoverRow.hidden = !recoverRow.hidden; } }, "Recover…"),
        h("button", { type: "button", class: "rate", onclick: () => { rateRow.hidden = !rateRow.hidden; } }, "Rate limit…"),
        tester.button, tester.choice,
        h("button", { type: "button", class: "danger delete", onclick: act(async () => {
          if (!confirm("Delete this endpoint? Its unfinished deliveries stop.")) return;
          await api("DELETE", path);
          flash("Endpoint deleted.", true);
        }) }, "Delete")));
    return [row, recoverRow, rateRow, tester.row];
  });
  return h("table", { id: "endpoints" },
    h("thead", {}, h("tr", {}, ["URL", "Event types", "State", "", "Actions"].map((c) => h("th", {}, c)))),
    h("tbody", {}, rows.flat()));
}

// --- Embedded and branded portal ---------------------------------------------------

// Framed in another site's page, the portal gets no cookie (SameSite=Strict, and
// third-party cookies are often blocked): it keeps its session's credential in this
// page's memory and sends it as a bearer header, which no other site can make a
// browser send. Reloading the frame needs a fresh link.
const EMBEDDED = MODE === "portal" && window.self !== window.top;

// state.bearer: the embedded session's credential, from signing in; none otherwise.
function embeddedCredential(init) {
  if (!state.bearer) return;
  init.headers.Authorization = "Bearer " + state.bearer;
  init.credentials = "omit";
}

// The operator's name, logo and accent colour (WEBHOOKS_PORTAL_BRAND_*). The colour is
// set through the CSSOM, which the policy allows; an inline style would be refused.
async function applyBrand() {
  let brand;
  try { brand = await api("GET", "/brand"); } catch (_) { return; /* the stock look */ }
  const home = document.getElementById("brand");
  if (brand.name) {
    document.title = brand.name;
    home.textContent = brand.name;
  }
  if (brand.logo_url) home.prepend(h("img", { id: "brand-logo", src: brand.logo_url, alt: "" }));
  if (/^#[0-9a-f]{6}$/.test(brand.accent_color || "")) {
    document.documentElement.style.setProperty("--accent", brand.accent_color);
  }
}

// --- What a delivery sent -------------------------------------------------------

// The body every attempt POSTs (pretty-printed; the copy button copies the exact
// bytes, which the signature covers), the headers we sent with the signature and the
// endpoint's own values masked by the server, and the retry schedule.
function sentPanel(path, view) {
  const node = h("div", { id: "sent" });
  let last = "";
  async function load() {
    const sent = await api("GET", path + "/request");
    if (view !== state.view) return;
    const seen = JSON.stringify(sent);
    if (seen === last) return;  // unchanged: keep the reader's selection
    last = seen;
    fill(node, sentBody(sent.body), sentHeaders(sent), retrySchedule(sent.retry_schedule));
  }
  return { node, load };
}

// Re-indents JSON text, two spaces a level, without parsing its values: JSON.parse
// would round a big integer and rewrite 1.10 as 1.1, and this shows what was sent.
// Only whitespace between tokens changes. A body that is not JSON is shown as it is.
function pretty(body) {
  try { JSON.parse(body); } catch (_) { return body; }
  const blank = " \n\r\t";
  let out = "", depth = 0, inString = false, escaped = false;
  const newline = () => "\n" + "  ".repeat(depth);
  for (let i = 0; i < body.length; i++) {
    const c = body[i];
    if (inString) {
      out += c;
      if (escaped) escaped = false;
      else if (c === "\\") escaped = true;
      else if (c === "\"") inString = false;
    } else if (blank.includes(c)) {
      continue;
    } else if (c === "{" || c === "[") {
      let next = i + 1;
      while (next < body.length && blank.includes(body[next])) next++;
      if (body[next] === (c === "{" ? "}" : "]")) {  // empty: one line, as JSON.stringify
        out += c + body[next];
        i = next;
      } else {
        depth++;
        out += c + newline();
      }
    } else if (c === "}" || c === "]") {
      depth--;
      out += newline() + c;
    } else if (c === ",") {
      out += "," + newline();
    } else if (c === ":") {
      out += ": ";
    } else {
      if (c === "\"") inString = true;
      out += c;
    }
  }
  return out;
}

function sentBody(body) {
  const copy = h("button", { type: "button", id: "copy-body", onclick: async () => {
    if (!navigator.clipboard) {
      flash("This browser gives no clipboard here: select the body and copy it.");
      return;
    }
    try {
      await navigator.clipboard.writeText(body);
      flash("Body copied: the exact bytes signed and sent.", true);
    } catch (error) {
      flash("Could not copy: " + error.message);
    }
  } }, "Copy body");
  return [h("h2", {}, "Request body"),
    h("div", { class: "actions" }, copy, h("span", { class: "muted" }, length(body).toLocaleString() + " characters; the same on every attempt.")),
    h("pre", { class: "sent-body", id: "sent-body" }, pretty(body))];
}

function sentHeaders(sent) {
  const rows = sent.headers.map((header) => h("tr", { dataset: { header: header.name } },
    h("td", {}, h("code", {}, header.name)),
    h("td", { class: "wrap" }, header.masked ? h("span", { class: "muted masked" }, header.value + " (hidden)") : header.value)));
  const stamps = sent.attempts.map((a) => "#" + a.number + " " + a.webhook_timestamp).join(", ");
  return [h("h2", {}, "Request headers"),
    h("p", { class: "muted" }, sent.attempts.length ? "As sent with the latest attempt. Signatures and the endpoint's own header values are never shown." : "As the first attempt will send them. Signatures and the endpoint's own header values are never shown."),
    h("table", { id: "sent-headers" }, h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Value"))), h("tbody", {}, rows)),
    stamps ? h("p", { class: "muted", id: "attempt-timestamps" }, "webhook-timestamp of each attempt: " + stamps) : null];
}

function retrySchedule(schedule) {
  const made = h("p", { id: "attempts-made" }, schedule.attempts_made + " of " + schedule.max_attempts + " attempts made in this cycle.");
  if (!schedule.upcoming.length) {
    return [h("h2", {}, "Retry schedule"), made, h("p", { class: "muted", id: "no-upcoming" }, "No attempt to come.")];
  }
  return [h("h2", {}, "Retry schedule"), made,
    h("p", { class: "muted" }, "If each attempt fails, the next ones are due at these times (jitter and a receiver's Retry-After can push them later)."),
    h("table", { id: "retry-schedule" },
      h("thead", {}, h("tr", {}, h("th", {}, "#"), h("th", {}, "Due"))),
      h("tbody", {}, schedule.upcoming.map((u) => h("tr", { dataset: { attempt: u.number, due: u.due_at } },
        h("td", {}, String(u.number)), h("td", {}, when(u.due_at))))))];
}

// --- Activity -------------------------------------------------------------------

// Deliveries per hour by outcome, drawn as inline SVG from the API's hourly counters:
// every element made with createElementNS, coloured by classes in app.css (the CSP
// allows no inline style). Each hour's group carries the values it draws in data-*
// attributes, so what is drawn can be read back.
const SVG = "http://www.w3.org/2000/svg";
const OUTCOMES = [
  ["delivered_first_try", "delivered on first try"],
  ["delivered_after_retries", "delivered after retries"],
  ["exhausted", "exhausted"],
];
const WINDOWS = { "24h": "Last 24 hours", "7d": "Last 7 days" };

function svg(tag, attributes, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, String(value));
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function dataName(kind) { return "data-" + kind.replaceAll("_", "-"); }

function hourLabel(iso, span) {
  const d = new Date(iso);
  return span === "7d" ? d.toLocaleDateString(undefined, { month: "short", day: "numeric" })
    : d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
}

function activityChart(id, activity) {
  const width = 960, height = 240, left = 44, bottom = 26, top = 10;
  const buckets = activity.buckets;
  const slot = (width - left) / buckets.length;
  const most = Math.max(1, ...buckets.map((b) => Math.max(
    b.delivered_first_try + b.delivered_after_retries + b.exhausted, b.failed_attempts)));
  const scale = (height - top - bottom) / most;
  const base = height - bottom;
  const chart = svg("svg", { id, class: "chart", viewBox: "0 0 " + width + " " + height,
    role: "img", "aria-label": "Deliveries per hour by outcome", "data-window": activity.window,
    "data-max": most });
  chart.append(
    svg("line", { class: "axis", x1: left, y1: base, x2: width, y2: base }),
    svg("text", { class: "tick", x: left - 6, y: base, "text-anchor": "end" }, "0"),
    svg("text", { class: "tick", x: left - 6, y: top + 10, "text-anchor": "end" }, most.toLocaleString()));
  const labelEvery = activity.window === "7d" ? 24 : 6;
  const failed = [];
  buckets.forEach((bucket, index) => {
    const x = left + index * slot;
    const group = svg("g", { class: "hour", "data-hour": bucket.hour });
    for (const [kind] of [...OUTCOMES, ["failed_attempts"]]) group.setAttribute(dataName(kind), bucket[kind]);
    let y = base;
    for (const [kind] of OUTCOMES) {
      const tall = bucket[kind] * scale;
      y -= tall;
      group.append(svg("rect", { class: "bar " + kind, x: x + 1, y, width: Math.max(1, slot - 2), height: tall,
        "data-kind": kind, "data-value": bucket[kind] }));
    }
    group.append(svg("title", {}, when(bucket.hour) + ": " + OUTCOMES.map(([kind, label]) => bucket[kind] + " " + label).join(", ")
      + ", " + bucket.failed_attempts + " failed attempts"));
    chart.append(group);
    failed.push((x + slot / 2) + "," + (base - bucket.failed_attempts * scale));
    if (index % labelEvery === 0) {
      chart.append(svg("text", { class: "tick", x, y: height - 8 }, hourLabel(bucket.hour, activity.window)));
    }
  });
  chart.append(svg("polyline", { class: "failed-line", points: failed.join(" "), "data-kind": "failed_attempts" }));
  return chart;
}

function activityLegend() {
  return h("div", { class: "legend" },
    [...OUTCOMES, ["failed_attempts", "failed attempts (line)"]].map(([kind, label]) =>
      h("span", {}, h("i", { class: "swatch " + kind }), label)));
}

function activityTotals(activity) {
  const sum = (kind) => activity.buckets.reduce((total, b) => total + b[kind], 0);
  return h("div", { class: "stats" }, [...OUTCOMES, ["failed_attempts", "failed attempts"]].map(([kind, label]) =>
    h("div", { class: "stat", dataset: { total: kind } }, h("b", {}, sum(kind).toLocaleString()), h("span", {}, label))));
}

function rateBar(rate) {
  const bar = svg("svg", { class: "rate", viewBox: "0 0 100 8", "aria-hidden": "true" },
    svg("rect", { class: "rate-track", x: 0, y: 0, width: 100, height: 8 }));
  if (rate !== null) bar.append(svg("rect", { class: "rate-fill", x: 0, y: 0, width: rate * 100, height: 8 }));
  return bar;
}

function endpointRates(activity, urls) {
  if (!activity.endpoints.length) return h("p", { class: "muted", id: "no-endpoint-rates" }, "No endpoints yet.");
  return h("table", { id: "endpoint-rates" },
    h("thead", {}, h("tr", {}, ["Endpoint", "Success rate", "", "Delivered", "Failed attempts", "Exhausted"].map((c) => h("th", {}, c)))),
    h("tbody", {}, activity.endpoints.map((e) => h("tr", { dataset: { endpoint: e.endpoint_id, successRate: e.success_rate === null ? "" : e.success_rate } },
      h("td", { class: "url" }, urls[e.endpoint_id] || e.endpoint_id),
      h("td", { class: "rate-value" }, e.success_rate === null ? "no attempts" : (e.success_rate * 100).toFixed(1) + " %"),
      h("td", {}, rateBar(e.success_rate)),
      h("td", {}, e.delivered.toLocaleString()),
      h("td", {}, e.failed_attempts.toLocaleString()),
      h("td", {}, e.exhausted.toLocaleString())))));
}

async function activityView(tenantId, query, view) {
  const root = "/tenants/" + enc(tenantId);
  const span = Object.hasOwn(WINDOWS, query.get("window") || "") ? query.get("window") : "24h";
  const endpoints = (await api("GET", root + "/endpoints")).data;
  const urls = Object.fromEntries(endpoints.map((e) => [e.id, e.url]));
  const picker = h("div", { class: "filters", id: "window-picker" }, Object.entries(WINDOWS).map(([value, label]) =>
    h("button", { type: "button", class: value === span ? "primary" : "", dataset: { window: value },
      onclick: () => go(root + "/activity?window=" + value) }, label)));
  const mine = h("div", { id: "tenant-activity" });
  const everyone = h("div", { id: "all-activity" });
  let last = "";
  async function load() {
    const [activity, all] = await Promise.all([
      api("GET", root + "/activity?window=" + span),
      MODE === "console" ? api("GET", "/activity?window=" + span) : null]);
    if (view !== state.view) return;
    const seen = JSON.stringify([activity, all]);
    if (seen === last) return;
    last = seen;
    fill(mine, activityTotals(activity), activityChart("activity-chart", activity), activityLegend(),
      h("h2", {}, "Success rate by endpoint"), endpointRates(activity, urls));
    if (all) {
      fill(everyone, h("h2", {}, "All tenants"), activityTotals(all), activityChart("all-activity-chart", all));
    }
  }
  show(h("h1", {}, "Activity"), picker,
    h("p", { class: "muted" }, "Deliveries per hour by outcome, and every failed attempt; the last bar is the current hour."),
    mine, everyone);
  await load();
  every(REFRESH_MS, () => load().catch(failed));
}

// --- Event catalog and test events -----------------------------------------------

// The registered event types, read once: they change only when the server restarts.
let catalogLoaded = null;
function eventTypes() {
  if (!catalogLoaded) catalogLoaded = api("GET", "/event-types").then((page) => page.data);
  catalogLoaded.catch(() => { catalogLoaded = null; });  // a failure is tried again next time
  return catalogLoaded;
}

// A value the API gave as JSON, indented (unlike a body as sent, it may be re-encoded).
function indented(value) { return JSON.stringify(value, null, 2); }

async function catalogView(view) {
  const types = await eventTypes();
  if (view !== state.view) return;
  show(h("h1", {}, "Event types"),
    h("p", { class: "muted" }, "What an endpoint can subscribe to. Every event is signed and carries " +
      "these fields; the example is what a test event sends."),
    h("div", { id: "catalog" }, types.map((t) => h("section", { class: "card event-type", dataset: { eventType: t.type } },
      h("h2", {}, h("code", {}, t.type)),
      h("p", { class: "description" }, t.description || "No description."),
      h("h3", {}, "Example"),
      t.example ? h("pre", { class: "json example" }, indented(t.example)) : h("p", { class: "muted" }, "No example."),
      h("details", {}, h("summary", {}, "JSON Schema"), h("pre", { class: "json schema" }, indented(t.schema)))))));
}

// The endpoint form's event types: the registered ones as boxes to tick; none ticked
// means every type, so a filter can only name types that exist.
function eventTypeChoices() {
  const boxes = h("div", { class: "choices", id: "event-type-choices" }, h("span", { class: "muted" }, "Loading…"));
  eventTypes().then((types) => fill(boxes, types.map((t) => h("label", { class: "choice", title: t.description },
    h("input", { type: "checkbox", name: "event_types", value: t.type }), h("code", {}, t.type)))))
    .catch((error) => fill(boxes, h("span", { class: "muted" }, error.message)));
  const node = h("fieldset", { class: "event-types" }, h("legend", {}, "Event types (none ticked: every type)"), boxes);
  const chosen = () => Array.from(boxes.querySelectorAll("input:checked")).map((box) => box.value);
  return { node, chosen };
}

const TEST_POLL_MS = 1000;
const TEST_POLLS = 60;
const TEST_SHOWN_BYTES = 300;

// "Send test event": the API sends the catalog's example as a real delivery; its
// first attempt (status code, time, the first bytes of the answer) shows below the
// endpoint as it comes, read from the delivery's JSON, without a reload.
function testSender(root, path, ep) {
  // Which type's example to send, when there is a choice: the endpoint's types, or
  // every registered one for an endpoint that takes them all.
  const choice = h("select", { class: "test-type", "aria-label": "Event type of the test", hidden: true });
  const offer = (types) => {
    fill(choice, types.map((t) => h("option", { value: t }, t)));
    choice.hidden = types.length < 2;
  };
  if (ep.event_types) offer(ep.event_types);
  else eventTypes().then((types) => offer(types.map((t) => t.type))).catch(() => {});
  const outcome = h("div", { class: "test-outcome", "aria-live": "polite" });
  const row = h("tr", { hidden: true, class: "test-row" }, h("td", { colSpan: 5 }, outcome));
  const button = h("button", { type: "button", class: "send-test", onclick: async () => {
    const view = state.view;
    button.disabled = true;
    row.hidden = false;
    delete outcome.dataset.statusCode;
    fill(outcome, h("span", { class: "muted" }, "Sending a test event…"));
    try {
      const sent = await api("POST", path + "/test", choice.value ? { event_type: choice.value } : {});
      await watchTest(root, sent.delivery_id, outcome, view);
    } catch (error) {
      fill(outcome, h("span", { class: "test-error" }, error.message));
    } finally {
      button.disabled = false;
    }
  } }, "Send test event");
  return { button, choice, row };
}

async function watchTest(root, deliveryId, outcome, view) {
  const path = root + "/deliveries/" + enc(deliveryId);
  for (let poll = 0; poll < TEST_POLLS && view === state.view; poll++) {
    const d = await api("GET", path);
    testOutcome(outcome, root, d);
    if (d.status === "delivered" || d.status === "retries_exhausted") return;
    await new Promise((done) => setTimeout(done, TEST_POLL_MS));
  }
}

function testOutcome(outcome, root, d) {
  const a = d.attempts.length ? d.attempts[d.attempts.length - 1] : null;
  const open = link(root + "/deliveries/" + enc(d.id), "Open the delivery");
  if (!a) {
    fill(outcome, badge(d.status), " ", h("span", { class: "muted" }, "Test event queued; waiting for the first attempt…"), " ", open);
    return;
  }
  const answered = a.status_code === null ? (a.error ? a.error.kind : "no answer") : "HTTP " + a.status_code;
  if (a.status_code !== null) outcome.dataset.statusCode = String(a.status_code);
  const chars = Array.from(a.response_body || "");
  const first = chars.slice(0, TEST_SHOWN_BYTES).join("") + (chars.length > TEST_SHOWN_BYTES ? "…" : "");
  fill(outcome,
    badge(d.status), " ",
    h("strong", { class: "test-status" }, answered), " in ", h("span", { class: "test-time" }, Math.round(a.duration_ms) + " ms"),
    " · attempt " + a.number + " at " + when(a.started_at),
    d.status === "retrying" ? " · next attempt " + when(d.next_attempt_at) : null, " · ", open,
    a.error && a.status_code === null ? h("div", { class: "muted" }, a.error.message) : null,
    first ? h("pre", { class: "body test-answer" }, first) : h("div", { class: "muted" }, "Empty answer."));
}

start();
