// Today at the branch: people inside, today's entries granted and refused.
import { h, formatTime } from '../../shared/dom.js';
import { t, lang } from '../../shared/i18n.js';
import { explain } from '../../shared/api.js';

export async function overview(ctx, el) {
  const inside = h('p', { class: 'big', id: 'occupancy' }, '…');
  const entries = h('p', { id: 'entries-today' }, '…');
  el.append(
    h('div', { class: 'grid' },
      h('div', { class: 'card' }, h('h3', {}, t('overview.occupancy')), inside),
      h('div', { class: 'card' }, h('h3', {}, t('overview.entries')), entries)),
  );
  try {
    const occupancy = await ctx.api.get(`/api/access/v1/branches/${encodeURIComponent(ctx.branch)}/occupancy`);
    inside.textContent = occupancy.limit ? `${occupancy.inside} ${t('overview.limit', { limit: occupancy.limit })}` : String(occupancy.inside);
  } catch (error) {
    inside.textContent = explain(error, t);
  }
  try {
    const since = new Date();
    since.setHours(0, 0, 0, 0);
    const page = await ctx.api.get(
      `/api/access/v1/access-log?branch_id=${encodeURIComponent(ctx.branch)}&since=${encodeURIComponent(since.toISOString())}&limit=500`,
    );
    const granted = page.items.filter((item) => item.outcome === 'granted').length;
    entries.textContent = `${t('overview.granted')} ${granted} · ${t('overview.denied')} ${page.items.length - granted}`;
    el.append(h('table', { id: 'entries' },
      h('thead', {}, h('tr', {}, ['overview.time', 'overview.gate', 'overview.method', 'overview.outcome'].map((key) => h('th', { scope: 'col' }, t(key))))),
      h('tbody', {}, page.items.slice(0, 50).map((item) => h('tr', {},
        h('td', {}, formatTime(item.decided_at, lang())),
        h('td', {}, item.gate_id),
        h('td', {}, item.method),
        h('td', {}, h('span', { class: `badge ${item.outcome}` }, item.outcome), ' ', h('span', { class: 'muted' }, item.reason)))))));
  } catch (error) {
    entries.textContent = explain(error, t);
  }
}
