// The runs table: rows change as events arrive, new runs appear at the top, and runs can be
// cancelled, retried or re-prioritised one at a time or many at once.
import { api, attempt, clipOf, eta, follow, toast, TERMINAL } from "./common.js";

const table = document.querySelector("#runs");
const body = table.querySelector("tbody");
const filtered = table.dataset.filtered === "true";

const rowOf = (id) => body.querySelector(`tr[data-run="${CSS.escape(id)}"]`);

/** Replaces (or adds at the top) a run's row with the server's rendering of it. */
async function refreshRow(id, addIfMissing) {
  const r = await fetch(`/ui/rows/${encodeURIComponent(id)}`);
  if (!r.ok) return;
  const tpl = document.createElement("template");
  tpl.innerHTML = (await r.text()).trim();
  const fresh = tpl.content.firstElementChild;
  const old = rowOf(id);
  if (old) {
    fresh.querySelector("input.pick").checked = old.querySelector("input.pick").checked;
    old.replaceWith(fresh);
  } else if (addIfMissing) {
    body.prepend(fresh);
    document.querySelector("#empty")?.remove();
  }
  applySearch();
}

function onEvent(e) {
  const row = rowOf(e.run_id);
  if (!row) {
    if (!filtered && e.stage === "queued") refreshRow(e.run_id, true);
    return;
  }
  const changed = row.dataset.status !== e.stage;
  row.dataset.status = e.stage;
  const badge = row.querySelector(".c-status .status");
  badge.className = `status ${e.stage}`;
  badge.textContent = e.stage;
  row.querySelector(".c-stage").textContent = e.message;
  const clip = clipOf(e.message);
  if (clip) row.querySelector(".c-clip").textContent = clip;
  if (e.progress != null) {
    row.dataset.progress = e.progress;
    row.querySelector(".c-progress progress").value = e.progress;
  }
  if (e.stage === "staging" && !row.dataset.started) row.dataset.started = e.at;
  row.querySelector(".c-eta").textContent = eta(row.dataset.started, Number(row.dataset.progress));
  // A new status can change the target, the GPUs and what can be done to it.
  if (changed || TERMINAL.has(e.stage)) refreshRow(e.run_id, false);
}

function applySearch() {
  const q = document.querySelector("#quick").value.trim().toLowerCase();
  for (const row of body.rows) {
    row.hidden = q !== "" && !row.textContent.toLowerCase().includes(q);
  }
}

function picked() {
  return [...body.querySelectorAll("input.pick:checked")].map((i) => i.closest("tr").dataset.run);
}

async function each(ids, verb) {
  let done = 0;
  for (const id of ids) {
    try {
      await api("POST", `/api/v1/runs/${encodeURIComponent(id)}/${verb}`);
      done += 1;
    } catch (e) {
      toast(`${id}: ${e.message}`, true);
    }
  }
  if (done) toast(`${verb === "cancel" ? "cancelled" : "retried"} ${done} run(s)`);
  for (const id of ids) refreshRow(id, false);
}

table.addEventListener("click", (ev) => {
  const button = ev.target.closest("button[data-act]");
  if (!button) return;
  const id = button.closest("tr").dataset.run;
  each([id], button.dataset.act);
});

table.addEventListener("change", (ev) => {
  const input = ev.target.closest("input.priority");
  if (input) {
    const id = input.closest("tr").dataset.run;
    attempt(async () => {
      await api("PUT", `/api/v1/runs/${encodeURIComponent(id)}/priority`, { priority: Number(input.value) });
      toast(`priority of ${id} is ${input.value}`);
    });
    return;
  }
  if (ev.target.id === "pick-all") {
    for (const i of body.querySelectorAll("tr:not([hidden]) input.pick")) i.checked = ev.target.checked;
  }
});

document.querySelector("#quick").addEventListener("input", applySearch);
document.querySelector("#cancel-picked").addEventListener("click", () => each(picked(), "cancel"));
document.querySelector("#retry-picked").addEventListener("click", () => each(picked(), "retry"));

// Running rows' time left moves on between events.
setInterval(() => {
  for (const row of body.rows) {
    if (row.dataset.started && !TERMINAL.has(row.dataset.status)) {
      row.querySelector(".c-eta").textContent = eta(row.dataset.started, Number(row.dataset.progress));
    }
  }
}, 1000);

follow(Number(table.dataset.seq), onEvent);
