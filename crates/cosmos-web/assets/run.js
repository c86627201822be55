// A run's page: rating and favourite, cancel/retry/upscale/priority, the live timeline and the log
// tail (following while the run is under way, searchable), and the lockstep player.
import { api, attempt, follow, toast, TERMINAL } from "./common.js";
import { startAll } from "./lockstep.js";

const page = document.querySelector("#run");
const id = page.dataset.run;
const path = `/api/v1/runs/${encodeURIComponent(id)}`;

startAll();

// Rating (1–5; the same star again clears it) and favourite.
const stars = document.querySelector(".stars");
function showRating(run) {
  for (const b of stars.querySelectorAll("button")) {
    b.classList.toggle("on", run.rating != null && Number(b.dataset.value) <= run.rating);
  }
  stars.dataset.rating = run.rating ?? 0;
  const fav = document.querySelector("button.fav");
  fav.classList.toggle("on", run.favourite);
  fav.setAttribute("aria-pressed", String(run.favourite));
}
stars.addEventListener("click", (ev) => {
  const b = ev.target.closest("button");
  if (!b) return;
  const value = Number(b.dataset.value);
  const rating = Number(stars.dataset.rating) === value ? 0 : value;
  attempt(async () => showRating(await api("PUT", `${path}/rating`, { rating })));
});
document.querySelector("button.fav").addEventListener("click", (ev) => {
  const favourite = ev.currentTarget.getAttribute("aria-pressed") !== "true";
  attempt(async () => showRating(await api("PUT", `${path}/rating`, { favourite })));
});

for (const b of document.querySelectorAll("button[data-act]")) {
  b.addEventListener("click", () => attempt(async () => {
    const act = b.dataset.act;
    const answer = await api("POST", `${path}/${act}`, act === "upscale" ? {} : undefined);
    if (act === "retry" || act === "upscale") location.href = `/runs/${answer.id}`;
    else toast("cancel requested");
  }));
}
document.querySelector("input.priority")?.addEventListener("change", (ev) => attempt(async () => {
  await api("PUT", `${path}/priority`, { priority: Number(ev.target.value) });
  toast(`priority ${ev.target.value}`);
}));

// The log: the tail now, then what is appended, from where the last read ended.
const log = document.querySelector("#log");
const search = document.querySelector("#log-search");
let logText = "";
let logEnd = 0;
function renderLog() {
  const q = search.value.trim();
  const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
  if (!q) {
    log.textContent = logText || "(no log yet)";
  } else {
    log.replaceChildren();
    for (const line of logText.split("\n")) {
      const at = line.toLowerCase().indexOf(q.toLowerCase());
      if (at < 0) continue;
      const mark = document.createElement("mark");
      mark.textContent = line.slice(at, at + q.length);
      log.append(line.slice(0, at), mark, line.slice(at + q.length), "\n");
    }
  }
  if (atBottom || !q) log.scrollTop = log.scrollHeight;
}
async function readLog(first) {
  const piece = first
    ? await api("GET", `${path}/log?tail=500`)
    : await api("GET", `${path}/log?offset=${logEnd}&limit=262144`);
  if (first) logText = piece.text;
  else logText += piece.text;
  logEnd = piece.end;
  if (piece.text || first) renderLog();
}
search.addEventListener("input", renderLog);
attempt(() => readLog(true));
let following = !TERMINAL.has(page.dataset.status);
setInterval(() => { if (following) attempt(() => readLog(false)); }, 1500);

// The timeline grows as the run's events arrive.
const timeline = document.querySelector("ol.timeline");
follow(Number(page.dataset.seq), (e) => {
  if (e.run_id !== id) return;
  const li = document.createElement("li");
  const at = document.createElement("span");
  at.className = "mono muted";
  at.textContent = new Date(e.at).toLocaleTimeString();
  const stage = document.createElement("span");
  stage.className = `status ${e.stage}`;
  stage.textContent = e.stage;
  const message = document.createElement("span");
  message.textContent = e.progress != null ? `${e.message} (${Math.round(e.progress * 100)} %)` : e.message;
  li.append(at, stage, message);
  timeline.append(li);
  timeline.scrollTop = timeline.scrollHeight;
  const badge = document.querySelector("h1 .status");
  badge.className = `status ${e.stage}`;
  badge.textContent = e.stage;
  if (TERMINAL.has(e.stage)) {
    following = false;
    attempt(() => readLog(false));
    // Outputs, the reason and the actions change with the end: show the page as it is now.
    setTimeout(() => location.reload(), 800);
  }
});
