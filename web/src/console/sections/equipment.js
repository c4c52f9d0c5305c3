// Equipment with live health: the list is read once, then the branch's event stream
// (SSE through the gateway) updates rows as monitoring records changes; open faults can
// be acknowledged, maintenance windows planned, heartbeat tokens rotated.
import { h, clear, formatTime } from '../../shared/dom.js';
import { t, lang } from '../../shared/i18n.js';
import { explain } from '../../shared/api.js';
import { sse } from '../../shared/live.js';

export async function equipment(ctx, el) {
  const base = '/api/monitoring/v1';
  const branch = encodeURIComponent(ctx.branch);
  const liveState = h('span', { class: 'live-state badge unknown', id: 'live-state', role: 'status' }, t('live.connecting'));
  const faultsBox = h('div', { id: 'faults' });
  const tbody = h('tbody', { id: 'equipment-rows' });
  const rows = new Map();
  const maintenanceBox = h('div', { id: 'maintenance' });

  function badge(health) {
    return h('span', { class: `badge ${health}`, dataset: { health } }, t(`health.${health}`));
  }

  function paintRow(item) {
    const row = rows.get(item.device_id) || h('tr', { id: `device-${item.device_id}` });
    rows.set(item.device_id, row);
    clear(row,
      h('td', {}, item.name || item.device_id, h('div', { class: 'muted' }, item.device_id)),
      h('td', {}, item.kind),
      h('td', { class: 'health' }, badge(item.health)),
      h('td', {}, item.health_reason || ''),
      h('td', {}, formatTime(item.health_since, lang())),
      h('td', {}, h('button', { type: 'button', onclick: () => planMaintenance(item), 'aria-label': `${t('equipment.maintenance')} ${item.name || item.device_id}` }, t('equipment.maintenance'))));
    return row;
  }

  async function loadFaults() {
    const faults = await ctx.api.get(`${base}/faults?branch_id=${branch}&open=true`);
    clear(faultsBox, faults.length
      ? h('ul', { class: 'faults' }, faults.map((fault) => h('li', { id: `fault-${fault.fault_id}` },
          h('span', { class: 'badge down' }, fault.criticality), ' ', fault.device_id, ' — ', fault.reason, ' ',
          h('span', { class: 'muted' }, formatTime(fault.opened_at, lang())), ' ',
          fault.acknowledged_at
            ? h('span', { class: 'badge ok' }, t('fault.acked'))
            : h('button', { type: 'button', class: 'primary', dataset: { ack: fault.device_id }, onclick: async (event) => {
                event.target.disabled = true;
                try {
                  await ctx.api.post(`${base}/faults/${fault.fault_id}/ack`);
                  ctx.say(t('fault.acked'));
                  await loadFaults();
                } catch (error) {
                  ctx.say(explain(error, t), 'error');
                  event.target.disabled = false;
                }
              } }, t('fault.ack')))))
      : h('p', { class: 'muted' }, t('fault.none')));
  }

  function planMaintenance(item) {
    const now = new Date(Date.now() + 60_000);
    const local = (date) => new Date(date.getTime() - date.getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
    const starts = h('input', { type: 'datetime-local', id: 'mw-start', value: local(now), required: true });
    const ends = h('input', { type: 'datetime-local', id: 'mw-end', value: local(new Date(now.getTime() + 3_600_000)), required: true });
    const reason = h('input', { id: 'mw-reason', required: true, maxlength: 200 });
    clear(maintenanceBox, h('form', { class: 'card', onsubmit: async (event) => {
      event.preventDefault();
      try {
        await ctx.api.post(`${base}/equipment/${encodeURIComponent(item.device_id)}/maintenance`, {
          starts_at: new Date(starts.value).toISOString(), ends_at: new Date(ends.value).toISOString(), reason: reason.value,
        });
        ctx.say(t('saved'));
        clear(maintenanceBox);
      } catch (error) {
        ctx.say(explain(error, t), 'error');
      }
    } },
    h('h3', {}, `${t('equipment.maintenance')}: ${item.name || item.device_id}`),
    h('div', { class: 'row' },
      h('div', { class: 'field' }, h('label', { for: 'mw-start' }, t('mw.start')), starts),
      h('div', { class: 'field' }, h('label', { for: 'mw-end' }, t('mw.end')), ends),
      h('div', { class: 'field' }, h('label', { for: 'mw-reason' }, t('mw.reason')), reason)),
    h('div', { class: 'row' }, h('button', { type: 'submit', class: 'primary' }, t('save')), h('button', { type: 'button', onclick: () => clear(maintenanceBox) }, t('cancel')))));
    starts.focus();
  }

  async function loadAll() {
    const items = await ctx.api.get(`${base}/branches/${branch}/equipment`);
    clear(tbody, items.map(paintRow));
    await loadFaults();
  }

  el.append(
    h('div', { class: 'row' }, h('h3', {}, t('fault.open')), h('div', { class: 'spacer' }), liveState),
    faultsBox,
    maintenanceBox,
    h('table', {},
      h('thead', {}, h('tr', {}, ['equipment.name', 'equipment.kind', 'equipment.health', 'equipment.reason', 'equipment.since', 'equipment.actions'].map((key) => h('th', { scope: 'col' }, t(key))))),
      tbody),
  );
  await loadAll();
  let faultsTimer = null;
  const stream = sse(ctx.api, `${base}/stream?branch_id=${branch}`, {
    onEvent: (type, change) => {
      if (type !== 'equipment') return;
      const row = rows.get(change.device_id);
      const cell = row?.querySelector('.health');
      if (cell) clear(cell, badge(change.health));
      const reasonCell = row?.children[3];
      if (reasonCell && change.reason !== undefined) reasonCell.textContent = change.reason;
      // A change may open or close a fault: re-read them, once per burst of changes.
      clearTimeout(faultsTimer);
      faultsTimer = setTimeout(() => loadFaults().catch(() => {}), 200);
    },
    onState: (state) => {
      liveState.className = `live-state badge ${state === 'open' ? 'ok' : 'warn'}`;
      liveState.dataset.state = state;
      liveState.textContent = t(`live.${state}`);
    },
    onResync: () => loadAll().catch(() => {}),
  });
  return () => {
    clearTimeout(faultsTimer);
    stream.close();
  };
}
