// Give, pause or end a member's membership at this branch (by member id, as the member
// shows it in the app).
import { h } from '../../shared/dom.js';
import { t } from '../../shared/i18n.js';
import { explain } from '../../shared/api.js';

export async function members(ctx, el) {
  const member = h('input', { id: 'm-member', required: true, pattern: '[0-9a-fA-F-]{36}' });
  const status = h('select', { id: 'm-status' }, ['active', 'paused', 'expired', 'blocked'].map((value) => h('option', { value }, t(`membership.${value}`))));
  const today = new Date().toISOString().slice(0, 10);
  const from = h('input', { id: 'm-from', type: 'date', value: today, required: true });
  const until = h('input', { id: 'm-until', type: 'date', value: `${new Date().getFullYear() + 1}${today.slice(4)}`, required: true });
  const result = h('p', { role: 'status', id: 'm-result' });
  el.append(h('form', { class: 'card', onsubmit: async (event) => {
    event.preventDefault();
    try {
      const saved = await ctx.api.put(`/api/auth/members/${encodeURIComponent(member.value.trim())}/memberships`, {
        branch_id: ctx.branch, status: status.value,
        valid_from: new Date(`${from.value}T00:00:00`).toISOString(), valid_until: new Date(`${until.value}T23:59:59`).toISOString(),
      });
      result.textContent = t('membership.saved', { status: t(`membership.${saved.status}`) });
    } catch (error) {
      result.textContent = explain(error, t);
    }
  } },
  h('div', { class: 'grid' },
    h('div', { class: 'field' }, h('label', { for: 'm-member' }, t('membership.member')), member),
    h('div', { class: 'field' }, h('label', { for: 'm-status' }, t('membership.status')), status),
    h('div', { class: 'field' }, h('label', { for: 'm-from' }, t('membership.from')), from),
    h('div', { class: 'field' }, h('label', { for: 'm-until' }, t('membership.until')), until)),
  h('button', { type: 'submit', class: 'primary' }, t('save')), result));
}
