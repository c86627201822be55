// Plays a group of videos as one: the first is the leader; the others follow its play, pause,
// rate and every seek, and are pulled back whenever they drift by more than half a frame.
// One scrubber, one play button and frame steps drive them all.

export class Lockstep {
  /** `root`: an element holding the <video>s and a `.controls` bar; `fps`: the videos' rate. */
  constructor(root, fps) {
    this.root = root;
    this.videos = [...root.querySelectorAll("video")];
    this.lead = this.videos[0];
    this.fps = fps > 0 ? fps : 24;
    this.scrub = root.querySelector("input.scrub");
    this.play = root.querySelector("button.play");
    this.time = root.querySelector(".time");
    this.dragging = false;
    for (const v of this.videos) {
      v.muted = true;
      v.playsInline = true;
      v.preload = "auto";
    }
    this.lead.addEventListener("loadedmetadata", () => this.render());
    this.lead.addEventListener("play", () => this.all((v) => v !== this.lead && v.play().catch(() => {})));
    this.lead.addEventListener("pause", () => {
      this.all((v) => v !== this.lead && v.pause());
      this.align(true);
    });
    this.lead.addEventListener("ratechange", () => this.all((v) => { v.playbackRate = this.lead.playbackRate; }));
    this.lead.addEventListener("seeked", () => this.align(true));
    this.lead.addEventListener("ended", () => this.all((v) => v.pause()));
    this.play?.addEventListener("click", () => this.toggle());
    this.scrub?.addEventListener("input", () => {
      this.dragging = true;
      this.seek(Number(this.scrub.value) * (this.lead.duration || 0));
    });
    this.scrub?.addEventListener("change", () => { this.dragging = false; });
    root.querySelector("button.back")?.addEventListener("click", () => this.step(-1));
    root.querySelector("button.fwd")?.addEventListener("click", () => this.step(1));
    const tick = () => {
      if (!this.lead.paused) this.align(false);
      this.render();
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  }

  all(f) {
    for (const v of this.videos) f(v);
  }

  toggle() {
    if (this.lead.paused) this.lead.play().catch(() => {});
    else this.lead.pause();
  }

  /** Every video to `t` seconds (clamped to each one's length). */
  seek(t) {
    this.all((v) => {
      const end = Number.isFinite(v.duration) ? v.duration : t;
      v.currentTime = Math.max(0, Math.min(t, end));
    });
  }

  /** One frame on or back, paused. */
  step(frames) {
    this.lead.pause();
    const frame = 1 / this.fps;
    // Land mid-frame so rounding never shows the neighbouring frame.
    const index = Math.round(this.lead.currentTime * this.fps) + frames;
    this.seek(Math.max(0, index * frame + frame / 2));
  }

  /** Followers to the leader's time: always when `hard`, else past half a frame of drift. */
  align(hard) {
    const t = this.lead.currentTime;
    const slack = hard ? 0.001 : 0.5 / this.fps;
    for (const v of this.videos) {
      if (v === this.lead || !Number.isFinite(v.duration)) continue;
      const want = Math.min(t, v.duration);
      if (Math.abs(v.currentTime - want) > slack) v.currentTime = want;
      if (!this.lead.paused && v.paused && want < v.duration) v.play().catch(() => {});
    }
  }

  render() {
    const d = this.lead.duration;
    const t = this.lead.currentTime;
    if (this.scrub && !this.dragging && Number.isFinite(d) && d > 0) this.scrub.value = t / d;
    if (this.play) this.play.textContent = this.lead.paused ? "▶" : "❚❚";
    if (this.time) {
      const frame = Math.floor(t * this.fps + 1e-6);
      this.time.textContent = `${t.toFixed(2)} s · frame ${frame}`;
    }
  }
}

/** Plays every `.lockstep` group on the page as one. */
export function startAll() {
  for (const root of document.querySelectorAll(".lockstep")) {
    new Lockstep(root, Number(root.dataset.fps));
  }
}
