// Payouts of the helpers who work at this branch. The owner signs off on requests
// (approve or reject, with a note the helper sees); head office pays approved ones. Beside
// each request: what the helper earned at this branch, the owner's basis for signing.
import { h, clear, formatTime } from '../../shared/dom.js';
import { t, lang } from '../../shared/i18n.js';
import { explain } from '../../shared/api.js';

const STATUSES = ['requested', 'approved', 'paid', 'rejected'];

export async function payouts(ctx, el) {
  const base = `/api/helper/v1/branches/${encodeURIComponent(ctx.branch)}/payouts`;
  const operator = (ctx.claims.roles || []).includes('operator');
  const won = (amount) => `${Number(amount).toLocaleString(lang() === 'ko' ? 'ko-KR' : 'en-GB')} ₩`;
  const filter = h('select', { id: 'payout-status', onchange: () => load() }, STATUSES.map((value) => h('option', { value }, t(`payout.${value}`))));
  const list = h('div', { id: 'payout-list' });

  async function move(row, status, note) {
    try {
      await ctx.api.post(`${base}/${encodeURIComponent(row.id)}/status`, { status, note: note || null });
      ctx.say(t('payout.moved', { amount: won(row.amount_krw), status: t(`payout.${status}`) }));
    } catch (error) {
      ctx.say(explain(error, t), 'error');
    }
    await load();
  }

  async function load() {
    const rows = await ctx.api.get(`${base}?status=${filter.value}`);
    if (!rows.length) {
      clear(list, h('p', { class: 'muted', id: 'payouts-empty' }, t('payout.empty')));
      return;
    }
    clear(list, h('table', {},
      h('caption', { class: 'muted' }, t(`payout.${filter.value}`)),
      h('thead', {}, h('tr', {}, ['payout.helper', 'payout.amount', 'payout.earned_here', 'payout.requested_at', 'payout.note', 'payout.actions'].map((key) => h('th', { scope: 'col' }, t(key))))),
      h('tbody', {}, rows.map((row) => {
        const note = h('input', { id: `note-${row.id}`, maxlength: 200, value: row.note || '', 'aria-label': t('payout.note_for', { amount: won(row.amount_krw) }) });
        const actions = [];
        if (row.status === 'requested') {
          actions.push(
            h('button', { type: 'button', class: 'primary approve', onclick: () => move(row, 'approved', note.value.trim()) }, t('payout.approve')),
            h('button', { type: 'button', class: 'danger reject', onclick: () => move(row, 'rejected', note.value.trim()) }, t('payout.reject')));
        } else if (row.status === 'approved' && operator) {
          actions.push(h('button', { type: 'button', class: 'primary pay', onclick: () => move(row, 'paid', note.value.trim()) }, t('payout.pay')));
        } else if (row.status === 'approved') {
          actions.push(h('span', { class: 'muted' }, t('payout.head_office')));
        }
        return h('tr', { id: `payout-${row.id}`, dataset: { status: row.status } },
          h('th', { scope: 'row' }, h('code', {}, row.helper_id.slice(0, 8))),
          h('td', {}, won(row.amount_krw)),
          h('td', {}, won(row.earned_here_krw)),
          h('td', {}, formatTime(row.requested_at, lang())),
          h('td', {}, row.status === 'requested' ? note : row.note || ''),
          h('td', {}, h('div', { class: 'row' }, actions)));
      }))));
  }

  el.append(
    h('p', { class: 'muted' }, t('payout.help')),
    h('div', { class: 'row' }, h('label', { for: 'payout-status' }, t('payout.show')), filter),
    h('div', { class: 'card' }, list),
  );
  await load();
}
