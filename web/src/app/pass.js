// The QR entry pass: issued by auth for one branch, one use, short-lived. The app renews it
// before it expires while the screen is shown, and keeps the last one so that the pass
// still shows when the phone has no network at the door (the gate decides if it is valid).
import QRCode from 'qrcode';
import { h, clear } from '../shared/dom.js';
import { t } from '../shared/i18n.js';
import { explain } from '../shared/api.js';

const LAST_PASS = 'smartgym.app.pass';
// Renew when less than this share of the pass's life is left (and never later than 10 s
// before the end): a pass shown to the camera must not expire between scan and decision.
const RENEW_AT_REMAINING = 0.25;

export function lastPass() {
  try {
    return JSON.parse(localStorage.getItem(LAST_PASS) || 'null');
  } catch {
    return null;
  }
}

export class PassView {
  constructor(root, api) {
    this.root = root;
    this.api = api;
    this.timer = null;
    this.branch = null;
  }

  async mount() {
    let branches = [];
    try {
      const memberships = await this.api.get('/api/auth/me/memberships');
      branches = [...new Set((memberships || []).filter((m) => m.status !== 'cancelled').map((m) => m.branch_id))];
    } catch (error) {
      if (error.reason !== 'offline') throw error;
      this.showStored(true);
      return;
    }
    if (!branches.length) {
      clear(this.root, h('section', { class: 'card' }, h('h2', {}, t('pass.title')), h('p', { id: 'pass-none' }, t('pass.none'))));
      return;
    }
    const picker = h(
      'select',
      { id: 'pass-branch', onchange: () => this.issue(picker.value) },
      branches.map((id) => h('option', { value: id }, id)),
    );
    this.figure = h('div', { class: 'pass', id: 'pass' });
    this.line = h('p', { class: 'muted', id: 'pass-line', 'aria-live': 'polite' });
    clear(
      this.root,
      h(
        'section',
        { class: 'card' },
        h('h2', {}, t('pass.title')),
        h('div', { class: 'field' }, h('label', { for: 'pass-branch' }, t('pass.branch')), picker),
        this.figure,
        h('p', {}, t('pass.hint')),
        this.line,
      ),
    );
    await this.issue(branches[0]);
  }

  unmount() {
    clearTimeout(this.timer);
    this.timer = null;
  }

  async issue(branch) {
    clearTimeout(this.timer);
    this.branch = branch;
    try {
      const issued = await this.api.post('/api/auth/me/entry-pass', { branch_id: branch });
      const pass = { code: issued.code, branch, expires_at: Date.now() + issued.expires_in * 1000, life_s: issued.expires_in };
      localStorage.setItem(LAST_PASS, JSON.stringify(pass));
      await this.draw(pass, false);
      const renewIn = Math.max(1, Math.min(issued.expires_in * (1 - RENEW_AT_REMAINING), issued.expires_in - 10));
      this.timer = setTimeout(() => this.issue(branch), renewIn * 1000);
      this.tick(pass, renewIn);
    } catch (error) {
      if (error.reason === 'offline') {
        this.showStored(false);
        this.timer = setTimeout(() => this.issue(branch), 5000);
      } else {
        this.line.textContent = explain(error, t);
      }
    }
  }

  tick(pass, renewIn) {
    const renewAt = Date.now() + renewIn * 1000;
    const step = () => {
      if (!this.timer || !this.line) return;
      this.line.textContent = t('pass.renews', { s: Math.max(0, Math.round((renewAt - Date.now()) / 1000)) });
      if (Date.now() < renewAt) setTimeout(step, 1000);
    };
    step();
  }

  async showStored(rebuild) {
    const pass = lastPass();
    if (rebuild || !this.figure) {
      this.figure = h('div', { class: 'pass', id: 'pass' });
      this.line = h('p', { class: 'muted', id: 'pass-line', 'aria-live': 'polite' });
      clear(this.root, h('section', { class: 'card' }, h('h2', {}, t('pass.title')), this.figure, this.line));
    }
    if (!pass) {
      this.line.textContent = t('offline');
      return;
    }
    await this.draw(pass, true);
    this.line.textContent = pass.expires_at < Date.now() ? t('pass.expired') : t('pass.offline');
  }

  async draw(pass, stale) {
    const url = await QRCode.toDataURL(pass.code, { errorCorrectionLevel: 'M', margin: 4, width: 320 });
    clear(
      this.figure,
      h('img', { id: 'pass-qr', src: url, width: 320, height: 320, alt: t('pass.title'), class: stale ? 'stale' : '' }),
    );
    this.figure.dataset.code = pass.code;
  }
}
