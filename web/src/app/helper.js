// The helper's side: balance (its history and payouts: payouts.js), tasks with the AI's
// reasons and the owner's decision, and a
// task submission whose photos are shrunk in the browser before upload (a phone photo of
// 4-12 MB becomes ~300 kB; the judge needs no more than 1600 px).
import { h, clear } from '../shared/dom.js';
import { t } from '../shared/i18n.js';
import { explain } from '../shared/api.js';
import { PayoutsSection } from './payouts.js';

const MAX_SIDE = 1600;

// Small photos go as they are: re-encoding drops the EXIF capture time the judge checks.
const SEND_AS_IS_BYTES = 1_500_000;

export async function shrink(file) {
  if (file.size <= SEND_AS_IS_BYTES) return file;
  const bitmap = await createImageBitmap(file);
  const scale = Math.min(1, MAX_SIDE / Math.max(bitmap.width, bitmap.height));
  const canvas = document.createElement('canvas');
  canvas.width = Math.round(bitmap.width * scale);
  canvas.height = Math.round(bitmap.height * scale);
  canvas.getContext('2d').drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  return new Promise((resolve) => canvas.toBlob(resolve, 'image/jpeg', 0.85));
}

export class HelperView {
  constructor(root, api) {
    this.root = root;
    this.api = api;
  }

  async mount() {
    this.balance = h('p', { id: 'helper-balance', class: 'big' }, '…');
    this.tasks = h('ul', { id: 'helper-tasks', class: 'tasks' });
    this.status = h('p', { role: 'status', id: 'helper-status' });
    const branch = h('input', { id: 'helper-branch', required: true, autocomplete: 'off' });
    const type = h('input', { id: 'helper-type', required: true, autocomplete: 'off' });
    const photos = h('input', { id: 'helper-photos', type: 'file', accept: 'image/jpeg,image/png', multiple: true, required: true });
    const send = h('button', { type: 'submit', class: 'primary', id: 'helper-send' }, t('helper.send'));
    const form = h(
      'form',
      {
        class: 'card',
        onsubmit: async (event) => {
          event.preventDefault();
          send.disabled = true;
          this.status.textContent = '…';
          try {
            const body = new FormData();
            body.append('branch_id', branch.value.trim());
            body.append('task_type', type.value.trim());
            // One key per submission: a retry after a lost answer is the same task.
            body.append('client_key', crypto.randomUUID());
            for (const file of [...photos.files].slice(0, 5)) body.append('photos', await shrink(file), 'photo.jpg');
            await this.api.request('POST', '/api/helper/v1/tasks', { body });
            this.status.textContent = t('helper.sent');
            form.reset();
            await this.refresh();
          } catch (error) {
            this.status.textContent = explain(error, t);
          } finally {
            send.disabled = false;
          }
        },
      },
      h('h2', {}, t('helper.submit')),
      h('div', { class: 'field' }, h('label', { for: 'helper-branch' }, t('helper.branch')), branch),
      h('div', { class: 'field' }, h('label', { for: 'helper-type' }, t('helper.type')), type),
      h('div', { class: 'field' }, h('label', { for: 'helper-photos' }, t('helper.photos')), photos),
      send,
      this.status,
    );
    const payouts = h('div', {});
    clear(
      this.root,
      h('section', { class: 'card' }, h('h2', {}, t('helper.title')), this.balance),
      form,
      h('section', { class: 'card' }, h('h2', {}, t('helper.tasks')), this.tasks),
      payouts,
    );
    this.payouts = new PayoutsSection(payouts, this.api);
    this.payouts.mount();
    this.payouts.onChange = () => this.refresh();
    await this.refresh();
    // The verdict arrives a moment after the submission and the owner's decision later.
    this.poll = setInterval(() => this.refresh(), 3000);
  }

  unmount() {
    clearInterval(this.poll);
  }

  async refresh() {
    try {
      const [balance, page] = await Promise.all([
        this.api.get('/api/helper/v1/me/balance'),
        this.api.get('/api/helper/v1/me/tasks'),
        this.payouts?.refresh(),
      ]);
      this.balance.textContent = t('helper.balance', { krw: balance.balance_krw.toLocaleString() });
      const tasks = page.tasks || [];
      clear(
        this.tasks,
        tasks.length
          ? tasks.map((task) =>
              h(
                'li',
                { class: 'task', dataset: { status: task.status, id: task.id || task.task_id } },
                h('strong', {}, `${task.title || task.task_type} · ${task.status}${task.verdict ? ` · AI: ${task.verdict}` : ''}`),
                (task.reasons || []).length ? h('ul', {}, task.reasons.map((reason) => h('li', {}, reason.message))) : null,
              ),
            )
          : h('li', { class: 'muted' }, t('helper.none')),
      );
    } catch (error) {
      this.status.textContent = explain(error, t);
    }
  }
}
