// The branch's gates: line state, remote open (audited, with a reason) and the
// anti-passback reset for a member who left without badging out.
import { h, clear } from '../../shared/dom.js';
import { t } from '../../shared/i18n.js';
import { explain } from '../../shared/api.js';

export async function gates(ctx, el) {
  const all = await ctx.api.get('/api/access/v1/gates');
  const mine = all.filter((gate) => gate.branch_id === ctx.branch);
  const result = h('p', { id: 'gate-result', role: 'status' });
  const reasonFor = (id) => h('input', { id, required: true, minlength: 3, maxlength: 300, placeholder: t('gate.reason.hint') });
  el.append(
    h('table', {},
      h('thead', {}, h('tr', {}, ['gate.id', 'gate.direction', 'gate.line', 'gate.open'].map((key) => h('th', { scope: 'col' }, t(key))))),
      h('tbody', {}, mine.map((gate) => {
        const reason = reasonFor(`open-reason-${gate.gate_id}`);
        return h('tr', { id: `gate-${gate.gate_id}` },
          h('td', {}, gate.gate_id),
          h('td', {}, t(`gate.dir.${gate.direction}`)),
          h('td', {}, h('span', { class: `badge ${gate.line === 'up' ? 'ok' : 'down'}` }, gate.line), ' ', h('span', { class: 'muted' }, gate.line_detail)),
          h('td', {}, h('form', { class: 'row', onsubmit: async (event) => {
            event.preventDefault();
            try {
              const decision = await ctx.api.post(`/api/access/v1/gates/${encodeURIComponent(gate.gate_id)}/open`, { reason: reason.value }, { headers: { 'idempotency-key': crypto.randomUUID() } });
              result.textContent = t('gate.opened', { gate: gate.gate_id, result: decision.gate_result });
            } catch (error) {
              result.textContent = explain(error, t);
            }
          } }, h('label', { for: reason.id, class: 'sr-only' }, t('gate.reason')), reason, h('button', { type: 'submit', class: 'primary' }, t('gate.open')))));
      }))),
    result,
  );
  const member = h('input', { id: 'passback-member', required: true, pattern: '[0-9a-fA-F-]{36}' });
  const why = reasonFor('passback-reason');
  el.append(h('form', { class: 'card', onsubmit: async (event) => {
    event.preventDefault();
    try {
      const answer = await ctx.api.post(`/api/access/v1/branches/${encodeURIComponent(ctx.branch)}/members/${encodeURIComponent(member.value.trim())}/passback-reset`, { reason: why.value });
      result.textContent = answer.was_inside ? t('passback.done') : t('passback.not_inside');
    } catch (error) {
      result.textContent = explain(error, t);
    }
  } },
  h('h3', {}, t('passback.title')),
  h('div', { class: 'row' },
    h('div', { class: 'field' }, h('label', { for: 'passback-member' }, t('passback.member')), member),
    h('div', { class: 'field' }, h('label', { for: 'passback-reason' }, t('gate.reason')), why)),
  h('button', { type: 'submit' }, t('passback.reset'))));
  if (!mine.length) el.prepend(h('p', { class: 'muted' }, t('none')));
  return () => clear(el);
}
