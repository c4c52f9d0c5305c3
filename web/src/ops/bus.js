// The event bus: each service's backlog and the parking lot, with a details drawer and
// replay. Polled every few seconds; a table is redrawn only when its data changed, so a
// keyboard user's focus on a button is not pulled away by the refresh.
import { h, clear, formatTime } from '../shared/dom.js';
import { t, lang } from '../shared/i18n.js';
import { ApiError, explain } from '../shared/api.js';

const BUS = '/api/monitoring/v1/bus';
export const BUS_POLL_S = 3;

const enc = encodeURIComponent;

function count(value) {
  return value === null || value === undefined ? '—' : String(value);
}

function eventLabel(item) {
  return item.routing_key || item.event_name || t('bus.unknown_event');
}

function pretty(payload) {
  try {
    return JSON.stringify(JSON.parse(payload), null, 2);
  } catch {
    return payload;
  }
}

export async function busSection(dashboard) {
  const { api, layout, body } = dashboard;
  const kind = h('span', { class: 'badge unknown', id: 'bus-kind' });
  const backlogRows = h('tbody', { id: 'backlog-rows' });
  const parkedRows = h('tbody', { id: 'parked-rows' });
  const parkedEmpty = h('p', { class: 'muted', id: 'parked-empty', hidden: true }, t('bus.no_parked'));
  const drawer = h('dialog', { class: 'drawer', id: 'parked-drawer', 'aria-labelledby': 'parked-drawer-title' });
  body.append(
    h('div', { class: 'row' }, h('h3', {}, t('bus.backlog')), kind, h('span', { class: 'badge ok' }, t('ops.live_every', { s: BUS_POLL_S }))),
    h('table', { 'aria-describedby': 'backlog-note' },
      h('thead', {}, h('tr', {}, ['bus.service', 'bus.ready', 'bus.unacked', 'bus.consumers', 'bus.retrying', 'bus.parked', 'bus.actions'].map((key) => h('th', { scope: 'col' }, t(key))))),
      backlogRows),
    h('p', { class: 'muted', id: 'backlog-note' }, t('bus.unacked_note')),
    h('h3', {}, t('bus.parking_lot')),
    h('table', {},
      h('thead', {}, h('tr', {}, ['bus.parked_at', 'bus.service', 'bus.event', 'bus.reason', 'bus.tries', 'bus.actions'].map((key) => h('th', { scope: 'col' }, t(key))))),
      parkedRows),
    parkedEmpty,
    drawer,
  );

  let lastBacklog = '';
  let lastParked = '';
  let latest = 0;

  const replay = async (item, button) => {
    if (button) button.disabled = true;
    const url = `${BUS}/parked/${enc(item.service)}/${enc(item.parked_id)}/replay`;
    try {
      try {
        await api.post(url);
      } catch (error) {
        // 409 for an event older than its service's inbox remembers: the server says why;
        // only the operator knows whether a copy of it was ever applied.
        if (!(error instanceof ApiError && error.refusal === 'older-than-inbox')) throw error;
        if (!window.confirm(t('bus.replay_old_confirm', { detail: error.detail }))) return;
        await api.post(`${url}?older_than_inbox=true`);
      }
      layout.say(t('bus.replayed', { event: eventLabel(item), service: item.service }));
      if (drawer.open) drawer.close();
    } catch (error) {
      layout.say(explain(error, t), 'error');
    } finally {
      if (button) button.disabled = false;
      await refresh().catch(() => {});
    }
  };

  const replayAll = async (service, button) => {
    button.disabled = true;
    try {
      const answer = await api.post(`${BUS}/parked/${enc(service)}/replay`, { limit: 100 });
      const kept = answer.kept_count || 0;
      const said = t('bus.replayed_all', { n: answer.replayed.length, service });
      layout.say(kept ? `${said} ${t('bus.kept_old', { n: kept, service })}` : said);
    } catch (error) {
      layout.say(explain(error, t), 'error');
    } finally {
      button.disabled = false;
      await refresh().catch(() => {});
    }
  };

  const inspect = async (item, opener) => {
    let detail;
    try {
      detail = await api.get(`${BUS}/parked/${enc(item.service)}/${enc(item.parked_id)}`);
    } catch (error) {
      layout.say(explain(error, t), 'error');
      return;
    }
    const facts = [
      ['bus.event', eventLabel(detail)],
      ['bus.event_id', detail.event_id || '—'],
      ['bus.occurred_at', detail.occurred_at ? formatTime(detail.occurred_at, lang()) : '—'],
      ['bus.service', detail.service],
      ['bus.reason', detail.reason],
      ['bus.parked_at', detail.parked_at ? formatTime(detail.parked_at, lang()) : '—'],
      ['bus.attempts', count(detail.attempts)],
      ['bus.replays', String(detail.replays)],
      ['bus.copies', String(detail.copies)],
      ['bus.size', t('bus.bytes', { n: detail.size })],
    ];
    const close = h('button', { type: 'button', class: 'ghost', id: 'drawer-close', onclick: () => drawer.close() }, t('bus.close'));
    clear(drawer,
      h('div', { class: 'row' }, h('h3', { id: 'parked-drawer-title' }, t('bus.details'), ' · ', eventLabel(detail)), h('div', { class: 'spacer' }), close),
      h('dl', { class: 'facts' }, facts.map(([key, value]) => [h('dt', {}, t(key)), h('dd', { dataset: { fact: key.slice(4) } }, value)])),
      Object.keys(detail.headers).length
        ? [h('h4', {}, t('bus.headers')), h('table', { class: 'headers' }, h('tbody', {}, Object.entries(detail.headers).map(([name, value]) => h('tr', {}, h('th', { scope: 'row' }, name), h('td', {}, value)))))]
        : null,
      h('h4', {}, t('bus.payload'), detail.truncated ? h('span', { class: 'muted' }, ` (${t('bus.truncated')})`) : null),
      h('pre', { class: 'payload', id: 'drawer-payload', tabindex: '0', 'aria-label': t('bus.payload') }, pretty(detail.payload)),
      h('div', { class: 'row' },
        h('button', { type: 'button', class: 'primary', id: 'drawer-replay', onclick: (event) => replay(detail, event.target) }, t('bus.replay')),
        h('div', { class: 'spacer' })));
    drawer.onclose = () => opener?.isConnected && opener.focus();
    if (!drawer.open) drawer.showModal();
    close.focus();
  };

  const paintBacklog = (backlog) => {
    kind.textContent = t(`bus.kind.${backlog.kind}`);
    kind.className = `badge ${backlog.services.some((row) => row.parked) ? 'warn' : 'ok'}`;
    const rows = backlog.services.map((row) => h('tr', { id: `backlog-${row.service}`, dataset: { parked: row.parked, ready: row.ready, exists: row.exists } },
      h('th', { scope: 'row' }, row.service, row.exists ? null : h('div', { class: 'muted' }, t('bus.no_queue'))),
      h('td', {}, count(row.ready)),
      h('td', {}, count(row.unacked)),
      h('td', {}, h('span', { class: `badge ${row.consumers ? 'ok' : 'bad'}` }, count(row.consumers))),
      h('td', {}, count(row.retrying)),
      h('td', { class: 'parked-count' }, row.parked ? h('span', { class: 'badge warn' }, String(row.parked)) : '0'),
      h('td', {}, row.parked
        ? h('button', { type: 'button', dataset: { replayAll: row.service }, 'aria-label': t('bus.replay_all_of', { service: row.service }), onclick: (event) => replayAll(row.service, event.target) }, t('bus.replay_all'))
        : null)));
    if (backlog.unrouted !== null && backlog.unrouted !== undefined) {
      rows.push(h('tr', { id: 'backlog-unrouted' }, h('th', { scope: 'row' }, t('bus.unrouted')), h('td', {}, String(backlog.unrouted)), h('td', { colspan: 5 }, h('span', { class: 'muted' }, t('bus.unrouted_note')))));
    }
    clear(backlogRows, rows);
  };

  const paintParked = (items) => {
    parkedEmpty.hidden = items.length > 0;
    clear(parkedRows, items.map((item) => h('tr', { dataset: { service: item.service, parkedId: item.parked_id } },
      h('td', {}, item.parked_at ? formatTime(item.parked_at, lang()) : '—'),
      h('td', {}, item.service),
      h('td', {}, eventLabel(item), item.copies > 1 ? h('span', { class: 'muted' }, ` ×${item.copies}`) : null),
      h('td', { class: 'reason' }, item.reason),
      h('td', {}, t('bus.tries_value', { attempts: count(item.attempts), replays: item.replays })),
      h('td', { class: 'actions' },
        h('button', { type: 'button', class: 'ghost', dataset: { inspect: item.parked_id }, 'aria-label': t('bus.inspect_of', { event: eventLabel(item) }), onclick: (event) => inspect(item, event.target) }, t('bus.inspect')),
        ' ',
        h('button', { type: 'button', dataset: { replay: item.parked_id }, 'aria-label': t('bus.replay_of', { event: eventLabel(item) }), onclick: (event) => replay(item, event.target) }, t('bus.replay'))))));
  };

  const refresh = async () => {
    // A replay refreshes at once while a poll may be in flight: the newest answer wins.
    const mine = ++latest;
    const [backlog, parked] = await Promise.all([api.get(`${BUS}/backlog`), api.get(`${BUS}/parked?limit=200`)]);
    if (mine !== latest) return;
    const backlogKey = JSON.stringify(backlog);
    if (backlogKey !== lastBacklog) {
      lastBacklog = backlogKey;
      paintBacklog(backlog);
    }
    const parkedKey = JSON.stringify(parked);
    if (parkedKey !== lastParked) {
      lastParked = parkedKey;
      paintParked(parked);
    }
  };

  dashboard.later(() => {
    if (drawer.open) drawer.close();
  });
  await dashboard.every(BUS_POLL_S, () => refresh().catch((error) => layout.say(explain(error, t), 'error')));
}
