// One live run on this phone: geolocation in, the outbox and the socket out, the server's
// statistics and race boards back. It outlives the screen (switching to the entry pass
// mid-run keeps running) and a reload: the run's key, id and race are kept in
// localStorage, its unsent points in IndexedDB.
import { Outbox } from './outbox.js';
import { RunLink } from './link.js';

const KEY = 'smartgym.run';

export function savedRun() {
  try {
    return JSON.parse(localStorage.getItem(KEY) || 'null');
  } catch {
    return null;
  }
}

let active = null;

export function activeSession() {
  return active;
}

// The session for a run kept from before (a reload mid-run), or null.
export async function resumeSaved(api) {
  if (active) return active;
  const saved = savedRun();
  if (!saved) return null;
  active = new RunSession(api, saved);
  await active.begin();
  return active;
}

export async function startRun(api, { raceId = null } = {}) {
  if (active && !active.done) return active;
  const key = crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`;
  active = new RunSession(api, { key, runId: null, raceId, paused: false });
  await active.begin();
  return active;
}

export class RunSession {
  constructor(api, saved) {
    this.api = api;
    this.saved = saved;
    this.outbox = new Outbox(saved.key);
    this.listeners = new Set();
    this.stats = null;
    this.board = [];
    this.results = null;
    this.state = 'connecting';
    this.detail = '';
    this.done = false;
    this.summary = null;
    this.track = []; // [lat, lon] as this phone recorded them (drawn at once, even offline)
  }

  get runId() {
    return this.saved.runId;
  }
  get raceId() {
    return this.saved.raceId;
  }
  get paused() {
    return this.saved.paused;
  }

  persist() {
    if (this.done) localStorage.removeItem(KEY);
    else localStorage.setItem(KEY, JSON.stringify(this.saved));
  }

  subscribe(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(what, data) {
    for (const listener of this.listeners) listener(what, data);
  }

  async begin() {
    this.persist();
    await this.outbox.load();
    for (const item of this.outbox.items) if (item.kind === 'point') this.track.push([item.lat, item.lon]);
    this.link = new RunLink(this.api, this.outbox, {
      runId: this.saved.runId,
      raceId: this.saved.raceId,
      onMessage: (message) => this.onMessage(message),
      onState: (state, detail = '') => {
        this.state = state;
        this.detail = detail;
        if (state === 'ended') {
          this.end(); // finished elsewhere: what is left here has nowhere to go
          this.outbox.clear();
        }
        this.emit('state');
      },
    });
    if (!('geolocation' in navigator)) {
      this.state = 'nogps';
      this.detail = 'no geolocation';
      this.emit('state');
      return;
    }
    this.watch = navigator.geolocation.watchPosition(
      (position) => this.onFix(position),
      (error) => {
        this.state = 'nogps';
        this.detail = error.message || String(error.code);
        this.emit('state');
      },
      { enableHighAccuracy: true, maximumAge: 0, timeout: 30_000 },
    );
  }

  onFix(position) {
    if (this.done || this.saved.paused) return;
    const c = position.coords;
    // A fix coarser than the server takes (500 m) is no use to a run.
    if (!(c.accuracy <= 500)) return;
    const t = position.timestamp / 1000;
    const point = {
      kind: 'point',
      t,
      lat: c.latitude,
      lon: c.longitude,
      // The browser reports 0 for an exact (emulated) position; the server wants a positive one.
      acc: Math.max(1, c.accuracy),
    };
    if (typeof c.altitude === 'number' && c.altitude > -500 && c.altitude < 9000) point.alt = c.altitude;
    if (typeof c.speed === 'number' && c.speed >= 0 && c.speed <= 100) point.spd = c.speed;
    if (!this.outbox.add(point)) return;
    if (this.state === 'nogps') {
      this.state = this.link.started ? 'live' : 'connecting'; // a fix again after a dropout
      this.emit('state');
    }
    // For the figures: when this phone learnt where the runner is (see bench/apps_live.py).
    performance.mark('smartgym:run-fix', { detail: { t } });
    this.track.push([point.lat, point.lon]);
    this.link.flush();
    this.emit('fix', point);
  }

  onMessage(message) {
    switch (message.type) {
      case 'started':
        this.saved.runId = message.run_id;
        this.persist();
        if (message.stats) this.stats = message.stats;
        break;
      case 'stats':
        this.stats = message;
        break;
      case 'paused':
      case 'resumed':
        if (message.stats) this.stats = message.stats;
        break;
      case 'leaderboard':
        this.board = message.board || [];
        break;
      case 'results':
        this.results = message.placings || [];
        break;
      case 'finished':
        this.summary = message.summary || null;
        this.end();
        this.outbox.clear();
        break;
      default:
        break;
    }
    this.emit('message', message);
  }

  control(kind) {
    if (this.done) return;
    const t = Date.now() / 1000;
    this.saved.paused = kind === 'pause';
    this.persist();
    this.outbox.add({ kind, t });
    this.link.flush();
    this.emit('state');
  }

  finish() {
    if (this.saved.paused) this.control('resume');
    this.link.finish();
  }

  end() {
    if (this.done) return;
    this.done = true;
    if (this.watch !== undefined) navigator.geolocation.clearWatch(this.watch);
    this.link?.stop();
    this.persist();
    if (active === this) active = null;
    this.emit('state');
  }

  async share(hours = 3) {
    return this.api.post(`/api/running/v1/runs/${encodeURIComponent(this.saved.runId)}/share`, { hours });
  }
}
