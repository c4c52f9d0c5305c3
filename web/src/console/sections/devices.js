// Kiosk and gate device credentials. Registering, rotating and revoking devices is an
// operator's act (auth refuses owners); owners see why and who to ask.
import { h, clear } from '../../shared/dom.js';
import { t } from '../../shared/i18n.js';
import { explain } from '../../shared/api.js';

export async function devices(ctx, el) {
  const operator = (ctx.claims.roles || []).includes('operator');
  if (!operator) {
    el.append(h('p', { class: 'card' }, t('devices.operator_only')));
    return;
  }
  const shown = h('div', { id: 'device-secret', role: 'status' });
  const showCredentials = (credentials) => clear(shown, h('div', { class: 'card' },
    h('p', {}, t('devices.once')), h('p', {}, `client_id: ${credentials.client_id}`), h('p', {}, h('code', {}, `client_secret: ${credentials.client_secret}`))));
  const name = h('input', { id: 'dev-name', required: true, maxlength: 100 });
  const kind = h('select', { id: 'dev-kind' }, ['kiosk', 'gate'].map((value) => h('option', { value }, value)));
  const target = h('input', { id: 'dev-id', required: true, pattern: '[0-9a-fA-F-]{36}' });
  const act = (method) => async () => {
    try {
      if (method === 'rotate') showCredentials(await ctx.api.post(`/api/auth/devices/${encodeURIComponent(target.value.trim())}/rotate`));
      else {
        await ctx.api.delete(`/api/auth/devices/${encodeURIComponent(target.value.trim())}`);
        clear(shown, h('p', {}, t('devices.revoked')));
      }
    } catch (error) {
      clear(shown, h('p', { class: 'error' }, explain(error, t)));
    }
  };
  el.append(
    h('form', { class: 'card', onsubmit: async (event) => {
      event.preventDefault();
      try {
        showCredentials(await ctx.api.post('/api/auth/devices', { name: name.value, kind: kind.value, branch_id: ctx.branch }));
      } catch (error) {
        clear(shown, h('p', { class: 'error' }, explain(error, t)));
      }
    } }, h('h3', {}, t('devices.new')),
      h('div', { class: 'row' }, h('div', { class: 'field' }, h('label', { for: 'dev-name' }, t('devices.name')), name), h('div', { class: 'field' }, h('label', { for: 'dev-kind' }, t('devices.kind')), kind)),
      h('button', { type: 'submit', class: 'primary' }, t('devices.create'))),
    h('div', { class: 'card' }, h('h3', {}, t('devices.existing')),
      h('div', { class: 'field' }, h('label', { for: 'dev-id' }, t('devices.id')), target),
      h('div', { class: 'row' }, h('button', { type: 'button', onclick: act('rotate') }, t('devices.rotate')), h('button', { type: 'button', class: 'danger', onclick: act('revoke') }, t('devices.revoke')))),
    shown,
  );
}
