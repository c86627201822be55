// The gallery: tiles play on hover; the keyboard reviews (arrows move, 1–5 rate, 0 clears,
// f favourite, space plays, c picks for comparison, Enter opens); picked runs are compared.
import { api, attempt, toast } from "./common.js";

const grid = document.querySelector(".gallery");
const tiles = () => [...grid.querySelectorAll(".tile")];
let cursor = 0;

/** The tile's video, made the first time it is wanted (until then the tile is its poster). */
function video(tile) {
  let v = tile.querySelector("video");
  if (!v) {
    v = document.createElement("video");
    Object.assign(v, { muted: true, loop: true, playsInline: true, preload: "auto", src: tile.dataset.src });
    v.poster = tile.querySelector("img.poster")?.src ?? "";
    tile.querySelector("img.poster")?.replaceWith(v);
  }
  return v;
}

function focusTile(i, scroll = true) {
  const all = tiles();
  if (!all.length) return;
  cursor = Math.max(0, Math.min(i, all.length - 1));
  for (const [n, t] of all.entries()) t.classList.toggle("cursor", n === cursor);
  if (scroll) all[cursor].scrollIntoView({ block: "nearest" });
}

function columns() {
  const all = tiles();
  if (all.length < 2) return 1;
  const top = all[0].offsetTop;
  const n = all.findIndex((t) => t.offsetTop !== top);
  return n < 0 ? all.length : n;
}

function showRating(tile, run) {
  tile.dataset.rating = run.rating ?? 0;
  tile.querySelector(".rating").textContent = run.rating ? "★".repeat(run.rating) : "";
  tile.querySelector(".favmark").textContent = run.favourite ? "♥" : "";
  tile.dataset.favourite = String(run.favourite);
}

async function rate(tile, body) {
  await attempt(async () => {
    const run = await api("PUT", `/api/v1/runs/${encodeURIComponent(tile.dataset.run)}/rating`, body);
    showRating(tile, run);
  });
}

function updateCompare() {
  const ids = tiles().filter((t) => t.classList.contains("picked")).map((t) => t.dataset.run);
  const link = document.querySelector("#compare");
  link.textContent = `Compare (${ids.length})`;
  link.toggleAttribute("disabled", ids.length < 2);
  link.dataset.ids = ids.join(",");
}

grid.addEventListener("mouseover", (ev) => {
  const tile = ev.target.closest(".tile");
  const v = tile && video(tile);
  if (v && v.paused) v.play().catch(() => {});
});
grid.addEventListener("mouseout", (ev) => {
  const tile = ev.target.closest(".tile");
  if (tile && !tile.contains(ev.relatedTarget)) tile.querySelector("video")?.pause();
});
grid.addEventListener("click", (ev) => {
  const tile = ev.target.closest(".tile");
  if (!tile) return;
  focusTile(tiles().indexOf(tile));
  if (ev.target.closest("input.pick")) {
    tile.classList.toggle("picked", ev.target.checked);
    updateCompare();
  }
});

document.querySelector("#compare").addEventListener("click", (ev) => {
  const ids = ev.currentTarget.dataset.ids;
  if (ids && ids.includes(",")) location.href = `/compare?runs=${encodeURIComponent(ids)}`;
  else toast("pick two or more outputs (c, or their boxes) to compare", true);
});

document.addEventListener("keydown", (ev) => {
  if (ev.target.closest("input, select, textarea") || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const all = tiles();
  const tile = all[cursor];
  if (!tile) return;
  const key = ev.key;
  if (key === "ArrowRight") focusTile(cursor + 1);
  else if (key === "ArrowLeft") focusTile(cursor - 1);
  else if (key === "ArrowDown") focusTile(cursor + columns());
  else if (key === "ArrowUp") focusTile(cursor - columns());
  else if (/^[0-5]$/.test(key)) rate(tile, { rating: Number(key) });
  else if (key === "f") rate(tile, { favourite: tile.dataset.favourite !== "true" });
  else if (key === " ") {
    const v = video(tile);
    if (v) v.paused ? v.play().catch(() => {}) : v.pause();
  } else if (key === "c") {
    const box = tile.querySelector("input.pick");
    box.checked = !box.checked;
    tile.classList.toggle("picked", box.checked);
    updateCompare();
  } else if (key === "Enter") location.href = `/runs/${tile.dataset.run}`;
  else return;
  ev.preventDefault();
});

focusTile(0, false);
updateCompare();
