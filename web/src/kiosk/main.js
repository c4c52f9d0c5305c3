// The gate kiosk: a dedicated tablet at the door. It holds device credentials (set up
// once by an installer), trades them for short device tokens, watches the camera and
// sends frames to face entry (a head-turn burst when the branch asks for liveness), reads
// QR passes from the same camera, and says the decision in large type. Fail-secure: when
// the platform cannot be reached it says so and never suggests the door is open. It shows
// no personal data at all (decisions carry no name).
import '../shared/tokens.css';
import './kiosk.css';
import jsQR from 'jsqr';
import { h, clear } from '../shared/dom.js';
import { Api, ApiError } from '../shared/api.js';
import { addDictionary, t, onLangChange } from '../shared/i18n.js';
import { languageButton } from '../shared/layout.js';
import { words } from './words.js';

addDictionary(words);
const STORE = 'smartgym.kiosk';
const FRAME_EVERY_MS = 600; // a face frame every 0.6 s while idle
// Somebody is at the door but the frame was not usable yet (too far, turned, blurred): the
// next frame goes sooner, so the decision follows their adjustment instead of the idle beat.
const FRAME_SOON_MS = 200;
const HINT_MS = 1000;
const JPEG_QUALITY = 0.8; // ~33 kB at 640x480: the face engine sees no difference from 0.85
// Native barcode detection (Android and ChromeOS tablets) runs off the main thread; jsQR
// is the fallback where the browser has none.
const nativeQr = 'BarcodeDetector' in window
  ? window.BarcodeDetector.getSupportedFormats().then((formats) => (formats.includes('qr_code') ? new window.BarcodeDetector({ formats: ['qr_code'] }) : null)).catch(() => null)
  : Promise.resolve(null);
// How long a decision stays on screen; a site (or a benchmark) may set its own.
const SHOW_DECISION_MS = Number(localStorage.getItem('smartgym.kiosk.hold_ms')) || 3500;
const root = document.getElementById('app');
const api = new Api({ storageKey: 'smartgym.kiosk.token' });

function saved() {
  try {
    return JSON.parse(localStorage.getItem(STORE) || 'null');
  } catch {
    return null;
  }
}

function setup(message = '') {
  document.body.classList.remove('kiosk');
  const id = h('input', { id: 'kiosk-client-id', required: true, autocomplete: 'off' });
  const secret = h('input', { id: 'kiosk-client-secret', type: 'password', required: true, autocomplete: 'off' });
  const gate = h('input', { id: 'kiosk-gate', required: true, autocomplete: 'off' });
  const error = h('p', { class: 'error', role: 'alert', id: 'kiosk-setup-error' }, message);
  clear(root, h('main', { class: 'center' }, h('form', { class: 'card login kiosk-setup', onsubmit: async (event) => {
    event.preventDefault();
    const credentials = { client_id: id.value.trim(), client_secret: secret.value.trim(), gate: gate.value.trim() };
    try {
      await token(credentials);
      localStorage.setItem(STORE, JSON.stringify(credentials));
      start(credentials);
    } catch (failure) {
      error.textContent = failure instanceof ApiError && failure.status === 401 ? t('kiosk.rejected') : String(failure.detail || failure);
    }
  } },
  h('div', { class: 'row' }, h('h1', {}, t('kiosk.setup')), h('div', { class: 'spacer' }), languageButton()),
  h('p', { class: 'muted' }, t('kiosk.setup.help')),
  h('div', { class: 'field' }, h('label', { for: 'kiosk-client-id' }, t('kiosk.client_id')), id),
  h('div', { class: 'field' }, h('label', { for: 'kiosk-client-secret' }, t('kiosk.client_secret')), secret),
  h('div', { class: 'field' }, h('label', { for: 'kiosk-gate' }, t('kiosk.gate')), gate),
  error,
  h('button', { type: 'submit', class: 'primary', id: 'kiosk-start' }, t('kiosk.start')))));
  id.focus();
}

let refreshTimer = null;
async function token(credentials) {
  const answer = await api.request('POST', '/api/auth/devices/token', {
    json: { client_id: credentials.client_id, client_secret: credentials.client_secret },
  });
  api.setToken(answer.access_token);
  clearTimeout(refreshTimer);
  // Renew well before expiry; a failed renewal retries soon (the screen shows offline).
  const renewIn = Math.max(10, answer.expires_in * 0.8) * 1000;
  refreshTimer = setTimeout(() => token(credentials).catch(() => setTimeout(() => token(credentials).catch(() => {}), 5000)), renewIn);
  return answer;
}

function start(credentials) {
  new Kiosk(credentials).run();
}

class Kiosk {
  constructor(credentials) {
    this.credentials = credentials;
    this.gate = credentials.gate;
    this.state = 'idle';
    this.busy = false;
    this.until = 0;
    this.branch = null;
    this.branchName = '';
    this.occupancy = null;
    this.canvas = document.createElement('canvas');
    this.qrCanvas = document.createElement('canvas');
  }

  async run() {
    document.body.classList.add('kiosk');
    this.video = h('video', { id: 'camera', autoplay: true, muted: true, playsinline: true, 'aria-label': t('kiosk.camera_label') });
    this.headline = h('p', { class: 'headline', id: 'decision' });
    this.reason = h('p', { class: 'reason', id: 'reason' });
    this.sub = h('p', { class: 'sub', id: 'occupancy' });
    this.title = h('h1', { id: 'branch-name' });
    this.screen = h('main', { class: 'kiosk-screen', dataset: { state: 'idle' } },
      h('div', { class: 'kiosk-top' }, this.title, h('div', { class: 'spacer' }), languageButton()),
      h('div', { class: 'kiosk-stage' }, this.video),
      h('div', { class: 'kiosk-message', role: 'status', 'aria-live': 'assertive' }, this.headline, this.reason, this.sub));
    clear(root, this.screen);
    onLangChange(() => this.paint());
    this.paint();
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 }, height: { ideal: 480 }, facingMode: 'user' }, audio: false });
      this.video.srcObject = this.stream;
      await this.video.play();
    } catch {
      this.cameraMissing = true;
    }
    await this.refreshIdle();
    setInterval(() => this.refreshIdle(), 15_000);
    this.loop();
  }

  async refreshIdle() {
    try {
      if (!api.token) await token(this.credentials);
      if (!this.branch) {
        const gates = await api.get('/api/access/v1/gates');
        this.branch = gates.find((gate) => gate.gate_id === this.gate)?.branch_id || gates[0]?.branch_id || null;
      }
      if (this.branch) {
        try {
          const profile = await api.get(`/api/branch-owner/v1/branches/${encodeURIComponent(this.branch)}`);
          this.branchName = profile.name;
        } catch {
          this.branchName = this.branch;
        }
        this.occupancy = await api.get(`/api/access/v1/branches/${encodeURIComponent(this.branch)}/occupancy`);
      }
      if (this.state === 'offline') this.setState('idle');
    } catch (error) {
      this.failed(error);
      if (!(error instanceof ApiError)) this.setState('offline');
    }
    this.paint();
  }

  failed(error) {
    if (error instanceof ApiError && error.reason === 'session') {
      token(this.credentials).catch((failure) => (failure.status === 401 ? setup(t('kiosk.rejected')) : this.setState('offline')));
      return;
    }
    if (error instanceof ApiError && (error.reason === 'offline' || error.reason === 'unavailable')) this.setState('offline');
  }

  setState(state, decision = null, latency = null) {
    this.state = state;
    this.decision = decision;
    this.screen.dataset.state = state;
    // A hint to fix the picture ("move closer") stays up only until the next frame decides.
    this.hinting = state === 'denied' && decision?.reason === 'poor_quality';
    const hold = this.hinting ? Math.min(SHOW_DECISION_MS, HINT_MS) : SHOW_DECISION_MS;
    this.until = state === 'granted' || state === 'denied' ? performance.now() + hold : 0;
    this.paint();
    if (latency !== null) {
      // Frame captured -> decision on screen: measured at the next frame the browser draws.
      const captured = performance.now() - latency;
      const stages = this.stages;
      requestAnimationFrame(() => {
        const total = performance.now() - captured;
        this.headline.dataset.latencyMs = String(Math.round(total));
        (window.kioskLatencies ||= []).push(total);
        if (decision?.latency_ms !== undefined) (window.kioskServerMs ||= []).push(decision.latency_ms);
        // Where the time went (for the benchmark and a technician's console): no personal data.
        if (stages) (window.kioskStages ||= []).push({ ...stages, total, server: decision?.latency_ms, timings: decision?.timings_ms });
      });
    }
  }

  paint() {
    this.title.textContent = this.branchName ? t('kiosk.welcome', { branch: this.branchName }) : t('kiosk.title');
    const occupancy = this.occupancy
      ? this.occupancy.limit ? t('kiosk.inside_limit', { n: this.occupancy.inside, limit: this.occupancy.limit }) : t('kiosk.inside', { n: this.occupancy.inside })
      : '';
    this.headline.dataset.state = this.state;
    if (this.state === 'offline') {
      this.headline.textContent = t('kiosk.offline.title');
      this.reason.textContent = t('kiosk.offline.body');
      this.sub.textContent = '';
    } else if (this.state === 'granted' || this.state === 'denied') {
      const decision = this.decision;
      this.headline.textContent = this.state === 'granted' ? t('kiosk.enter') : t('kiosk.refused');
      const detail = decision.detail && decision.detail !== 'burst_required' ? `detail.${decision.detail}` : null;
      this.reason.textContent = detail && words.en[detail] ? t(detail) : t(`reason.${decision.reason}`);
      this.reason.dataset.reason = decision.reason;
      this.sub.textContent = occupancy;
    } else if (this.state === 'turn') {
      this.headline.textContent = t('kiosk.turn');
      this.reason.textContent = '';
    } else {
      this.headline.textContent = this.cameraMissing ? t('kiosk.camera') : t('kiosk.look');
      this.reason.textContent = '';
      delete this.reason.dataset.reason;
      this.sub.textContent = occupancy;
    }
  }

  grab(canvas, width) {
    const video = this.video;
    if (!video.videoWidth) return null;
    const scale = Math.min(1, width / video.videoWidth);
    canvas.width = Math.round(video.videoWidth * scale);
    canvas.height = Math.round(video.videoHeight * scale);
    const context = canvas.getContext('2d', { willReadFrequently: true });
    context.drawImage(video, 0, 0, canvas.width, canvas.height);
    return context;
  }

  jpeg() {
    return new Promise((resolve) => this.canvas.toBlob(resolve, 'image/jpeg', JPEG_QUALITY));
  }

  async loop() {
    for (;;) {
      const now = performance.now();
      if (this.state === 'offline') {
        await this.refreshIdle(); // back to idle as soon as the platform answers
      } else if (!this.busy && now >= this.until && !this.cameraMissing && this.state !== 'turn') {
        if ((this.state === 'granted' || this.state === 'denied') && !this.hinting) this.setState('idle');
        await this.scan();
      }
      const pause = this.state === 'offline' ? 3000 : this.soon ? FRAME_SOON_MS : FRAME_EVERY_MS;
      this.soon = false;
      await new Promise((resolve) => setTimeout(resolve, pause));
    }
  }

  async scan() {
    this.busy = true;
    const captured = performance.now();
    try {
      const context = this.grab(this.canvas, 640);
      if (!context) return;
      const frame = await this.jpeg();
      this.stages = { encode: performance.now() - captured, bytes: frame.size, width: this.canvas.width };
      if (this.burst) {
        await this.burstEntry(captured, frame);
        return;
      }
      // The frame goes out first; the QR search runs while the platform decides.
      const face = api
        .request('POST', `/api/access/v1/gates/${encodeURIComponent(this.gate)}/face`, {
          body: frame,
          headers: { 'content-type': 'image/jpeg', 'idempotency-key': crypto.randomUUID() },
        })
        .then((decision) => ({ decision }), (error) => ({ error }))
        .finally(() => {
          if (!this.stages) return;
          this.stages.fetched = performance.now() - captured;
          // The browser's own view of the request: when it left, when the answer began.
          const [timing] = performance.getEntriesByType('resource').filter((entry) => entry.name.endsWith('/face')).slice(-1);
          if (timing) Object.assign(this.stages, { sent: timing.requestStart - captured, first_byte: timing.responseStart - captured, done: timing.responseEnd - captured });
          performance.clearResourceTimings();
        });
      const qrStarted = performance.now();
      const code = await this.findQr(context);
      this.stages.qr = performance.now() - qrStarted;
      const answer = await face;
      if (code && code.data.length >= 20 && !answer.decision?.granted) {
        // A QR pass in the picture is an explicit request to enter: it decides.
        await this.decide(captured, () => api.post(`/api/access/v1/gates/${encodeURIComponent(this.gate)}/pass`, { code: code.data }, { headers: { 'idempotency-key': crypto.randomUUID() } }));
        return;
      }
      await this.decide(captured, () => (answer.error ? Promise.reject(answer.error) : Promise.resolve(answer.decision)));
    } catch (error) {
      this.failed(error);
    } finally {
      this.busy = false;
    }
  }

  async findQr(context) {
    const detector = await nativeQr;
    if (detector) {
      try {
        const [found] = await detector.detect(this.canvas);
        return found ? { data: found.rawValue } : null;
      } catch {
        // fall through to jsQR
      }
    }
    const image = context.getImageData(0, 0, this.canvas.width, this.canvas.height);
    return jsQR(image.data, image.width, image.height, { inversionAttempts: 'dontInvert' });
  }

  async burstEntry(captured, first) {
    // The branch asks for a head turn: three frames while the member turns.
    this.setState('turn');
    const frames = [first];
    for (let index = 0; index < 2; index += 1) {
      await new Promise((resolve) => setTimeout(resolve, 350));
      this.grab(this.canvas, 640);
      frames.push(await this.jpeg());
    }
    const encoded = await Promise.all(frames.map((blob) => blob.arrayBuffer().then((buffer) => {
      let binary = '';
      const bytes = new Uint8Array(buffer);
      for (let index = 0; index < bytes.length; index += 0x8000) binary += String.fromCharCode(...bytes.subarray(index, index + 0x8000));
      return btoa(binary);
    })));
    this.state = 'idle';
    await this.decide(captured, () => api.post(`/api/access/v1/gates/${encodeURIComponent(this.gate)}/face-burst`, { frames: encoded }));
  }

  async decide(captured, call) {
    let decision;
    try {
      decision = await call();
    } catch (error) {
      if (error instanceof ApiError && error.status === 422) {
        // A frame the service could not use: say what to fix, keep going.
        this.setState('denied', { reason: 'poor_quality', detail: null }, performance.now() - captured);
        return;
      }
      throw error;
    }
    if (decision.reason === 'liveness_failed' && decision.detail === 'burst_required') {
      this.burst = true; // this branch wants a head turn from now on
      return;
    }
    if (decision.reason === 'no_face') {
      if (this.state !== 'idle') this.setState('idle');
      return;
    }
    if (decision.reason === 'poor_quality') this.soon = true;
    this.setState(decision.granted ? 'granted' : 'denied', decision, performance.now() - captured);
    // Occupancy changes with each entry.
    if (decision.granted && this.branch) api.get(`/api/access/v1/branches/${encodeURIComponent(this.branch)}/occupancy`).then((value) => { this.occupancy = value; this.paint(); }).catch(() => {});
  }
}

const credentials = saved();
if (credentials) {
  token(credentials).then(() => start(credentials)).catch((error) => {
    if (error instanceof ApiError && error.status === 401) setup(t('kiosk.rejected'));
    else {
      start(credentials); // offline at start: the kiosk shows it and keeps trying
    }
  });
} else {
  setup();
}
