// streamrec live dashboard: polls the service it is served by (no external scripts).
"use strict";
const REASONS = {
  ann: "close to the user's recent items in the base model's space",
  covisit: "often together with items the user acted on",
  trending: "popular right now",
  cold_start: "popular (little or no history yet)",
  explore: "a new item being explored",
  mf: "online matrix factorisation",
  session_knn: "in the sessions of similar users",
  recent: "the user's own recent item",
  content: "similar in content to an item the user acted on",
};
// the list's reason (covisit:<item>, content:<item>, session:<n>) in words, else the source's
function why(it) {
  const [kind, arg] = (it.reason || it.source || "").split(/:(.*)/s);
  if (arg && kind === "covisit") return "often together with " + arg;
  if (arg && kind === "content") return "similar in content to " + arg;
  if (arg && kind === "session") return "in " + arg + " similar sessions";
  return REASONS[kind] || REASONS[it.source] || "";
}
const $ = (id) => document.getElementById(id);
const rates = { events: [], lists: [] };
let currentUser = new URLSearchParams(location.search).get("user") || "";
let lastTrigger = null;

function fmt(x, digits = 1) { return x === null || x === undefined ? "–" : Number(x).toFixed(digits); }
function text(el, value) { el.textContent = value; }
function cell(row, value, cls) { const td = row.insertCell(); td.textContent = value; if (cls) td.className = cls; }

function spark(canvas, values) {
  const ctx = canvas.getContext("2d"), w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  if (values.length < 2) return;
  const top = Math.max(1, ...values);
  ctx.strokeStyle = "#4fb3ff"; ctx.lineWidth = 2; ctx.beginPath();
  values.forEach((v, i) => {
    const x = (i / (values.length - 1)) * (w - 2) + 1, y = h - 2 - (v / top) * (h - 4);
    i ? ctx.lineTo(x, y) : ctx.moveTo(x, y);
  });
  ctx.stroke();
}

async function getJSON(url, options) {
  const r = await fetch(url, options);
  const body = await r.json();
  if (!r.ok) throw new Error((body.errors || [r.status]).join("; "));
  return body;
}

async function pollStats() {
  try {
    const s = await getJSON("/v1/stats");
    const st = $("status");
    st.textContent = s.ready ? "ready" : "restoring"; st.className = "pill " + (s.ready ? "ok" : "bad");
    text($("events-rate"), fmt(s.events_per_s)); text($("lists-rate"), fmt(s.lists_per_s));
    for (const k of ["events", "lists"]) {
      rates[k].push(s[k + "_per_s"]); if (rates[k].length > 60) rates[k].shift();
      spark($("spark-" + k), rates[k]);
    }
    text($("lat-p50"), fmt(s.latency_ms.p50, 0)); text($("lat-p99"), fmt(s.latency_ms.p99, 0));
    text($("lat-n"), s.latency_ms.n + " lists measured");
    text($("hit-rate"), s.hit_rate_at_10.rate === null ? "–" : (100 * s.hit_rate_at_10.rate).toFixed(1) + "%");
    text($("hit-n"), s.hit_rate_at_10.n + " events tested");
    text($("dlq-total"), s.dead_letters.total === null ? "–" : s.dead_letters.total);
    text($("dlq-types"), Object.entries(s.dead_letters.recent_by_type).map(([k, v]) => k + ": " + v).join(", "));
    text($("users"), s.users);
    text($("evictions"), "evicted " + (s.evicted_lru + s.evicted_ttl) + " · ingested " + s.ingested);
    text($("model-version"), s.model.version || "none");
    text($("model-age"), s.model.age_s === null ? "" : "age " + fmt(s.model.age_s / 60) + " min");
    const lag = $("lag").tBodies[0]; lag.innerHTML = "";
    if (s.lag === null) { const r = lag.insertRow(); cell(r, "unknown"); cell(r, ""); }
    else for (const [p, v] of Object.entries(s.lag)) { const r = lag.insertRow(); cell(r, p); cell(r, v); }
    const tr = await getJSON("/v1/trending?n=8");
    const ol = $("trending"); ol.innerHTML = "";
    for (const it of tr.items) { const li = document.createElement("li"); li.textContent = it.item_id; ol.appendChild(li); }
  } catch (e) {
    const st = $("status"); st.textContent = "no answer"; st.className = "pill bad";
  }
}

async function pollUser() {
  if (!currentUser) return;
  $("user-view").hidden = false;
  const u = encodeURIComponent(currentUser);
  try {
    const [ev, rec] = await Promise.all([getJSON("/v1/users/" + u + "/events"),
                                         getJSON("/v1/users/" + u + "/recommendations?n=20")]);
    const evBody = $("events").tBodies[0]; evBody.innerHTML = "";
    for (const e of ev.events) {
      const r = evBody.insertRow();
      cell(r, new Date(e.timestamp).toLocaleTimeString()); cell(r, e.event_type); cell(r, e.item_id); cell(r, e.via);
    }
    const kind = $("list-kind"); kind.textContent = rec.kind; kind.className = "pill " + (rec.kind === "personal" ? "ok" : "");
    const lin = rec.lineage;
    const trigger = lin ? lin.trigger_event_id + "@" + lin.trigger_offset : null;
    $("list").dataset.trigger = trigger || "";
    text($("list-lineage"), lin ? "after event " + lin.trigger_event_id + " (partition " + lin.trigger_partition +
         ", offset " + lin.trigger_offset + ") · emitted " + new Date(lin.emitted_at).toLocaleTimeString() +
         " · model " + (lin.model_version || "none") : "no list for this user yet: " + rec.kind + " items");
    const body = $("list").tBodies[0]; body.innerHTML = "";
    rec.items.forEach((it, i) => {
      const r = body.insertRow(); r.dataset.item = it.item_id;
      if (trigger !== lastTrigger && lastTrigger !== null) r.className = "fresh";
      cell(r, i + 1); cell(r, it.item_id); cell(r, fmt(it.score, 3)); cell(r, it.source, "src");
      cell(r, why(it), "dim");
    });
    lastTrigger = trigger;
  } catch (e) {
    text($("list-lineage"), "error: " + e.message);
  }
}

$("search").addEventListener("submit", (ev) => {
  ev.preventDefault(); currentUser = $("user").value.trim(); lastTrigger = null;
  window.history.replaceState(null, "", "?user=" + encodeURIComponent(currentUser));
  pollUser();
});
$("post").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const item = $("post-item").value.trim(); if (!item || !currentUser) return;
  try {
    const r = await getJSON("/v1/events", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ user_id: currentUser, item_id: item, event_type: $("post-type").value }) });
    text($("post-result"), "accepted " + r.events[0].event_id + " (partition " + r.events[0].partition + ", offset " +
         r.events[0].offset + ")");
  } catch (e) { text($("post-result"), "refused: " + e.message); }
});
$("user").value = currentUser;
pollStats(); pollUser();
setInterval(pollStats, 1000); setInterval(pollUser, 1000);
