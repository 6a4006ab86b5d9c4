// Keeping a <video> on the room's clock (docs/architecture.md, "A playback change, end to end").
//
// Clock (docs/web.md, "The clock"): every ping carries our send time, the pong the server's time
// (whole ms). A pong proves the server's clock read serverTime at some moment between our send
// and our receipt, so the offset (server - local) lies in [serverTime - received, serverTime + 1
// - sent] whatever the network did. Every sample of the last CLOCK.windowMs gives such an
// interval, widened by the drift two clocks may have had since (CLOCK.driftPpm); the offset is
// the middle of their intersection. The lowest upward and the lowest downward delay bound it
// from each side, so jitter and spikes only make samples count less, and a route change keeps
// the old samples valid. An empty intersection (the server's clock stepped, another node's clock)
// drops the oldest samples until the rest agree.
// Its error: the intersection's half-width is a hard bound, but it includes the path's fixed
// latency, which no clock sync can tell from an offset. With symmetric paths the middle is much
// closer: `error` estimates how close, from how well the best samples agree (the spacing of the
// best bounds of each direction, half the spread of the lowest-round-trip samples' own
// estimates, a share of the hard bound) plus the server's 1 ms, and stays at the hard bound until
// CLOCK.trustAfter samples (the connect's burst). tests/test_browser_clock.py checks it against
// generated ping series with a known offset (jitter, spikes, a route change).

// Room position: the state's position is where the room was at its server_time, so the room is
// now at position + (server now - server_time) * rate while playing.
//
// Drift (player - room), in bands (BANDS; docs/web.md says why these):
//   |drift| < 12 ms          leave it: two viewers inside it are at most 24 ms apart, under a
//                            frame at 30 fps; or less than the clock's error, whichever is more
//                            (the drift may be the clock's own);
//   12 ms .. 400 ms          nudge the playback rate, proportional to the drift
//                            (drift / 0.5 s, at most ±10 %; 2.4 % at 12 ms), until |drift| < 4 ms:
//                            no jump, no stall, audio keeps its pitch (the browser time-stretches);
//   >= 400 ms (+ the clock's error)  seek, aiming ahead by the time seeks take here (learned), since a
//                            rate nudge would need seconds. A viewer who keeps stalling is not
//                            seeked more than once per cool-down (grows while seeks keep failing).
// A buffering viewer waits (no chasing while the element is starved) and catches up when it
// plays again: its stall never changes the room's state, so it never drags the others.

export const BANDS = Object.freeze({
  ignore: 0.012, settle: 0.004, seek: 0.4, maxNudge: 0.1, tau: 0.5,
});
export const CLOCK = Object.freeze({
  windowMs: 300000, keep: 64, driftPpm: 100, trustAfter: 9, best: 6, gapFactor: 3, spreadShare: 0.75,
  widthShare: 0.05, stampMs: 1,
});
const TICK_MS = 100;
const START_SETTLE_MS = 1000;

export const localNow = () => performance.timeOrigin + performance.now();

export class Clock {
  constructor(options = {}) {
    this.options = { ...CLOCK, ...options };
    this.samples = [];
    this.offset = 0;
    this.error = Infinity; // ms: how far `offset` may be from the truth (see above)
    this.rtt = null;
  }

  // A first guess from any server message (its latency unknown) until a real sample exists.
  coarse(serverTime) {
    if (!this.samples.length && Number.isFinite(serverTime)) this.offset = serverTime - localNow();
  }

  sample(sentAt, receivedAt, serverTime) {
    const rtt = receivedAt - sentAt;
    if (!Number.isFinite(rtt) || !Number.isFinite(serverTime) || rtt < 0 || rtt > 30000) return;
    const o = this.options;
    this.samples.push({
      at: receivedAt, rtt, lo: serverTime - receivedAt, hi: serverTime + o.stampMs - sentAt,
      own: serverTime + o.stampMs / 2 - (sentAt + receivedAt) / 2,
    });
    while (this.samples.length > o.keep || receivedAt - this.samples[0].at > o.windowMs) this.samples.shift();
    this.solve(receivedAt);
  }

  // Each sample's interval at `now` (widened by the drift since): the lower bounds highest
  // first, the upper bounds lowest first. The intersection is [lo[0], hi[0]].
  bounds(now) {
    const widen = this.options.driftPpm * 1e-6;
    const lo = [], hi = [];
    for (const s of this.samples) {
      const w = (now - s.at) * widen;
      lo.push(s.lo - w);
      hi.push(s.hi + w);
    }
    return { lo: lo.sort((x, y) => y - x), hi: hi.sort((x, y) => x - y) };
  }

  solve(now) {
    let b = this.bounds(now);
    while (b.lo[0] > b.hi[0] && this.samples.length > 1) { // they disagree: forget the oldest
      this.samples.shift();
      b = this.bounds(now);
    }
    const o = this.options, hard = (b.hi[0] - b.lo[0]) / 2;
    this.offset = (b.lo[0] + b.hi[0]) / 2;
    this.rtt = Math.min(...this.samples.map((s) => s.rtt));
    if (this.samples.length < o.trustAfter) { this.error = hard; return; }
    // How far the best bound of each side may be from the path's own minimum: the spacing of
    // the best ones (the second and third best, halved, count too, so two lucky close samples
    // do not make it look tight).
    const gap = Math.max(b.lo[0] - b.lo[1], b.hi[1] - b.hi[0], (b.lo[0] - b.lo[2]) / 2, (b.hi[2] - b.hi[0]) / 2);
    const best = [...this.samples].sort((x, y) => x.rtt - y.rtt).slice(0, o.best);
    const spread = Math.max(...best.map((s) => Math.abs(s.own - this.offset)));
    this.error = Math.min(
      hard, Math.max((o.gapFactor * gap) / 2, o.spreadShare * spread, o.widthShare * hard) + o.stampMs,
    );
  }

  now() { return localNow() + this.offset; }
}

export function roomPosition(state, serverNow) {
  if (!state) return 0;
  if (!state.playing) return state.position;
  return Math.max(0, state.position + ((serverNow - state.server_time) / 1000) * state.rate);
}

// What to do about `drift` seconds (player minus room). `nudging`: a nudge is under way.
// `uncertainty` (seconds): the clock's error; a drift inside it may be the clock's, not the
// player's, so it is never chased, and no seek is made on a drift the clock cannot vouch for.
export function correction(drift, roomRate, nudging, bands = BANDS, uncertainty = 0) {
  const size = Math.abs(drift), u = Number.isFinite(uncertainty) ? Math.max(0, uncertainty) : bands.seek;
  if (size >= bands.seek + u) return { action: "seek", rate: roomRate, nudging: false };
  const ignore = Math.max(bands.ignore, u), settle = Math.max(bands.settle, u / 2);
  if (!(nudging ? size > settle : size > ignore)) return { action: "none", rate: roomRate, nudging: false };
  const k = Math.max(-bands.maxNudge, Math.min(bands.maxNudge, drift / bands.tau));
  return { action: "nudge", rate: roomRate * (1 - k), nudging: true };
}

// Follows the room's playback state with one media element.
export class Follower {
  constructor(video, clock, { onReady = () => {}, onAutoplayBlocked = () => {}, onStats = () => {} } = {}) {
    this.video = video;
    this.clock = clock;
    this.onReady = onReady;
    this.onAutoplayBlocked = onAutoplayBlocked;
    this.onStats = onStats;
    this.state = null;
    this.live = false;
    this.nudging = false;
    this.hard = true;          // a change to meet at once (new state, new movie, just joined)
    // How far ahead to aim a seek made while the room plays: what a seek (and the start of play)
    // costs here, learned from each one; a seek into data not yet loaded costs more.
    this.lead = { buffered: 0.05, unbuffered: 0.25 };
    this.lastSeek = -Infinity;
    this.cooldown = 1500;      // ms between corrective seeks (grows while seeks keep failing)
    this.pendingSeek = null;   // {at, kind} while a measured seek is under way
    this.starting = false;     // seeked to start playing: play once the element can
    this.startedAt = -Infinity; // when play was last started that way (START_SETTLE_MS)
    this.playPending = false;
    this.waiting = false;
    this.ready = true;
    this.readyTimer = 0;
    this.drift = null;
    const tick = () => this.tick();
    for (const name of ["loadedmetadata", "canplay", "playing", "seeked"]) video.addEventListener(name, tick);
    // Buffering: `waiting` while it should play; over when it plays again (`playing`), or, if
    // the room paused meanwhile, when the element has data again (`canplay` while paused).
    video.addEventListener("waiting", () => { this.waiting = true; this.setReadySoon(false); });
    video.addEventListener("playing", () => { this.waiting = false; this.setReadySoon(true); });
    for (const name of ["canplay", "canplaythrough"]) {
      video.addEventListener(name, () => { if (video.paused) { this.waiting = false; this.setReadySoon(true); } });
    }
    video.addEventListener("emptied", () => {
      this.waiting = false; this.nudging = false; this.hard = true; this.starting = false; this.pendingSeek = null;
    });
    this.timer = setInterval(tick, TICK_MS);
  }

  // Short stalls (a corrective seek) are not worth telling the room about.
  setReadySoon(ready) {
    clearTimeout(this.readyTimer);
    if (ready === this.ready) return;
    this.readyTimer = setTimeout(() => {
      if (this.ready !== ready) { this.ready = ready; this.onReady(ready); }
    }, ready ? 0 : 400);
  }

  // A new state from the server (hello, playback, sync). Older versions are ignored.
  setState(state) {
    if (this.state && state.version < this.state.version) return;
    const before = this.state;
    this.state = { ...state };
    const now = this.clock.now();
    if (!before || before.movie_id !== state.movie_id || before.playing !== state.playing
        || Math.abs(roomPosition(before, now) - roomPosition(state, now)) > BANDS.ignore) {
      // A change someone made: meet it at once rather than by nudging.
      this.hard = true;
      this.starting = false;
    }
    this.tick();
  }

  setLive(live) { this.live = live; }

  target() {
    const v = this.video;
    let position = roomPosition(this.state, this.clock.now());
    if (Number.isFinite(v.duration) && v.duration > 0) position = Math.min(position, v.duration);
    return position;
  }

  isBuffered(position) {
    const ranges = this.video.buffered;
    for (let i = 0; i < ranges.length; i += 1) {
      if (ranges.start(i) <= position && position + 0.5 <= ranges.end(i)) return true;
    }
    return false;
  }

  // Seek to where the room will be once the seek is done (while playing), or exactly (paused).
  seek(target, ahead) {
    const v = this.video;
    const kind = this.isBuffered(target) ? "buffered" : "unbuffered";
    let position = ahead ? target + this.lead[kind] * this.state.rate : target;
    if (Number.isFinite(v.duration) && v.duration > 0) position = Math.min(position, Math.max(0, v.duration - 0.05));
    v.currentTime = Math.max(0, position);
    this.lastSeek = performance.now();
    this.pendingSeek = ahead ? { at: this.lastSeek, kind } : null;
    this.nudging = false;
  }

  play() {
    const v = this.video;
    if (this.playPending || !v.paused) return;
    this.playPending = true;
    v.play().catch((err) => {
      if (err && err.name === "NotAllowedError" && !v.muted) {
        // No user gesture yet: start muted (allowed everywhere) and offer to unmute.
        v.muted = true;
        this.onAutoplayBlocked();
        return v.play();
      }
      return undefined;
    }).catch(() => {}).finally(() => { this.playPending = false; });
  }

  setRate(rate) {
    const v = this.video;
    if (Math.abs(v.playbackRate - rate) > 0.0005) v.playbackRate = rate;
  }

  tick() {
    const v = this.video, st = this.state;
    if (!st || !st.movie_id || v.readyState < 1 /* HAVE_METADATA */) return;
    if (this.live) {
      // A live stream has no shared position: follow play/pause, stay at the live edge.
      if (st.playing && v.paused) this.play();
      if (!st.playing && !v.paused) v.pause();
      return;
    }
    const target = this.target();
    if (!st.playing) {
      if (!v.paused) v.pause();
      this.setRate(st.rate);
      this.nudging = false;
      this.starting = false;
      if (!v.seeking && Math.abs(v.currentTime - target) > 0.02) this.seek(target, false);
      this.report(v.seeking ? null : v.currentTime - target);
      return;
    }
    if (v.seeking) return;
    const atEnd = Number.isFinite(v.duration) && target >= v.duration - 0.05;
    if (atEnd) { this.report(null); return; }
    if (v.paused) {
      // Starting (joined, resumed, new video): seek to where the room will be, wait until the
      // element has data there, then play; the first reading afterwards teaches the lead.
      this.setRate(st.rate);
      if (this.playPending) return;
      if (!this.starting && Math.abs(v.currentTime - target) > BANDS.ignore) {
        this.starting = true;
        this.seek(target, true);
        return;
      }
      if (v.readyState >= 3 /* HAVE_FUTURE_DATA */) {
        this.starting = false;
        this.startedAt = performance.now();
        this.play();
      }
      return;
    }
    const drift = v.currentTime - target;
    if (this.pendingSeek) {
      // First reading after a seek made while playing: learn what seeks cost here.
      const { kind, at } = this.pendingSeek;
      if (!this.waiting && performance.now() - at < 5000) {
        this.lead[kind] = Math.min(3, Math.max(0, this.lead[kind] - (0.5 * drift) / st.rate));
      }
      this.pendingSeek = null;
    }
    if (this.waiting && v.readyState < 3) { this.report(drift); return; }
    const c = correction(drift, st.rate, this.nudging, BANDS, this.clock.error / 1000);
    // After a change someone made, anything over 100 ms is met with a seek too: the picture
    // jumped anyway, and a nudge would take a second or more. The same for the first second of
    // play after a start (joined, resumed, new video): a slow device starts late and stutters, a
    // late joiner 200 ms behind would otherwise spend seconds catching up at +10 %, and a second
    // seek right after the first is hardly seen (its lead is the one this start just taught).
    const settling = performance.now() - this.startedAt < START_SETTLE_MS;
    if (c.action === "seek" || ((this.hard || settling) && Math.abs(drift) > 0.1)) {
      const since = performance.now() - this.lastSeek;
      if (this.hard || settling || since >= this.cooldown) {
        this.cooldown = this.hard ? 1500 : Math.min(10000, since < 4000 ? this.cooldown * 2 : 1500);
        this.seek(target, true);
        this.setRate(st.rate);
        this.hard = false;
        this.report(drift);
        return;
      }
    } else {
      this.nudging = c.nudging;
      this.setRate(c.rate);
    }
    this.hard = false;
    this.report(drift);
  }

  report(drift) {
    this.drift = drift;
    this.onStats({
      drift, rate: this.video.playbackRate, rtt: this.clock.rtt, clockError: this.clock.error, nudging: this.nudging,
    });
  }
}
