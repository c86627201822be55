// Authoring: sliders write the weights (and show their normalised shares), every change is
// checked by a dry run (the run count, Cosmos's own validation messages, the spec and the
// command), and Queue submits exactly what was previewed.
import { api } from "./common.js";

const form = document.querySelector("#author");
const problems = document.querySelector("#problems");
const count = document.querySelector("#count");
const sliders = [...form.querySelectorAll(".weights input[type=range]")];
const typed = form.elements.weights;

function fromSliders() {
  const pairs = sliders
    .filter((s) => Number(s.value) > 0)
    .map((s) => `${s.name.slice(2)}=${Number(s.value).toFixed(2).replace(/0$/, "")}`);
  typed.value = pairs.join(",");
  showSum();
}

function showSum() {
  const sum = sliders.reduce((a, s) => a + Number(s.value), 0);
  for (const s of sliders) {
    const share = sum > 0 ? Number(s.value) / sum : 0;
    s.nextElementSibling.textContent = `${Number(s.value).toFixed(2)} (${Math.round(share * 100)} %)`;
  }
  document.querySelector("#weights-sum").textContent =
    sum > 0 ? `sum ${sum.toFixed(2)}; shares after normalising to 1 shown beside each` : "no weights: Cosmos's defaults apply";
}

/** The form as one entry of `POST /api/v1/runs`. */
function entry() {
  const f = form.elements;
  const e = {};
  if (f.subject) {
    e.prompt = f.subject.value;
  } else {
    e.prompt = f.text.value.trim();
    if (f.negative.value.trim()) e.negative = f.negative.value.trim();
    if (f.name.value.trim()) e.name = f.name.value.trim();
    const set = form.querySelector("input[name=inputs]:checked");
    if (set) e.inputs = set.value;
  }
  if (typed.value.trim()) e.weights = typed.value.trim();
  const seeds = f.seeds.value.trim();
  if (seeds.includes("..")) e.seeds = seeds;
  else if (seeds.includes(",")) e.seed = seeds.split(",").map((x) => Number(x.trim()));
  else if (seeds) e.seed = Number(seeds);
  for (const k of ["steps", "fps", "gpus", "priority"]) if (f[k].value !== "") e[k] = Number(f[k].value);
  for (const k of ["guidance", "sigma_max"]) if (f[k].value !== "") e[k] = Number(f[k].value);
  e.blur_strength = f.blur_strength.value;
  e.canny_threshold = f.canny_threshold.value;
  if (f.target.value) e.target = f.target.value;
  return e;
}

function showProblem(message) {
  problems.replaceChildren();
  for (const line of message.split("\n").map((l) => l.replace(/^\s*-\s*/, "")).filter(Boolean)) {
    const li = document.createElement("li");
    li.textContent = line;
    problems.append(li);
  }
}

let latest = 0;
async function preview() {
  const mine = ++latest;
  const e = entry();
  if (!e.prompt) {
    showProblem("write the prompt");
    count.textContent = "";
    document.querySelector("#plan").hidden = true;
    return false;
  }
  try {
    const answer = await api("POST", "/api/v1/runs", { runs: [e], dry_run: true });
    if (mine !== latest) return false;
    problems.replaceChildren();
    const n = answer.plans.length;
    count.textContent = `${n} run${n === 1 ? "" : "s"} will be queued`;
    const first = answer.plans[0];
    document.querySelector("#spec").textContent = JSON.stringify(first?.spec ?? {}, null, 2);
    document.querySelector("#command").textContent = (first?.container_command ?? []).join(" ");
    const notes = document.querySelector("#notes");
    notes.replaceChildren(...answer.notes.map((t) => Object.assign(document.createElement("li"), { textContent: t })));
    document.querySelector("#plan").hidden = false;
    return true;
  } catch (err) {
    if (mine !== latest) return false;
    showProblem(err.message);
    count.textContent = "";
    document.querySelector("#plan").hidden = true;
    return false;
  }
}

let timer;
function soon() {
  clearTimeout(timer);
  timer = setTimeout(preview, 300);
}

for (const s of sliders) s.addEventListener("input", () => { fromSliders(); soon(); });
form.addEventListener("input", (ev) => {
  if (ev.target.type !== "range") soon();
  if (ev.target === typed) showSum();
});
document.querySelector("#preview").addEventListener("click", preview);
form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  if (!(await preview())) return;
  try {
    const answer = await api("POST", "/api/v1/runs", { runs: [entry()] });
    const n = answer.runs.length;
    count.textContent = `queued ${n} run${n === 1 ? "" : "s"}`;
    location.href = n === 1 ? `/runs/${answer.runs[0].id}` : "/";
  } catch (err) {
    showProblem(err.message);
  }
});

showSum();
