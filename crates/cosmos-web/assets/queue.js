// The queue page: pause and resume (all, or one target), and the page kept current as
// events arrive (redrawn from the server at most once a second).
import { api, attempt, follow, toast } from "./common.js";

document.addEventListener("click", (ev) => {
  const b = ev.target.closest("button[data-queue]");
  if (!b) return;
  const verb = b.dataset.queue;
  const target = b.dataset.target;
  attempt(async () => {
    await api("POST", `/api/v1/queue/${verb}`, target ? { target } : {});
    toast(`${verb === "pause" ? "paused" : "resumed"} ${target ?? "the queue"}`);
    await redraw();
  });
});

let pending = false;
async function redraw() {
  const r = await fetch(location.pathname);
  if (!r.ok) return;
  const doc = new DOMParser().parseFromString(await r.text(), "text/html");
  document.querySelector("main").replaceWith(doc.querySelector("main"));
}

const seq = Number(document.querySelector("main [data-seq]")?.dataset.seq ?? 0);
follow(seq, () => {
  if (pending) return;
  pending = true;
  setTimeout(() => { pending = false; redraw(); }, 1000);
});
