// Shared by every page: calling the API, telling the user, and following live events.

/** Calls the API; resolves to the JSON answer, or throws an Error with the server's message. */
export async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  const text = await r.text();
  const data = text ? JSON.parse(text) : null;
  if (!r.ok) {
    const e = new Error(data?.error?.message ?? `${r.status} ${r.statusText}`);
    e.code = data?.error?.code;
    e.status = r.status;
    throw e;
  }
  return data;
}

let toastTimer;
/** A short message in the corner; `bad` marks an error. */
export function toast(message, bad = false) {
  let el = document.querySelector(".toast");
  if (!el) {
    el = document.createElement("div");
    el.className = "toast";
    el.setAttribute("role", "status");
    document.body.append(el);
  }
  el.textContent = message;
  el.classList.toggle("bad", bad);
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, bad ? 8000 : 3000);
}

/** Runs `work`, showing its error (if any) as a toast. */
export async function attempt(work) {
  try {
    return await work();
  } catch (e) {
    toast(e.message, true);
    return undefined;
  }
}

/**
 * Follows `/api/v1/events` from `since`: calls `onEvent(event, seq)` for each event in order,
 * reconnecting after a drop or a resync with nothing lost or repeated. The header's dot shows
 * whether the page is live.
 */
export function follow(since, onEvent, onSnapshot) {
  const dot = document.querySelector(".live");
  let seq = since;
  let delay = 500;
  if (dot) dot.textContent = "connecting";
  const open = () => {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/api/v1/events?since=${seq}`);
    ws.onopen = () => {
      delay = 500;
      dot?.classList.add("on");
      dot?.classList.remove("off");
      if (dot) dot.textContent = "live";
    };
    ws.onmessage = (m) => {
      const msg = JSON.parse(m.data);
      if (msg.type === "event") {
        if (msg.seq > seq) {
          seq = msg.seq;
          onEvent(msg.event, msg.seq);
        }
      } else if (msg.type === "snapshot") {
        onSnapshot?.(msg.status);
      } else if (msg.type === "resync") {
        seq = Math.max(seq, msg.seq);
      }
    };
    ws.onclose = () => {
      dot?.classList.remove("on");
      dot?.classList.add("off");
      if (dot) dot.textContent = "reconnecting";
      setTimeout(open, delay);
      delay = Math.min(delay * 2, 10000);
    };
  };
  open();
}

export const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

/** "clip 2/4" from an event's message, if it names one. */
export function clipOf(message) {
  const m = /clip (\d+)\/(\d+)/.exec(message ?? "");
  return m ? `${m[1]}/${m[2]}` : "";
}

/** A duration in seconds as "1 h 02 min", "3 min 05 s" or "12 s". */
export function duration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "";
  const s = Math.round(seconds);
  if (s >= 3600) return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
  if (s >= 60) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  return `${s} s`;
}

/** Time left from progress so far: elapsed × (1 − p) / p. */
export function eta(startedAt, progress) {
  if (!startedAt || !(progress > 0.02 && progress < 1)) return "";
  const elapsed = (Date.now() - Date.parse(startedAt)) / 1000;
  return duration((elapsed * (1 - progress)) / progress);
}
