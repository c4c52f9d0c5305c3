// Face enrolment: the consent text the platform asks for is shown and must be accepted
// before a photo is taken (camera) or picked (file); the member can erase the face data
// (and withdraw the consent) at any time. The photo goes to auth only, which keeps the
// vector and never the picture.
import { h, clear, formatTime } from '../shared/dom.js';
import { addDictionary, t, has, lang } from '../shared/i18n.js';
import { explain } from '../shared/api.js';
import { shrink } from './helper.js';
import { words } from './enrol.words.js';

addDictionary(words);

export class EnrolSection {
  constructor(root, api) {
    this.root = root;
    this.api = api;
    this.stream = null;
  }

  async mount() {
    this.status = h('p', { role: 'status', id: 'face-status', 'aria-live': 'polite' });
    this.body = h('div', {});
    clear(this.root, h('section', { class: 'card', id: 'face' }, h('h2', {}, t('face.title')), this.body, this.status));
    await this.refresh();
  }

  unmount() {
    this.stopCamera();
  }

  async refresh() {
    let state;
    try {
      state = await this.api.get('/api/auth/me/face');
    } catch (error) {
      this.status.textContent = explain(error, t);
      return;
    }
    this.root.querySelector('#face').dataset.enrolled = state.enrolled_at ? 'true' : 'false';
    const summary = h(
      'p',
      { id: 'face-state' },
      state.enrolled_at ? t('face.enrolled', { at: formatTime(state.enrolled_at, lang()) }) : t('face.none'),
    );
    const textKey = `face.consent.${state.consent_version}`;
    if (!has(textKey)) {
      // A consent the member has not read is no consent: without this version's text the
      // app cannot ask for it.
      clear(this.body, summary, h('p', { role: 'alert' }, t('face.consent.unknown', { v: state.consent_version })));
      return;
    }
    const consent = h('input', { type: 'checkbox', id: 'face-consent', checked: Boolean(state.consent_given_at) });
    const file = h('input', { type: 'file', id: 'face-file', accept: 'image/jpeg,image/png' });
    const video = h('video', { id: 'face-video', playsinline: true, muted: true, hidden: true, 'aria-label': t('face.preview') });
    const shoot = h('button', { type: 'button', id: 'face-shoot', hidden: true, onclick: () => this.shoot(video, consent, state) }, t('face.shoot'));
    const camera = h('button', { type: 'button', id: 'face-camera', onclick: () => this.startCamera(video, shoot) }, t('face.camera'));
    const upload = h(
      'button',
      {
        type: 'button',
        class: 'primary',
        id: 'face-upload',
        onclick: () => (file.files[0] ? this.enrol(file.files[0], consent, state) : (this.status.textContent = t('face.pick'))),
      },
      t('face.upload'),
    );
    const erase = h('button', { type: 'button', class: 'danger', id: 'face-erase', onclick: () => this.erase() }, t('face.erase'));
    clear(
      this.body,
      summary,
      h('div', { class: 'consent', id: 'face-consent-text', tabindex: '0', role: 'region', 'aria-label': t('face.consent.title') }, t(textKey)),
      h('label', { for: 'face-consent', class: 'check' }, consent, t('face.consent.accept')),
      h('div', { class: 'field' }, h('label', { for: 'face-file' }, t('face.file')), file),
      h('div', { class: 'row' }, upload, camera, shoot),
      video,
      state.enrolled_at || state.consent_given_at ? h('div', { class: 'row' }, erase) : null,
    );
  }

  async ensureConsent(consent, state) {
    if (!consent.checked) throw Object.assign(new Error('consent'), { consent: true });
    if (!state.consent_given_at) {
      await this.api.post('/api/auth/me/face/consent', { text_version: state.consent_version, accepted: true });
    }
  }

  async enrol(blob, consent, state) {
    this.status.textContent = '…';
    try {
      await this.ensureConsent(consent, state);
      const photo = await shrink(blob);
      await this.api.request('POST', '/api/auth/me/face', { body: photo, headers: { 'content-type': photo.type || 'image/jpeg' } });
      this.stopCamera();
      await this.refresh();
      this.status.textContent = t('face.done');
    } catch (error) {
      if (error.consent) this.status.textContent = t('face.consent.needed');
      else if (error.status === 422) this.status.textContent = t('face.unusable', { reason: error.detail });
      else this.status.textContent = explain(error, t);
    }
  }

  async startCamera(video, shoot) {
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'user', width: 1280 } });
    } catch {
      this.status.textContent = t('face.nocamera');
      return;
    }
    video.srcObject = this.stream;
    video.hidden = false;
    await video.play().catch(() => {});
    // Offered once there is a picture to take (a click before the first frame takes nothing).
    if (!video.videoWidth) await new Promise((resolve) => video.addEventListener('loadeddata', resolve, { once: true }));
    shoot.hidden = false;
  }

  stopCamera() {
    for (const track of this.stream?.getTracks() || []) track.stop();
    this.stream = null;
  }

  async shoot(video, consent, state) {
    if (!video.videoWidth) return;
    const canvas = document.createElement('canvas');
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext('2d').drawImage(video, 0, 0);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, 'image/jpeg', 0.9));
    await this.enrol(blob, consent, state);
  }

  async erase() {
    if (!confirm(t('face.erase.confirm'))) return;
    this.status.textContent = '…';
    try {
      // Withdrawing the consent erases the face too: nothing stays to be re-used later.
      await this.api.delete('/api/auth/me/face/consent');
      await this.api.delete('/api/auth/me/face');
      await this.refresh();
      this.status.textContent = t('face.erased');
    } catch (error) {
      this.status.textContent = explain(error, t);
    }
  }
}
