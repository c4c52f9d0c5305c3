// Kiosk and gate device credentials of this branch: list, register (the secret is shown
// once, here, and never again), rotate a secret, revoke a device. Owners manage their own
// branches' devices; auth refuses any other branch and says why.
import { h, clear, formatTime } from '../../shared/dom.js';
import { t, lang } from '../../shared/i18n.js';
import { explain } from '../../shared/api.js';

export async function devices(ctx, el) {
  const base = '/api/auth/devices';
  const shown = h('div', { id: 'device-secret', role: 'status', 'aria-live': 'polite' });
  const list = h('div', { id: 'device-list' });
  const showCredentials = (name, credentials) => clear(shown, h('div', { class: 'card secret-card' },
    h('h3', {}, t('devices.secret_for', { name })),
    h('p', {}, t('devices.once')),
    h('dl', {},
      h('dt', {}, t('devices.client_id')), h('dd', {}, h('code', { id: 'device-client-id' }, credentials.client_id)),
      h('dt', {}, t('devices.client_secret')), h('dd', {}, h('code', { id: 'device-client-secret' }, credentials.client_secret))),
    h('button', { type: 'button', onclick: () => clear(shown) }, t('devices.hide'))));
  const failed = (error) => clear(shown, h('p', { class: 'error', role: 'alert' }, explain(error, t)));

  async function load() {
    const rows = await ctx.api.get(`${base}?branch_id=${encodeURIComponent(ctx.branch)}`);
    if (!rows.length) {
      clear(list, h('p', { class: 'muted', id: 'devices-empty' }, t('devices.empty')));
      return;
    }
    clear(list, h('table', {},
      h('caption', { class: 'muted' }, t('devices.existing')),
      h('thead', {}, h('tr', {}, ['devices.name', 'devices.kind', 'devices.created', 'devices.rotated', 'devices.actions'].map((key) => h('th', { scope: 'col' }, t(key))))),
      h('tbody', {}, rows.map((row) => h('tr', { id: `device-${row.id}` },
        h('th', { scope: 'row' }, row.name, h('br'), h('small', { class: 'muted' }, row.id)),
        h('td', {}, t(`devices.kind.${row.kind}`)),
        h('td', {}, formatTime(row.created_at, lang())),
        h('td', {}, row.rotated_at ? formatTime(row.rotated_at, lang()) : '—'),
        h('td', {}, h('div', { class: 'row' },
          h('button', { type: 'button', class: 'rotate', 'aria-label': `${t('devices.rotate')}: ${row.name}`, onclick: async () => {
            if (!window.confirm(t('devices.rotate_confirm', { name: row.name }))) return;
            try {
              showCredentials(row.name, await ctx.api.post(`${base}/${encodeURIComponent(row.id)}/rotate`));
              await load();
            } catch (error) {
              failed(error);
            }
          } }, t('devices.rotate')),
          h('button', { type: 'button', class: 'danger revoke', 'aria-label': `${t('devices.revoke')}: ${row.name}`, onclick: async () => {
            if (!window.confirm(t('devices.revoke_confirm', { name: row.name }))) return;
            try {
              await ctx.api.delete(`${base}/${encodeURIComponent(row.id)}`);
              clear(shown, h('p', {}, t('devices.revoked', { name: row.name })));
              await load();
            } catch (error) {
              failed(error);
            }
          } }, t('devices.revoke')))))))));
  }

  const name = h('input', { id: 'dev-name', required: true, maxlength: 100, autocomplete: 'off' });
  const kind = h('select', { id: 'dev-kind' }, ['kiosk', 'gate'].map((value) => h('option', { value }, t(`devices.kind.${value}`))));
  el.append(
    h('form', { class: 'card', onsubmit: async (event) => {
      event.preventDefault();
      try {
        const label = name.value.trim();
        showCredentials(label, await ctx.api.post(base, { name: label, kind: kind.value, branch_id: ctx.branch }));
        name.value = '';
        await load();
      } catch (error) {
        failed(error);
      }
    } }, h('h3', {}, t('devices.new')),
      h('div', { class: 'row' }, h('div', { class: 'field' }, h('label', { for: 'dev-name' }, t('devices.name')), name), h('div', { class: 'field' }, h('label', { for: 'dev-kind' }, t('devices.kind')), kind)),
      h('button', { type: 'submit', class: 'primary', id: 'dev-create' }, t('devices.create'))),
    shown,
    h('div', { class: 'card' }, list),
  );
  await load();
}
