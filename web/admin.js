// The admin page: collections and their access, uploads with live progress, documents, users,
// groups and API keys. Every stored string is inserted as text (see h() in api.js).
import { ApiError, api, csrfHeaders, detailText, fill, formatBytes, formatTime, h, renderUserBar, toLogin } from "./api.js";

const $ = (id) => document.getElementById(id);
const state = { collections: [], groups: [], users: [], selected: null, docs: [], pollTimer: 0, meId: null };
const ACTIVE = new Set(["queued", "processing", "deleting"]); // poll while any row is in one of these
const UPLOAD_CONCURRENCY = 3;
// A busy server refuses an upload with 503 (or 429) and Retry-After: wait that long and send it again,
// at most this many times, before showing the refusal.
const UPLOAD_RETRIES = 5;
const RETRY_MAX_S = 30;

function flash(text, isError = false) {
  const el = $("flash");
  el.textContent = text;
  el.className = isError ? "flash error" : "flash";
  el.hidden = false;
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => (el.hidden = true), isError ? 12000 : 5000);
}

const failed = (what) => (err) => flash(`${what}: ${err.detail || err.message}`, true);

function groupIdsOf(obj) {
  if (Array.isArray(obj.group_ids)) return obj.group_ids;
  return (obj.groups || []).map((g) => (typeof g === "object" ? g.id : g));
}

function groupNames(ids) {
  const byId = new Map(state.groups.map((g) => [g.id, g.name]));
  return ids.map((id) => byId.get(id) || `#${id}`).join(", ") || "—";
}

function groupChecks(name, checked = []) {
  if (!state.groups.length) return h("p", { class: "muted small", text: "No groups yet (create them under Users & groups)." });
  return state.groups.map((g) =>
    h("label", { class: "check" }, h("input", { type: "checkbox", name, value: g.id, checked: checked.includes(g.id) }), h("span", { text: g.name })),
  );
}

const checkedValues = (root, name) => [...root.querySelectorAll(`input[name="${name}"]:checked`)].map((i) => Number(i.value));

function table(headers, rows, empty) {
  if (!rows.length) return h("p", { class: "muted", text: empty });
  return h("table", {}, h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col", text: t })))), h("tbody", {}, rows));
}

// --- tabs ----------------------------------------------------------------------------------------
function setupTabs() {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  const select = (tab) => {
    for (const t of tabs) {
      const on = t === tab;
      t.setAttribute("aria-selected", String(on));
      t.tabIndex = on ? 0 : -1;
      $(t.getAttribute("aria-controls")).hidden = !on;
    }
  };
  tabs.forEach((t, i) => {
    t.addEventListener("click", () => select(t));
    t.addEventListener("keydown", (e) => {
      const d = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
      if (!d) return;
      const next = tabs[(i + d + tabs.length) % tabs.length];
      select(next);
      next.focus();
    });
  });
  select(tabs[0]);
}

// --- collections ---------------------------------------------------------------------------------
async function loadCollections() {
  state.collections = await api.get("/api/collections");
  renderCollections();
  fill($("collection-groups"), groupChecks("new-collection-group"));
}

function renderCollections() {
  const rows = state.collections.map((c) => {
    const editor = h("div", { class: "access-editor", hidden: true },
      h("fieldset", { class: "group-picker" }, h("legend", { text: `Groups that may read ${c.name}` }), groupChecks(`access-${c.id}`, groupIdsOf(c))),
      h("button", { type: "button", text: "Save access", onclick: () => saveAccess(c, editor) }),
    );
    return h("tr", { "aria-selected": state.selected === c.id ? "true" : "false", "data-collection": c.name },
      h("td", {}, h("button", { type: "button", class: "linklike", "aria-label": `Open collection ${c.name}`, onclick: () => selectCollection(c.id) }, c.name),
        c.description ? h("div", { class: "muted small", text: c.description }) : null),
      h("td", { class: "num", text: c.document_count ?? 0 }),
      h("td", {}, h("span", { text: groupNames(groupIdsOf(c)) }), editor),
      h("td", { class: "actions" },
        h("button", { type: "button", class: "secondary", text: "Access", "aria-label": `Edit access to ${c.name}`, onclick: () => (editor.hidden = !editor.hidden) }),
        h("button", { type: "button", class: "danger", text: "Delete", "aria-label": `Delete collection ${c.name}`, onclick: () => deleteCollection(c) }),
      ),
    );
  });
  fill($("collections-table"), table(["Name", "Documents", "Readable by", ""], rows, "No collections yet."));
}

async function saveAccess(c, editor) {
  try {
    await api.put(`/api/collections/${c.id}/groups`, { group_ids: checkedValues(editor, `access-${c.id}`) });
    flash(`Access to ${c.name} saved.`);
    await loadCollections();
  } catch (err) {
    failed("Could not save access")(err);
  }
}

async function deleteCollection(c) {
  if (!confirm(`Delete the collection "${c.name}" and all of its documents?`)) return;
  try {
    await api.del(`/api/collections/${c.id}`);
    if (state.selected === c.id) selectCollection(null);
    flash(`Deleted ${c.name}.`);
    await loadCollections();
  } catch (err) {
    failed("Could not delete the collection")(err);
  }
}

function setupCollectionForm() {
  const form = $("collection-form");
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const name = form.name.value.trim();
    if (!name) return;
    try {
      const c = await api.post("/api/collections", {
        name,
        description: form.description.value.trim(),
        group_ids: checkedValues(form, "new-collection-group"),
      });
      form.reset();
      flash(`Created ${c.name}.`);
      await loadCollections();
      selectCollection(c.id);
    } catch (err) {
      failed("Could not create the collection")(err);
    }
  });
}

// --- documents -----------------------------------------------------------------------------------
function selectCollection(id) {
  state.selected = id;
  clearTimeout(state.pollTimer);
  state.docs = [];
  fill($("uploads"));
  const c = state.collections.find((x) => x.id === id);
  $("documents-heading").textContent = c ? `Documents in ${c.name}` : "Documents";
  $("documents-hint").hidden = Boolean(c);
  $("documents-body").hidden = !c;
  renderCollections();
  if (c) loadDocuments();
}

async function loadDocuments() {
  const id = state.selected;
  if (id === null) return;
  clearTimeout(state.pollTimer);
  try {
    const docs = await api.get(`/api/collections/${id}/documents`);
    if (id !== state.selected) return;
    state.docs = docs;
    renderDocuments();
  } catch (err) {
    if (id === state.selected) fill($("documents-table"), h("p", { class: "error", text: err.detail || err.message }));
  }
  // Poll once a second while anything is still on its way to ready/failed.
  if (id === state.selected && state.docs.some((d) => ACTIVE.has(d.status))) {
    state.pollTimer = setTimeout(loadDocuments, 1000);
  }
}

function statusCell(d) {
  const pct = Math.round((d.progress || 0) * 100);
  const parts = [h("span", { class: `status status-${d.status}`, text: d.status })];
  if (d.status === "processing" || d.status === "queued") {
    const label = d.status === "processing" ? `${d.stage && d.stage !== "processing" ? d.stage + " " : ""}${pct}%` : "waiting";
    parts.push(h("progress", { max: 100, value: pct, "aria-label": `${d.filename} ${pct}%` }), h("span", { class: "muted small", text: label }));
    if (d.chunks_total) parts.push(h("span", { class: "muted small", text: ` · ${d.chunks_embedded}/${d.chunks_total} chunks` }));
  }
  if (d.error) parts.push(h("div", { class: "error small reason", text: d.error }));
  // Whether a retry can help (`retryable`; null for a failure recorded before it was): the file's own fault
  // (damaged, cut short, encrypted, unsupported) fails the same way on every Re-index, so the row offers Replace.
  if (d.status === "failed" && d.retryable === false) {
    parts.push(h("div", { class: "muted small reason hint", text: "Re-indexing this file would fail the same way: replace it with a complete, readable copy." }));
  } else if (d.status === "failed" && d.retryable === true) {
    parts.push(h("div", { class: "muted small reason hint", text: "The file may be fine: Re-index to try again." }));
  }
  // What of the file was not read (scanned pages, formulas without values): ready, but not all searchable.
  if (d.notices && d.notices.length) {
    parts.push(h("ul", { class: "notices small reason", "aria-label": `What was not read of ${d.filename}` },
      d.notices.map((n) => h("li", { text: n }))));
  }
  return h("td", { class: "status-cell" }, parts);
}

function renderDocuments() {
  // A re-indexed document is a new row that replaces the old one once ready; until then both are listed.
  const replacing = new Set(state.docs.filter((d) => ACTIVE.has(d.status) && d.replaces_id).map((d) => d.replaces_id));
  const rows = state.docs.map((d) =>
    h("tr", { "data-document": d.filename, "data-status": d.status, "data-id": d.id },
      h("td", {},
        h("div", { text: d.title || d.filename }),
        d.title && d.title !== d.filename ? h("div", { class: "muted small", text: d.filename }) : null,
        replacing.has(d.id) ? h("div", { class: "muted small", text: d.status === "failed" ? "being replaced by the new upload" : "being re-indexed; searchable until the new version is ready" }) : null,
        d.replaces_id && ACTIVE.has(d.status) ? h("div", { class: "muted small", text: "new version (re-index)" }) : null),
      h("td", { text: d.detected_type || "" }),
      h("td", { class: "num", text: formatBytes(d.size ?? d.size_bytes) }),
      h("td", { class: "num", text: d.pages ?? "" }),
      h("td", { class: "num", text: d.chunk_count ?? "" }),
      statusCell(d),
      h("td", { class: "small", text: formatTime(d.updated_at) }),
      h("td", { class: "actions" },
        d.status === "queued" || d.status === "processing"
          ? h("button", { type: "button", class: "secondary", text: "Cancel", "aria-label": `Cancel ${d.filename}`, onclick: () => cancelIngestion(d) })
          : d.status === "failed" && d.retryable === false
            ? replaceButton(d, replacing.has(d.id))
            : h("button", { type: "button", class: "secondary", text: "Re-index", "aria-label": `Re-index ${d.filename}`, disabled: ACTIVE.has(d.status) || replacing.has(d.id), onclick: () => reindex(d) }),
        h("button", { type: "button", class: "danger", text: "Delete", "aria-label": `Delete ${d.filename}`, onclick: () => deleteDocument(d) }),
      ),
    ),
  );
  fill($("documents-table"), table(["Document", "Type", "Size", "Pages", "Chunks", "Status", "Updated", ""], rows, "No documents yet: drop some files above."));
}

// Replace (a failure a retry cannot mend): the chosen file is uploaded under the document's name, so it becomes
// the new version that replaces the failed one once ready (the flow of dropping a changed file). One input for
// every row: the table is redrawn each second while documents are processed, the file chooser may stay open.
const replacement = { input: null, doc: null };

function replaceButton(d, busy) {
  const choose = () => {
    if (!replacement.input) {
      replacement.input = h("input", { type: "file", hidden: true, "aria-label": "Replacement file" });
      replacement.input.addEventListener("change", () => {
        const file = replacement.input.files[0];
        replacement.input.value = "";
        if (file && replacement.doc) uploadFiles([{ file, name: replacement.doc.filename }]);
      });
      document.body.append(replacement.input);
    }
    replacement.doc = d;
    replacement.input.click();
  };
  return h("button", { type: "button", text: "Replace…", "aria-label": `Replace ${d.filename}`, disabled: busy, onclick: choose });
}

async function reindex(d) {
  try {
    await api.post(`/api/documents/${d.id}/reindex`);
    flash(`Re-indexing ${d.filename}.`);
    loadDocuments();
  } catch (err) {
    failed("Could not re-index")(err);
  }
}

async function cancelIngestion(d) {
  try {
    await api.post(`/api/documents/${d.id}/cancel`);
    flash(`Cancelled ${d.filename}; Re-index starts it again.`);
    loadDocuments();
  } catch (err) {
    failed("Could not cancel")(err);
  }
}

async function deleteDocument(d) {
  if (!confirm(`Delete "${d.filename}"?`)) return;
  try {
    await api.del(`/api/documents/${d.id}`);
    flash(`Deleted ${d.filename}.`);
    loadDocuments();
    loadCollections();
  } catch (err) {
    failed("Could not delete the document")(err);
  }
}

// --- uploads (the file input and drag-and-drop share uploadFiles) --------------------------------
/** Upload one file with XMLHttpRequest (fetch has no upload progress); resolves to the parsed reply. */
function uploadOne(collectionId, file, name, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/api/collections/${collectionId}/documents`);
    for (const [k, v] of Object.entries(csrfHeaders("POST"))) xhr.setRequestHeader(k, v);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", (e) => e.lengthComputable && onProgress(e.loaded / e.total));
    xhr.addEventListener("load", () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        /* not JSON */
      }
      if (xhr.status === 401) toLogin();
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else {
        const err = new ApiError(xhr.status, detailText(body, xhr.status));
        err.retryAfter = Number.parseFloat(xhr.getResponseHeader("Retry-After") || "");
        reject(err);
      }
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, "Network error during upload")));
    const form = new FormData();
    form.append("files", file, name);
    xhr.send(form);
  });
}

/** A hidden file or folder (".git", ".DS_Store") anywhere in a relative path: not uploaded from folders. */
const hiddenPath = (path) => path.split("/").some((part) => part.startsWith("."));

/** Files of a folder chosen with the folder picker, named by their path from the folder's name on. */
function folderFiles(fileList) {
  return [...fileList]
    .map((file) => ({ file, name: file.webkitRelativePath || file.name }))
    .filter((f) => !hiddenPath(f.name));
}

/** Dropped items: files as they are, folders walked (each file named by its path from the folder's name on). */
async function droppedFiles(dataTransfer) {
  const entries = [...dataTransfer.items].map((item) => item.webkitGetAsEntry && item.webkitGetAsEntry()).filter(Boolean);
  if (!entries.length) return [...dataTransfer.files].map((file) => ({ file, name: file.name }));
  const out = [];
  const walk = async (entry) => {
    const path = entry.fullPath.replace(/^\/+/, "");
    if (entry.isFile) {
      if (!hiddenPath(path)) out.push({ file: await new Promise((ok, fail) => entry.file(ok, fail)), name: path });
    } else if (entry.isDirectory && !hiddenPath(path)) {
      const reader = entry.createReader();
      // readEntries answers in batches (100 in Chrome) until it answers an empty one
      for (let batch = await new Promise((ok, fail) => reader.readEntries(ok, fail)); batch.length; batch = await new Promise((ok, fail) => reader.readEntries(ok, fail))) {
        for (const child of batch) await walk(child);
      }
    }
  };
  for (const entry of entries) await walk(entry);
  return out;
}

/** Upload {file, name} items (name: the document's name, a folder path for files of a folder). */
async function uploadFiles(items) {
  const collectionId = state.selected;
  if (collectionId === null || !items.length) return;
  const queue = items.map(({ file, name }) => {
    const bar = h("progress", { max: 100, value: 0, "aria-label": `Uploading ${name}` });
    const note = h("span", { class: "muted small", text: "waiting" });
    const li = h("li", { "data-upload": name }, h("span", { class: "name", text: name }), h("span", { class: "muted small", text: ` ${formatBytes(file.size)} ` }), bar, note);
    $("uploads").append(li);
    return { file, name, li, bar, note };
  });
  /** Upload with retries while the server answers "busy" (503/429 with Retry-After). */
  const send = async (item) => {
    for (let attempt = 0; ; attempt++) {
      item.note.textContent = "uploading";
      try {
        return await uploadOne(collectionId, item.file, item.name, (f) => (item.bar.value = Math.round(f * 100)));
      } catch (err) {
        const busy = (err.status === 503 || err.status === 429) && attempt < UPLOAD_RETRIES;
        if (!busy) throw err;
        const wait = Math.min(RETRY_MAX_S, Number.isFinite(err.retryAfter) && err.retryAfter > 0 ? err.retryAfter : 2);
        item.bar.value = 0;
        item.note.textContent = `server busy, retrying in ${Math.round(wait)} s`;
        item.li.dataset.retries = String(attempt + 1);
        await new Promise((r) => setTimeout(r, wait * 1000));
      }
    }
  };
  const worker = async () => {
    for (let item = queue.shift(); item; item = queue.shift()) {
      try {
        const res = await send(item);
        const rejected = (res && res.rejected) || [];
        const docs = (res && res.documents) || [];
        const doc = docs[0];
        if (rejected.length && !docs.length) {
          item.li.classList.add("failed");
          item.bar.remove();
          item.note.textContent = `rejected: ${rejected[0].detail}`;
        } else if (docs.length > 1 || rejected.length) {
          // a ZIP archive: its files became documents; refusals stay listed until the page is left
          item.bar.value = 100;
          const refused = rejected.map((r) => `${r.filename}: ${r.detail}`).join("; ");
          const dups = docs.filter((d) => d.duplicate);
          const same = dups.map((d) => `${d.uploaded_filename} = ${d.filename}`).join("; ");
          const queued = docs.length - dups.length;
          item.note.textContent = `${queued} file${queued === 1 ? "" : "s"} queued for indexing` + (dups.length ? `, ${dups.length} already uploaded (${same})` : "") + (rejected.length ? `, ${rejected.length} refused (${refused})` : "");
          if (rejected.length) item.li.classList.add("partial");
          else if (!dups.length) setTimeout(() => item.li.remove(), 4000); // what was refused or already there stays listed
        } else {
          item.bar.value = 100;
          const asName = doc && doc.duplicate && doc.filename !== doc.uploaded_filename ? ` as ${doc.filename}` : "";
          item.note.textContent = doc && doc.duplicate ? `already uploaded${asName} (same content)` : "uploaded, queued for indexing";
          if (!(doc && doc.duplicate)) setTimeout(() => item.li.remove(), 4000); // the documents table carries on with its progress
        }
      } catch (err) {
        item.li.classList.add("failed");
        item.bar.remove();
        item.note.textContent = `rejected: ${err.detail || err.message}`;
      }
      if (collectionId === state.selected) loadDocuments();
    }
  };
  await Promise.all(Array.from({ length: UPLOAD_CONCURRENCY }, worker));
  loadCollections();
}

function setupUploads() {
  const zone = $("dropzone");
  const input = $("file-input");
  input.addEventListener("change", () => {
    const files = [...input.files].map((file) => ({ file, name: file.name }));
    input.value = "";
    uploadFiles(files);
  });
  const folder = $("folder-input");
  folder.addEventListener("change", () => {
    const files = folderFiles(folder.files);
    folder.value = "";
    uploadFiles(files);
  });
  zone.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      input.click();
    }
  });
  zone.addEventListener("click", (e) => {
    if (e.target === zone) input.click();
  });
  for (const ev of ["dragenter", "dragover"]) {
    zone.addEventListener(ev, (e) => {
      e.preventDefault();
      zone.classList.add("over");
    });
  }
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", async (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    try {
      uploadFiles(await droppedFiles(e.dataTransfer));
    } catch (err) {
      flash(`Could not read the dropped folder: ${err.message || err}`, true);
    }
  });
}

// --- users and groups ----------------------------------------------------------------------------
async function loadPeople() {
  [state.groups, state.users] = await Promise.all([api.get("/api/groups"), api.get("/api/users")]);
  renderUsers();
  renderGroups();
  fill($("user-groups"), groupChecks("new-user-group"));
  fill($("collection-groups"), groupChecks("new-collection-group"));
  renderCollections();
}

function renderUsers() {
  const rows = state.users.map((u) => {
    const pw = h("input", { type: "password", minlength: 8, maxlength: 1024, autocomplete: "new-password", "aria-label": `New password for ${u.name}` });
    const editor = h("div", { class: "access-editor", hidden: true }, pw, " ",
      h("button", { type: "button", text: "Save password", onclick: () => savePassword(u, pw) }));
    return h("tr", { "data-user": u.name }, h("td", {}, h("span", { text: u.name }), editor), h("td", { text: u.role }), h("td", { text: groupNames(groupIdsOf(u)) }),
      h("td", { class: "actions" },
        h("button", { type: "button", class: "secondary", text: "Password", "aria-label": `Set password of ${u.name}`, onclick: () => (editor.hidden = !editor.hidden) }),
        u.id === state.meId ? null
          : h("button", { type: "button", class: "danger", text: "Delete", "aria-label": `Delete user ${u.name}`, onclick: () => deleteUser(u) })),
    );
  });
  fill($("users-table"), table(["User", "Role", "Groups", ""], rows, "No users yet."));
}

async function savePassword(u, input) {
  if (input.value.length < 8) {
    flash("A password needs at least 8 characters.", true);
    return;
  }
  try {
    await api.put(`/api/users/${u.id}/password`, { password: input.value });
    // the user's open sessions ended with the old password (one's own too: sign in again)
    flash(`Password of ${u.name} set; they sign in with it from now on.`);
    await loadPeople();
  } catch (err) {
    failed("Could not set the password")(err);
  }
}

async function deleteUser(u) {
  if (!confirm(`Delete the user "${u.name}"? Their API keys and sessions stop working at once.`)) return;
  try {
    await api.del(`/api/users/${u.id}`);
    flash(`Deleted user ${u.name}.`);
    await loadPeople();
  } catch (err) {
    failed("Could not delete the user")(err);
  }
}

function renderGroups() {
  const rows = state.groups.map((g) => {
    const members = state.users.filter((u) => groupIdsOf(u).includes(g.id));
    const editor = h("div", { class: "access-editor", hidden: true },
      h("fieldset", { class: "group-picker" }, h("legend", { text: `Members of ${g.name}` }),
        state.users.map((u) => h("label", { class: "check" }, h("input", { type: "checkbox", name: `members-${g.id}`, value: u.id, checked: members.includes(u) }), h("span", { text: u.name })))),
      h("button", { type: "button", text: "Save members", onclick: () => saveMembers(g, editor) }),
    );
    return h("tr", { "data-group": g.name },
      h("td", { text: g.name }),
      h("td", {}, h("span", { text: members.map((u) => u.name).join(", ") || "—" }), editor),
      h("td", { class: "actions" }, h("button", { type: "button", class: "secondary", text: "Members", "aria-label": `Edit members of ${g.name}`, onclick: () => (editor.hidden = !editor.hidden) }),
        h("button", { type: "button", class: "danger", text: "Delete", "aria-label": `Delete group ${g.name}`, onclick: () => deleteGroup(g) })),
    );
  });
  fill($("groups-table"), table(["Group", "Members", ""], rows, "No groups yet."));
}

async function deleteGroup(g) {
  if (!confirm(`Delete the group "${g.name}"? Its members lose the access it gave them.`)) return;
  try {
    await api.del(`/api/groups/${g.id}`);
    flash(`Deleted group ${g.name}.`);
    await Promise.all([loadPeople(), loadCollections()]);
  } catch (err) {
    failed("Could not delete the group")(err);
  }
}

async function saveMembers(g, editor) {
  try {
    await api.put(`/api/groups/${g.id}/members`, { user_ids: checkedValues(editor, `members-${g.id}`) });
    flash(`Members of ${g.name} saved.`);
    await loadPeople();
  } catch (err) {
    failed("Could not save members")(err);
  }
}

function setupPeopleForms() {
  const uf = $("user-form");
  uf.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const u = await api.post("/api/users", {
        name: uf.name.value.trim(),
        password: uf.password.value,
        role: uf.role.value,
        group_ids: checkedValues(uf, "new-user-group"),
      });
      uf.reset();
      flash(`Created user ${u.name}.`);
      // The user's first API key (for tools: REST, /v1) is in this response only; members cannot make keys.
      showKey($("new-user-key"), `API key of ${u.name}`, u.api_key, `User ${u.name} created with this API key for tools. `);
      await loadPeople();
    } catch (err) {
      failed("Could not create the user")(err);
    }
  });
  const gf = $("group-form");
  gf.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const g = await api.post("/api/groups", { name: gf.name.value.trim() });
      gf.reset();
      flash(`Created group ${g.name}.`);
      await loadPeople();
    } catch (err) {
      failed("Could not create the group")(err);
    }
  });
}

// --- API keys ------------------------------------------------------------------------------------
/** A key shown once, in `el`: selected, with a Copy button; `label` names the field for assistive tech. */
function showKey(el, label, key, headline) {
  const input = h("input", { class: "mono", readonly: true, value: key, "aria-label": label, size: 60 });
  const copy = h("button", { type: "button", class: "secondary", text: "Copy",
    onclick: async () => {
      input.select();
      try {
        await navigator.clipboard.writeText(key);
        copy.textContent = "Copied";
      } catch {
        copy.textContent = "Press Ctrl+C";
      }
    } });
  fill(el, h("p", {}, h("strong", { text: headline }), "Copy it now: it will not be shown again."), input, " ", copy);
  el.hidden = false;
  input.focus();
  input.select();
}

async function loadKeys() {
  const keys = await api.get("/api/keys");
  const rows = keys.map((k) =>
    h("tr", { "data-key": k.name },
      h("td", { text: k.name || "(unnamed)" }),
      h("td", { class: "mono", text: k.prefix ? `${k.prefix}…` : "" }),
      h("td", { class: "small", text: formatTime(k.created_at) }),
      h("td", { class: "actions" }, h("button", { type: "button", class: "danger", text: "Revoke", "aria-label": `Revoke key ${k.name}`, onclick: () => revokeKey(k) })),
    ),
  );
  fill($("keys-table"), table(["Name", "Key", "Created", ""], rows, "No API keys."));
}

async function revokeKey(k) {
  if (!confirm(`Revoke the key "${k.name}"? Tools using it stop working at once.`)) return;
  try {
    await api.del(`/api/keys/${k.id}`);
    flash(`Revoked ${k.name}.`);
    loadKeys();
  } catch (err) {
    failed("Could not revoke the key")(err);
  }
}

function setupKeyForm() {
  const form = $("key-form");
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const k = await api.post("/api/keys", { name: form.name.value.trim() });
      form.reset();
      showKey($("new-key"), "New API key", k.key, `Key "${k.name}" created. `);
      loadKeys();
    } catch (err) {
      failed("Could not create the key")(err);
    }
  });
}

// --- start ---------------------------------------------------------------------------------------
async function main() {
  // Handlers first, then the submit buttons (disabled in the HTML): a click before this ran would submit a
  // form natively (a page reload that loses what was typed).
  setupTabs();
  setupCollectionForm();
  setupUploads();
  setupPeopleForms();
  setupKeyForm();
  for (const button of document.querySelectorAll("form button[type=submit]")) button.disabled = false;
  const me = await api.get("/api/me");
  state.meId = me.id;
  renderUserBar($("userbar"), me, "admin");
  if (me.role !== "admin") {
    // the tabs of pages a member cannot use, and no way back but the top bar's small "Ask", looked broken
    document.querySelector("nav.tabs").hidden = true;
    fill(document.querySelector("main"), h("p", { class: "error", role: "alert" },
      "This page is for administrators. ", h("a", { href: "/", text: "Ask questions about your documents" }), "."));
    return;
  }
  await Promise.all([loadPeople().catch(failed("Could not load users and groups")), loadCollections().catch(failed("Could not load collections"))]);
  loadKeys().catch(failed("Could not load API keys"));
}

main().catch((err) => {
  if (!(err instanceof ApiError && err.status === 401)) flash(`Could not load the page: ${err.detail || err.message}`, true);
});
