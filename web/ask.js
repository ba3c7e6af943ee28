// The ask page: streamed answers with citation buttons, source preview, history, feedback.
import { ApiError, api, fill, formatTime, h, renderUserBar, request, sseEvents } from "./api.js";
import { citations } from "./citations.js";

const $ = (id) => document.getElementById(id);
const state = { conversationId: null, busy: false };

const STAGES = { embed: "query embedding", dense: "dense search", bm25: "keyword search (BM25)", rerank: "re-ranking" };

// --- citations and sources -----------------------------------------------------------------------
/**
 * Answer text as text nodes, with each citation marker that names sources (see citations.js: [n], [n, m],
 * 【n】, [^n], [来源n], ...) turned into one [n] button per source: every form reads the same. The whole text
 * is parsed again on each paint, so a marker split across streamed tokens ("【", "1", "】") turns into a
 * button once its closing bracket arrives.
 */
function renderAnswer(el, text, sources) {
  const byN = new Map((sources || []).map((s) => [Number(s.n), s]));
  const parts = [];
  let last = 0;
  for (const c of citations(text, (n) => byN.has(n))) {
    parts.push(text.slice(last, c.start));
    // An extractive answer quotes “sentence” [n]: remember the quote so the passage view can mark it.
    const quoted = /“([^“”]+)”\s*$/.exec(text.slice(Math.max(0, c.start - 4000), c.start));
    for (const n of c.numbers) {
      const src = byN.get(n);
      if (quoted) src.quotes = [...new Set([...(src.quotes || []), quoted[1]])];
      parts.push(citeButton(src));
    }
    last = c.end;
  }
  parts.push(text.slice(last));
  fill(el, parts);
}

function citeButton(src) {
  return h("button", {
    type: "button",
    class: "cite",
    "data-n": src.n,
    "aria-label": `Source ${src.n}: ${src.title || "untitled"}`,
    title: src.title || "",
    text: `[${src.n}]`,
    onclick: () => openSource(src),
  });
}

function sourceLabel(src) {
  const bits = [];
  // a slide of a presentation by its number; a page (or a source stored before the kind was kept) as "p."
  if (src.page !== null && src.page !== undefined) bits.push(src.page_kind === "slide" ? `slide ${src.page}` : `p. ${src.page}`);
  if (src.heading_path && src.heading_path.length) bits.push(src.heading_path.join(" › "));
  return bits.join(" · ");
}

function renderSources(el, sources, cited) {
  if (!sources || !sources.length) {
    fill(el, h("p", { class: "muted small", text: "No passages were found for this question." }));
    return;
  }
  const citedSet = new Set(cited || sources.filter((s) => s.cited).map((s) => s.n));
  fill(
    el,
    h(
      "details",
      { class: "sources", open: true },
      h("summary", { text: `Sources (${sources.length})` }),
      h(
        "ol",
        { class: "source-list" },
        sources.map((s) =>
          h(
            "li",
            { class: citedSet.has(s.n) ? "cited" : "" },
            h(
              "button",
              { type: "button", class: "source-link", onclick: () => openSource(s) },
              h("span", { class: "n", text: `[${s.n}]` }),
              " ",
              h("span", { class: "title", text: s.title || "untitled" }),
              sourceLabel(s) ? h("span", { class: "muted small", text: ` — ${sourceLabel(s)}` }) : null,
              citedSet.has(s.n) ? h("span", { class: "badge", text: "cited" }) : null,
            ),
          ),
        ),
      ),
    ),
  );
}

/** Text with [start, end) ranges wrapped in <mark>; ranges are clipped and sorted. */
function marked(text, ranges) {
  const out = [];
  let pos = 0;
  const clean = ranges
    .map(([a, b]) => [Math.max(0, a), Math.min(text.length, b)])
    .filter(([a, b]) => b > a)
    .sort((x, y) => x[0] - y[0]);
  for (const [a, b] of clean) {
    if (a < pos) continue;
    out.push(text.slice(pos, a), h("mark", { text: text.slice(a, b) }));
    pos = b;
  }
  out.push(text.slice(pos));
  return out;
}

/** Where `quote` occurs in `text` (whitespace may differ: the answer joins lines), preferring from `from`. */
function locate(text, quote, from) {
  const words = quote.trim().split(/\s+/).filter(Boolean);
  if (!words.length) return null;
  const re = new RegExp(words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("\\s+"), "g");
  re.lastIndex = from;
  const m = re.exec(text) || ((re.lastIndex = 0), re.exec(text));
  return m ? [m.index, m.index + m[0].length] : null;
}

/**
 * The passage view: the document window with the cited chunk tinted and the quoted sentences marked
 * (from the source's `highlight` offsets, or the quotes the answer made); the whole chunk is marked
 * when there is nothing more precise.
 */
function renderPassage(el, text, chunk, src) {
  const [cs, ce] = chunk;
  const quotes = src.highlight && src.highlight.length
    ? src.highlight.map(([a, b]) => (src.text || "").slice(a, b))
    : src.quotes || [];
  let ranges = quotes.map((q) => locate(text, q, cs)).filter((r) => r && r[0] < ce + 1 && r[1] > cs - 1);
  if (!ranges.length) ranges = [[cs, ce]];
  const part = (a, b) => marked(text.slice(a, b), ranges.map(([x, y]) => [x - a, y - a]));
  fill(el, part(0, cs), h("span", { class: "chunk" }, part(cs, ce)), part(ce, text.length));
  el.dataset.chunk = `${cs}-${ce}`;
}

async function openSource(src) {
  const panel = $("source-panel");
  panel.hidden = false;
  document.body.classList.add("panel-open");
  $("source-title").textContent = `[${src.n}] ${src.title || "untitled"}`;
  $("source-meta").textContent = sourceLabel(src);
  fill($("source-text"), h("p", { class: "muted", text: "Loading the passage…" }));
  panel.focus();
  let text = src.text || "";
  let chunk = [0, text.length];
  try {
    const p = await api.get(`/api/chunks/${encodeURIComponent(src.chunk_id)}/preview`);
    text = p.text;
    chunk = [p.highlight_start, p.highlight_end];
    $("source-meta").textContent = sourceLabel(p);
  } catch (err) {
    $("source-meta").textContent = `${sourceLabel(src)} (the surrounding text could not be loaded: ${err.detail || err.message})`;
  }
  const body = $("source-text");
  renderPassage(body, text, chunk, src);
  const first = body.querySelector("mark");
  if (first) first.scrollIntoView({ block: "center" });
}

function closeSource() {
  $("source-panel").hidden = true;
  document.body.classList.remove("panel-open");
}

// --- notes, timings, feedback --------------------------------------------------------------------
function renderNotes(el, done) {
  const notes = [];
  if (done.extractive || done.generator === null) {
    notes.push(
      h("p", { class: "note extractive", role: "note" },
        h("strong", { text: "Extractive answer. " }),
        "No generator model is loaded, so this answer quotes the sentences that best match your question."),
    );
  }
  if (done.degraded) {
    const stages = (done.timed_out || []).map((s) => STAGES[s] || s);
    notes.push(
      h("p", { class: "note degraded", role: "note" },
        h("strong", { text: "Partial search. " }),
        stages.length ? `Timed out: ${stages.join(", ")}. ` : "A search step ran out of time. ",
        "The answer uses the results that finished in time."),
    );
  }
  const t = done.timings || {};
  const bits = [];
  if (t.retrieval_ms && t.retrieval_ms.total !== undefined) bits.push(`retrieval ${Math.round(t.retrieval_ms.total)} ms`);
  if (t.ttft_ms !== undefined && t.ttft_ms !== null) bits.push(`first token ${Math.round(t.ttft_ms)} ms`);
  if (t.tokens_per_s) bits.push(`${t.tokens_per_s.toFixed(1)} tokens/s`);
  if (done.generator) bits.push(done.generator);
  if (bits.length) notes.push(h("p", { class: "muted small timings", text: bits.join(" · ") }));
  fill(el, notes);
}

function feedbackBox(messageId, initial) {
  const status = h("span", { class: "muted small", role: "status" });
  const comment = h("textarea", { rows: 2, class: "feedback-comment", "aria-label": "Comment (optional)", placeholder: "What was wrong or missing? (optional)" });
  const send = h("button", { type: "button", class: "secondary", text: "Send comment" });
  const commentRow = h("div", { class: "feedback-more", hidden: true }, comment, send);
  let rating = initial && (initial.rating || initial);
  // Words, not emoji: a machine without an emoji font would show empty boxes.
  const up = h("button", { type: "button", class: "thumb", text: "Helpful" });
  const down = h("button", { type: "button", class: "thumb", text: "Not helpful" });
  const paint = () => {
    up.setAttribute("aria-pressed", String(rating === "up"));
    down.setAttribute("aria-pressed", String(rating === "down"));
  };
  const post = async (body) => {
    try {
      await api.post(`/api/messages/${messageId}/feedback`, body);
      status.textContent = body.comment ? "Thanks, comment sent." : "Thanks for the feedback.";
    } catch (err) {
      status.textContent = `Could not send feedback: ${err.detail || err.message}`;
    }
  };
  const rate = (r) => {
    rating = r;
    paint();
    commentRow.hidden = false;
    post({ rating: r });
  };
  up.addEventListener("click", () => rate("up"));
  down.addEventListener("click", () => rate("down"));
  send.addEventListener("click", () => {
    if (rating && comment.value.trim()) post({ rating, comment: comment.value.trim() });
  });
  paint();
  return h("div", { class: "feedback" }, h("span", { class: "muted small", text: "Rate this answer:" }), up, down, status, commentRow);
}

// --- messages --------------------------------------------------------------------------------------
function addUser(text) {
  $("empty-hint").hidden = true;
  $("messages").append(h("li", { class: "msg user" }, h("div", { class: "bubble", text })));
}

function addAssistant() {
  const thinking = h("div", { class: "thinking" });
  const answer = h("div", { class: "answer", "aria-busy": "true", "data-state": "streaming" });
  const notes = h("div", { class: "notes" });
  const sources = h("div", { class: "sources-box" });
  const foot = h("div", { class: "foot" });
  const li = h("li", { class: "msg assistant" }, h("div", { class: "bubble" }, thinking, answer, notes, sources, foot));
  $("messages").append(li);
  return { li, thinking, answer, notes, sources, foot, text: "", sources_: [], reasoning: null };
}

/**
 * A reasoning model's thinking, apart from its answer: a collapsed "Reasoning" disclosure (the thinking is not
 * the answer, and cites nothing), and while it streams a status line saying that the model is working.
 */
function reasoningBox(t, text, working) {
  if (!t.reasoning) {
    const status = h("p", { class: "muted small reasoning-status", role: "status", "aria-live": "polite" });
    const body = h("div", { class: "reasoning-text" });
    t.reasoning = { status, body, text: "" };
    fill(t.thinking, status, h("details", { class: "reasoning" }, h("summary", { text: "Reasoning" }), body));
  }
  t.reasoning.text = text;
  t.reasoning.body.textContent = text;
  t.reasoning.status.textContent = working ? "Thinking before answering…" : "";
  t.reasoning.status.hidden = !working;
}

function renderStored(m) {
  if (m.role === "user") return addUser(m.content);
  const t = addAssistant();
  t.answer.setAttribute("aria-busy", "false");
  t.answer.dataset.state = "done";
  if (m.meta && typeof m.meta.reasoning === "string") reasoningBox(t, m.meta.reasoning, false);
  renderAnswer(t.answer, m.content || "", m.sources || []);
  // A stream cut off (connection lost, server restarted) is stored as an empty, incomplete turn.
  if (m.meta && m.meta.incomplete) t.notes.append(h("p", { class: "muted small", text: "This answer was interrupted before it finished; ask again." }));
  if (m.sources) renderSources(t.sources, m.sources, null);
  if (m.id) fill(t.foot, feedbackBox(m.id, m.feedback));
}

async function ask(question) {
  addUser(question);
  const t = addAssistant();
  t.li.scrollIntoView({ block: "end" });
  const ids = [...document.querySelectorAll("#collection-list input:checked")].map((c) => Number(c.value));
  const body = { question, stream: true };
  if (ids.length) body.collection_ids = ids;
  if (state.conversationId) body.conversation_id = state.conversationId;
  let frame = 0;
  const paint = () => {
    frame = 0;
    renderAnswer(t.answer, t.text, t.sources_);
  };
  let finished = false;
  let restarted = false;
  try {
    let res;
    try {
      res = await request("/api/ask", { method: "POST", json: body, raw: true });
    } catch (err) {
      // The conversation was deleted meanwhile (in another tab): this question starts a new one, instead of
      // every question failing until "New conversation" is clicked.
      if (!(body.conversation_id && err instanceof ApiError && err.status === 404 && err.detail === "Conversation not found")) throw err;
      state.conversationId = null;
      delete body.conversation_id;
      restarted = true;
      res = await request("/api/ask", { method: "POST", json: body, raw: true });
    }
    for await (const ev of sseEvents(res)) {
      const d = ev.data;
      if (ev.event === "sources") {
        state.conversationId = d.conversation_id;
        t.messageId = d.message_id;
        t.sources_ = d.sources || [];
        renderSources(t.sources, t.sources_, null);
      } else if (ev.event === "reasoning") {
        reasoningBox(t, (t.reasoning ? t.reasoning.text : "") + d.text, true);
      } else if (ev.event === "token") {
        if (t.reasoning) reasoningBox(t, t.reasoning.text, false);
        t.text += d.text;
        t.answer.dataset.tokens = String(Number(t.answer.dataset.tokens || 0) + 1);
        if (!frame) frame = requestAnimationFrame(paint);
      } else if (ev.event === "done") {
        finished = true;
        if (typeof d.reasoning === "string") reasoningBox(t, d.reasoning, false);
        if (d.message_id) t.messageId = d.message_id;
        if (d.conversation_id) state.conversationId = d.conversation_id;
        renderNotes(t.notes, d);
        renderSources(t.sources, t.sources_, d.cited);
        if (t.messageId) fill(t.foot, feedbackBox(t.messageId, null));
      } else if (ev.event === "error") {
        finished = true;
        t.notes.append(h("p", { class: "error", role: "alert", text: d.detail || String(d) }));
      }
    }
    if (!finished) t.notes.append(h("p", { class: "error", role: "alert", text: "The answer stopped before it was complete." }));
    if (restarted) t.notes.append(h("p", { class: "muted small", text: "The conversation was deleted meanwhile; this question starts a new one." }));
  } catch (err) {
    t.notes.append(h("p", { class: "error", role: "alert", text: err instanceof ApiError ? err.detail : `Could not reach the server: ${err.message}` }));
  }
  if (frame) cancelAnimationFrame(frame);
  if (t.reasoning) reasoningBox(t, t.reasoning.text, false); // no longer working, however it ended
  paint();
  t.answer.setAttribute("aria-busy", "false");
  t.answer.dataset.state = "done";
  loadHistory();
}

// --- history and collections ----------------------------------------------------------------------
async function loadHistory() {
  let rows = [];
  try {
    rows = await api.get("/api/conversations");
  } catch (err) {
    fill($("history"), h("li", { class: "muted small", text: `History unavailable: ${err.detail || err.message}` }));
    return;
  }
  if (!rows.length) {
    fill($("history"), h("li", { class: "muted small", text: "No conversations yet." }));
    return;
  }
  fill(
    $("history"),
    rows.map((c) =>
      h(
        "li",
        {},
        h(
          "button",
          {
            type: "button",
            class: "history-item",
            "aria-current": c.id === state.conversationId ? "true" : null,
            onclick: () => openConversation(c.id),
          },
          h("span", { class: "title", text: c.title || "Untitled" }),
          h("span", { class: "muted small", text: formatTime(c.updated_at) }),
        ),
        h("button", {
          type: "button",
          class: "history-delete",
          "aria-label": `Delete conversation: ${c.title || "Untitled"}`,
          title: "Delete",
          text: "×",
          onclick: () => deleteConversation(c),
        }),
      ),
    ),
  );
}

async function deleteConversation(c) {
  if (!confirm(`Delete the conversation "${c.title || "Untitled"}"?`)) return;
  try {
    await api.del(`/api/conversations/${encodeURIComponent(c.id)}`);
    if (state.conversationId === c.id) newConversation();
    else loadHistory();
  } catch (err) {
    fill($("history"), h("li", { class: "error small", role: "alert", text: `Could not delete: ${err.detail || err.message}` }));
  }
}

async function openConversation(id) {
  try {
    const conv = await api.get(`/api/conversations/${encodeURIComponent(id)}`);
    state.conversationId = conv.id;
    $("messages").replaceChildren();
    $("empty-hint").hidden = conv.messages.length > 0;
    conv.messages.forEach(renderStored);
    closeSource();
    loadHistory();
    $("question").focus();
  } catch (err) {
    $("messages").append(h("li", { class: "error", role: "alert", text: `Could not open the conversation: ${err.detail || err.message}` }));
  }
}

function newConversation() {
  state.conversationId = null;
  $("messages").replaceChildren();
  $("empty-hint").hidden = false;
  closeSource();
  loadHistory();
  $("question").focus();
}

async function loadCollections() {
  try {
    const rows = await api.get("/api/collections");
    if (!rows.length) {
      fill($("collection-list"), h("p", { class: "muted small", text: "No collections you may read yet." }));
      return;
    }
    fill(
      $("collection-list"),
      rows.map((c) =>
        h(
          "label",
          { class: "check" },
          h("input", { type: "checkbox", value: c.id, name: "collection" }),
          h("span", { text: c.name }),
          h("span", { class: "muted small", text: ` (${c.document_count ?? 0})` }),
        ),
      ),
    );
  } catch (err) {
    fill($("collection-list"), h("p", { class: "error small", text: err.detail || err.message }));
  }
}

// --- start -------------------------------------------------------------------------------------------
async function main() {
  const me = await api.get("/api/me");
  renderUserBar($("userbar"), me, "ask");
  loadCollections();
  loadHistory();
  const form = $("ask-form");
  const q = $("question");
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const question = q.value.trim();
    if (!question || state.busy) return;
    state.busy = true;
    $("ask-submit").disabled = true;
    q.value = "";
    try {
      await ask(question);
    } finally {
      state.busy = false;
      $("ask-submit").disabled = false;
      q.focus();
    }
  });
  $("ask-submit").disabled = false; // disabled in the HTML until now: an early click would submit natively
  q.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
  $("new-chat").addEventListener("click", newConversation);
  $("source-close").addEventListener("click", closeSource);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !$("source-panel").hidden) closeSource();
  });
  q.focus();
}

main().catch((err) => {
  if (!(err instanceof ApiError && err.status === 401)) {
    document.body.prepend(h("p", { class: "error banner", role: "alert", text: `Could not load the page: ${err.detail || err.message}` }));
  }
});
