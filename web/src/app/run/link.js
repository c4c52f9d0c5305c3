// The runner's live socket (through the gateway to running's live server): points from the
// outbox in device-time order, at most a few frames a second; an `ack` drops what is
// stored; a reconnect names the run and resends only what came after the server's
// `stored_t`. A tunnel is noticed three ways: the browser says it is offline, the socket
// closes, or nothing comes back for a while although points went out (a half-dead socket).
import { socketToken } from '../../shared/api.js';

const MIN_GAP_MS = 250; // the server allows 5 frames a second; a burst rides in one frame
const BATCH = 500; // under the server's 600 points a frame
const SILENT_MS = 8000;
const MAX_DELAY_MS = 5000;

export class RunLink {
  constructor(api, outbox, { runId = null, raceId = null, onMessage, onState }) {
    this.api = api;
    this.outbox = outbox;
    this.runId = runId;
    this.raceId = raceId;
    this.onMessage = onMessage;
    this.onState = onState;
    this.ws = null;
    this.started = false; // the server has answered `started` on this socket
    this.sentUpTo = 0; // device time of the newest item sent on this socket
    this.lastSend = 0;
    this.waitingSince = 0; // the first send since the server last said anything
    this.timer = null;
    this.delay = 500;
    this.finishing = false;
    this.stopped = false;
    this.onOffline = () => this.drop('offline');
    this.onOnline = () => this.reconnectNow();
    window.addEventListener('offline', this.onOffline);
    window.addEventListener('online', this.onOnline);
    this.watchdog = setInterval(() => this.check(), 2000);
    this.connect();
  }

  async connect() {
    if (this.stopped || this.connecting) return;
    if (!navigator.onLine) {
      this.onState('offline');
      return; // the `online` event reconnects
    }
    // A run outlasts an access token: a reconnect after a tunnel needs a fresh one.
    this.connecting = true;
    const token = await socketToken(this.api);
    this.connecting = false;
    if (this.stopped || this.ws) return;
    const url = new URL('/api/live/ws/runs', location.href);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    if (this.runId) url.searchParams.set('run_id', this.runId);
    else if (this.raceId) url.searchParams.set('race_id', this.raceId);
    // A browser cannot set headers on a WebSocket: the gateway reads the token here.
    if (token) url.searchParams.set('access_token', token);
    this.onState('connecting');
    const ws = (this.ws = new WebSocket(url));
    this.started = false;
    ws.onmessage = (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      this.waitingSince = 0;
      if (message.type === 'started') {
        this.started = true;
        this.delay = 500;
        this.runId = message.run_id;
        if (message.stored_t) this.outbox.acknowledge(message.stored_t);
        this.sentUpTo = 0;
        this.onState('live');
        this.flush();
      } else if (message.type === 'ack') {
        this.outbox.acknowledge(message.t);
      } else if (message.type === 'finished') {
        this.stop();
      }
      this.onMessage(message);
      if (message.type === 'started' && this.finishing) this.finish();
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.started = false;
      this.waitingSince = 0;
      if (this.stopped) return;
      // The server ended this run (finished elsewhere, or too old to resume): no retry.
      if (event.code === 1008 && /finished|no such run/.test(event.reason)) {
        this.stopped = true;
        this.onState('ended', event.reason);
        return;
      }
      this.onState(navigator.onLine ? 'connecting' : 'offline');
      clearTimeout(this.retry);
      this.retry = setTimeout(() => this.connect(), this.delay);
      this.delay = Math.min(MAX_DELAY_MS, this.delay * 2);
    };
  }

  reconnectNow() {
    if (this.stopped) return;
    clearTimeout(this.retry);
    this.delay = 500;
    if (!this.ws) this.connect();
  }

  check() {
    // Points went out and nothing has come back: the socket is dead without knowing it.
    if (this.ws && this.waitingSince && Date.now() - this.waitingSince > SILENT_MS) this.drop('silent');
  }

  // Give up on this socket now (its close handshake may never come back through a tunnel).
  drop(reason) {
    const ws = this.ws;
    if (!ws) return;
    ws.close(4000, reason);
    ws.onclose({ code: 4000, reason });
  }

  // Send what the server has not had on this socket; called on each new fix.
  flush() {
    const ws = this.ws;
    if (!ws || !this.started || ws.readyState !== WebSocket.OPEN) return;
    const wait = this.lastSend + MIN_GAP_MS - Date.now();
    if (wait > 0) {
      if (!this.timer) this.timer = setTimeout(() => ((this.timer = null), this.flush()), wait);
      return;
    }
    const due = this.outbox.after(this.sentUpTo);
    if (!due.length) return;
    const frames = [];
    let points = [];
    for (const item of due) {
      if (item.kind === 'point') {
        const { kind, ...point } = item;
        points.push(point);
        if (points.length === BATCH) frames.push({ type: 'points', points }), (points = []);
      } else {
        if (points.length) frames.push({ type: 'points', points }), (points = []);
        frames.push({ type: item.kind, t: item.t });
      }
    }
    if (points.length) frames.push(points.length === 1 ? { type: 'point', ...points[0] } : { type: 'points', points });
    for (const frame of frames) ws.send(JSON.stringify(frame));
    this.lastSend = Date.now();
    if (!this.waitingSince) this.waitingSince = this.lastSend;
    this.sentUpTo = due[due.length - 1].t;
  }

  finish() {
    this.finishing = true;
    if (this.ws && this.started && this.ws.readyState === WebSocket.OPEN) {
      this.flush();
      if (this.timer) {
        clearTimeout(this.timer);
        this.timer = null;
        this.lastSend = 0;
        this.flush();
      }
      this.ws.send(JSON.stringify({ type: 'finish' }));
    }
  }

  stop() {
    this.stopped = true;
    clearInterval(this.watchdog);
    clearTimeout(this.retry);
    clearTimeout(this.timer);
    window.removeEventListener('offline', this.onOffline);
    window.removeEventListener('online', this.onOnline);
  }

  close() {
    this.stop();
    this.ws?.close(1000, 'left the screen');
  }
}
