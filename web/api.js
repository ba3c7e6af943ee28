// Shared helpers: JSON fetch with the CSRF header, an element builder that only ever sets text,
// and a server-sent-events reader for POST responses (EventSource cannot POST).

const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);

/** The value of a cookie readable by scripts (the CSRF token), or "". */
export function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [k, ...v] = part.trim().split("=");
    if (k === name) return decodeURIComponent(v.join("="));
  }
  return "";
}

export function csrfHeaders(method) {
  return UNSAFE.has(method.toUpperCase()) ? { "X-CSRF-Token": cookie("autoglm_csrf") } : {};
}

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
    this.detail = detail;
  }
}

/** A readable sentence from FastAPI's `detail` (a string, or a list of validation errors). */
export function detailText(body, status) {
  const d = body && body.detail;
  if (typeof d === "string") return d;
  if (Array.isArray(d)) {
    return d.map((e) => `${(e.loc || []).slice(1).join(".") || "input"}: ${e.msg}`).join("; ");
  }
  return `Request failed (HTTP ${status})`;
}

export function toLogin() {
  const next = location.pathname + location.search;
  location.assign(`/login?next=${encodeURIComponent(next)}`);
}

/**
 * fetch() for the JSON API: sends the session cookie, the CSRF token on state-changing requests,
 * and throws ApiError with the server's detail. A 401 sends the browser to the sign-in page.
 */
export async function request(path, { method = "GET", json, body, signal, raw = false } = {}) {
  const headers = { Accept: raw ? "text/event-stream" : "application/json", ...csrfHeaders(method) };
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  const res = await fetch(path, { method, headers, body, signal, credentials: "same-origin" });
  if (res.status === 401 && !path.startsWith("/api/auth/")) {
    toLogin();
    throw new ApiError(401, "Not authenticated");
  }
  if (!res.ok) {
    let data = null;
    try {
      data = await res.json();
    } catch {
      /* not JSON */
    }
    throw new ApiError(res.status, detailText(data, res.status));
  }
  if (raw) return res;
  if (res.status === 204) return null;
  const type = res.headers.get("Content-Type") || "";
  return type.includes("json") ? res.json() : null;
}

export const api = {
  get: (p, o) => request(p, { ...o, method: "GET" }),
  post: (p, json, o) => request(p, { ...o, method: "POST", json }),
  put: (p, json, o) => request(p, { ...o, method: "PUT", json }),
  del: (p, o) => request(p, { ...o, method: "DELETE" }),
};

/**
 * Build an element. `attrs`: "class", "text", event handlers as onX functions, booleans for
 * boolean attributes, everything else through setAttribute. Children: nodes or strings
 * (strings become text nodes, so stored text can never become markup).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2).toLowerCase(), v);
    else if (k === "value") el.value = v;
    else if (k === "checked" || k === "selected" || k === "disabled" || k === "hidden") el[k] = Boolean(v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Parse a text/event-stream body into {event, data} objects (data JSON-decoded when it parses). */
export async function* sseEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  let cr = ""; // a chunk that ends in "\r" may be half of a "\r\n" pair: hold it for the next chunk
  for (;;) {
    const { value, done } = await reader.read();
    let text = cr + (value || "");
    cr = "";
    if (!done && text.endsWith("\r")) {
      cr = "\r";
      text = text.slice(0, -1);
    }
    buf += text.replace(/\r\n?/g, "\n");
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      const ev = parseBlock(block);
      if (ev) yield ev;
    }
    if (done) break;
  }
  const last = parseBlock(buf);
  if (last) yield last;
}

function parseBlock(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const i = line.indexOf(":");
    const field = i < 0 ? line : line.slice(0, i);
    let val = i < 0 ? "" : line.slice(i + 1);
    if (val.startsWith(" ")) val = val.slice(1);
    if (field === "event") event = val;
    else if (field === "data") data.push(val);
  }
  if (!data.length) return null;
  const text = data.join("\n");
  try {
    return { event, data: JSON.parse(text) };
  } catch {
    return { event, data: text };
  }
}

/** Sign out and go to the sign-in page. */
export async function logout() {
  try {
    await api.post("/api/auth/logout");
  } finally {
    location.assign("/login");
  }
}

export function formatBytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

export function formatTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
}

/** The signed-in user's header: name, role, links and a sign-out button. */
export function renderUserBar(el, me, current) {
  const links = [h("a", { href: "/", "aria-current": current === "ask" ? "page" : null, text: "Ask" })];
  if (me.role === "admin") {
    links.push(h("a", { href: "/admin", "aria-current": current === "admin" ? "page" : null, text: "Admin" }));
  }
  fill(
    el,
    h("nav", { class: "links", "aria-label": "Pages" }, links),
    h("span", { class: "who" }, h("span", { text: me.name }), " ", h("span", { class: "role", text: me.role })),
    h("button", { type: "button", class: "secondary", onclick: () => passwordDialog(me), text: "Password" }),
    h("button", { type: "button", class: "secondary", onclick: logout, text: "Sign out" }),
  );
}

/** A dialog to change one's own password (PUT /api/me/password); one's other sessions end. */
function passwordDialog(me) {
  const field = (label, autocomplete) => h("input", { type: "password", required: true, maxlength: 1024, autocomplete, "aria-label": label });
  const current = field("Current password", "current-password");
  const next = field("New password", "new-password");
  const again = field("New password again", "new-password");
  const note = h("p", { class: "error small", role: "alert", hidden: true });
  const dialog = h("dialog", { class: "password-dialog", "aria-label": "Change your password" });
  const form = h("form", { class: "stack" },
    h("h2", { text: `Change the password of ${me.name}` }),
    h("label", { text: "Current password" }), current,
    h("label", { text: "New password (8 characters or more)" }), next,
    h("label", { text: "New password again" }), again,
    note,
    h("div", { class: "actions" },
      h("button", { type: "submit", text: "Change password" }),
      h("button", { type: "button", class: "secondary", text: "Cancel", onclick: () => dialog.close() })),
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const say = (text) => ((note.textContent = text), (note.hidden = false));
    if (next.value.length < 8) return say("The new password needs at least 8 characters.");
    if (next.value !== again.value) return say("The two new passwords differ.");
    try {
      await api.put("/api/me/password", { current_password: current.value, password: next.value });
      fill(form, h("p", { role: "status", text: "Password changed. Your other sessions are signed out." }),
        h("button", { type: "button", text: "Close", onclick: () => dialog.close() }));
    } catch (err) {
      say(err.detail || err.message);
    }
  });
  dialog.addEventListener("close", () => dialog.remove());
  dialog.append(form);
  document.body.append(dialog);
  dialog.showModal();
  current.focus();
}
