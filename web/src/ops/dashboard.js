// Sections of the dashboard (#overview, #faults, #access, #platform, #bus) over one Layout.
import { h, clear, config, formatTime } from '../shared/dom.js';
import { t, lang, onLangChange } from '../shared/i18n.js';
import { explain } from '../shared/api.js';
import { Layout } from '../shared/layout.js';
import { sse } from '../shared/live.js';
import { createMap } from '../shared/map.js';
import { timeChart } from '../shared/chart.js';
import { busSection } from './bus.js';

const MONITORING = '/api/monitoring/v1';
const ACCESS = '/api/access/v1';
const ACCESS_POLL_S = 2;
const BREAKER_POLL_S = 2;

export class Dashboard {
  constructor(root, api, claims) {
    this.root = root;
    this.api = api;
    this.claims = claims;
    this.cleanup = [];
  }

  mount() {
    this.sections = { overview: () => this.overview(), faults: () => this.faults(), access: () => this.access(), platform: () => this.platform(), bus: () => busSection(this) };
    this.layout = new Layout(this.root, {
      titleKey: 'ops.title',
      sections: Object.keys(this.sections),
      onLogout: async () => {
        await this.api.logout();
        location.hash = '';
        location.reload();
      },
    });
    this.layout.userLine.textContent = 'operator';
    window.addEventListener('hashchange', () => this.render());
    onLangChange(() => this.render());
    this.render();
  }

  later(fn) {
    this.cleanup.push(fn);
  }

  every(seconds, fn) {
    const timer = setInterval(fn, seconds * 1000);
    this.later(() => clearInterval(timer));
    return fn();
  }

  render() {
    for (const fn of this.cleanup.splice(0)) fn();
    const names = Object.keys(this.sections);
    const id = names.includes(location.hash.slice(1)) ? location.hash.slice(1) : names[0];
    this.layout.paint();
    this.layout.say('');
    this.body = h('section', { id: `section-${id}`, 'aria-labelledby': 'section-title' });
    clear(this.layout.main, h('h2', { id: 'section-title' }, t(`section.${id}`)), this.body);
    Promise.resolve(this.sections[id]()).catch((error) => this.layout.say(explain(error, t), 'error'));
  }

  // -- branches: map, list, live equipment, open faults -------------------------------
  async overview() {
    const mapEl = h('div', { class: 'map', id: 'branch-map', role: 'region', 'aria-label': t('ops.map') });
    const list = h('tbody', { id: 'branch-rows' });
    const faultsBox = h('div', { id: 'open-faults' });
    const liveState = h('span', { class: 'badge unknown', id: 'live-state', role: 'status' }, t('live.connecting'));
    this.body.append(h('div', { class: 'ops-grid' },
      h('div', {}, mapEl),
      h('div', { class: 'card' }, h('div', { class: 'row' }, h('h3', {}, t('ops.open_faults')), h('div', { class: 'spacer' }), liveState), faultsBox)),
      h('h3', {}, t('ops.list')),
      h('table', {}, h('thead', {}, h('tr', {}, ['ops.branch', 'ops.equipment', 'ops.faulty', 'ops.status'].map((key) => h('th', { scope: 'col' }, t(key))))), list));
    const profiles = await this.api.get('/api/branch-owner/v1/branches');
    const devices = new Map(); // device_id -> {branch_id, health}
    const ids = new Set(profiles.map((item) => item.branch_id));
    for (const branch of this.claims.branches || []) ids.add(branch);
    try {
      for (const gate of await this.api.get(`${ACCESS}/gates`)) ids.add(gate.branch_id);
    } catch {
      /* access down: the branches with profiles still show */
    }
    await Promise.all([...ids].map(async (branch) => {
      try {
        for (const item of await this.api.get(`${MONITORING}/branches/${encodeURIComponent(branch)}/equipment`)) devices.set(item.device_id, { branch_id: branch, health: item.health });
      } catch {
        /* a branch without equipment */
      }
    }));
    const faults = async () => {
      const open = await this.api.get(`${MONITORING}/faults?open=true`);
      for (const fault of open) ids.add(fault.branch_id);
      clear(faultsBox, open.length ? h('ul', { class: 'faults' }, open.map((fault) => h('li', { id: `fault-${fault.fault_id}` },
        h('span', { class: 'badge down' }, fault.criticality), ' ', h('strong', {}, fault.branch_id), ' · ', fault.device_id, ' — ', fault.reason, ' ',
        fault.escalated_at ? h('span', { class: 'badge bad' }, t('ops.escalated')) : null, ' ',
        fault.acknowledged_at ? h('span', { class: 'badge ok' }, t('ops.acked')) : h('button', { type: 'button', dataset: { ack: fault.device_id }, onclick: async (event) => {
          event.target.disabled = true;
          try {
            await this.api.post(`${MONITORING}/faults/${fault.fault_id}/ack`);
            await faults();
          } catch (error) {
            this.layout.say(explain(error, t), 'error');
          }
        } }, t('ops.ack'))))) : h('p', { class: 'muted' }, t('ops.no_faults')));
    };
    const cfg = config();
    const map = createMap(mapEl, { tileUrl: cfg.tileUrl || '' });
    const paint = () => {
      const byBranch = new Map([...ids].map((id) => [id, { total: 0, faulty: 0 }]));
      for (const device of devices.values()) {
        const entry = byBranch.get(device.branch_id) || { total: 0, faulty: 0 };
        entry.total += 1;
        if (device.health === 'faulty') entry.faulty += 1;
        byBranch.set(device.branch_id, entry);
      }
      const profileOf = Object.fromEntries(profiles.map((item) => [item.branch_id, item]));
      const status = (entry) => (entry.faulty ? 'down' : entry.total ? 'ok' : 'unknown');
      clear(list, [...byBranch.entries()].sort().map(([id, entry]) => h('tr', { id: `branch-${id}`, dataset: { status: status(entry) } },
        h('td', {}, profileOf[id]?.name || id, h('div', { class: 'muted' }, id)), h('td', {}, entry.total), h('td', { class: 'faulty-count' }, entry.faulty),
        h('td', {}, h('span', { class: `badge ${status(entry)}` }, t(`health.${entry.faulty ? 'faulty' : entry.total ? 'ok' : 'unknown'}`))))));
      map.setMarkers(profiles.map((item) => ({ id: item.branch_id, lat: item.lat, lon: item.lon, label: item.name, status: status(byBranch.get(item.branch_id) || { total: 0, faulty: 0 }) })));
    };
    await faults();
    paint();
    let timer = null;
    const stream = sse(this.api, `${MONITORING}/stream`, {
      onEvent: (type, change) => {
        if (type !== 'equipment') return;
        devices.set(change.device_id, { branch_id: change.branch_id, health: change.health });
        ids.add(change.branch_id);
        paint();
        // Recorded change -> on screen (same machine's clock in tests and benchmarks).
        document.body.dataset.lastChange = `${change.device_id}:${change.health}`;
        document.body.dataset.lastChangeLagMs = String(Date.now() - Date.parse(change.at));
        clearTimeout(timer);
        timer = setTimeout(() => faults().catch(() => {}), 200);
      },
      onState: (state) => {
        liveState.className = `badge ${state === 'open' ? 'ok' : 'warn'}`;
        liveState.dataset.state = state;
        liveState.textContent = t(`live.${state}`);
      },
      onResync: () => faults().catch(() => {}),
    });
    this.later(() => {
      clearTimeout(timer);
      stream.close();
      map.map.remove();
    });
  }

  // -- faults: timeline and per-day chart ------------------------------------------------
  async faults() {
    const all = await this.api.get(`${MONITORING}/faults?open=false&limit=1000`);
    const chartEl = h('div', { class: 'chart card', id: 'faults-chart', role: 'img', 'aria-label': t('ops.faults_per_day') });
    const days = 14;
    const start = new Date();
    start.setHours(0, 0, 0, 0);
    const x = [];
    const counts = [];
    for (let index = days - 1; index >= 0; index -= 1) {
      const day = new Date(start.getTime() - index * 86_400_000);
      x.push(day.getTime() / 1000);
      counts.push(all.filter((fault) => {
        const opened = new Date(fault.opened_at).getTime();
        return opened >= day.getTime() && opened < day.getTime() + 86_400_000;
      }).length);
    }
    this.body.append(h('h3', {}, t('ops.faults_per_day')), chartEl, h('h3', {}, t('ops.timeline')),
      h('ol', { class: 'timeline', id: 'fault-timeline' }, all.slice(0, 100).map((fault) => h('li', { class: fault.closed_at ? 'closed' : 'open' },
        h('strong', {}, `${fault.branch_id} · ${fault.device_id}`), ' — ', fault.reason, h('br'),
        h('span', { class: 'muted' }, `${t('ops.opened')} ${formatTime(fault.opened_at, lang())} · ${fault.closed_at ? `${t('ops.closed')} ${formatTime(fault.closed_at, lang())}` : t('ops.still_open')}`)))));
    const chart = timeChart(chartEl, { x, series: [{ label: t('ops.faults_per_day'), values: counts, colour: '#b42318' }], bars: true });
    this.later(() => chart.destroy());
  }

  // -- access: live events and hourly charts ---------------------------------------------
  async access() {
    const rows = h('tbody', { id: 'access-rows' });
    const entriesEl = h('div', { class: 'chart card', id: 'entries-chart', role: 'img', 'aria-label': t('ops.entries_per_hour') });
    const latencyEl = h('div', { class: 'chart card', id: 'latency-chart', role: 'img', 'aria-label': t('ops.latency_p95') });
    this.body.append(
      h('div', { class: 'grid' }, h('div', {}, h('h3', {}, t('ops.entries_per_hour')), entriesEl), h('div', {}, h('h3', {}, t('ops.latency_p95')), latencyEl)),
      h('div', { class: 'row' }, h('h3', {}, t('ops.live_access')), h('span', { class: 'badge ok' }, t('ops.live_every', { s: ACCESS_POLL_S }))),
      h('table', {}, h('thead', {}, h('tr', {}, ['ops.time', 'ops.branch', 'ops.gate', 'ops.method', 'ops.outcome', 'ops.latency'].map((key) => h('th', { scope: 'col' }, t(key))))), rows));
    const since = new Date(Date.now() - 24 * 3_600_000);
    since.setMinutes(0, 0, 0);
    const hours = Array.from({ length: 25 }, (_, index) => since.getTime() / 1000 + index * 3600);
    const bucket = (items, pick) => hours.map((start) => pick(items.filter((item) => {
      const at = new Date(item.decided_at).getTime() / 1000;
      return at >= start && at < start + 3600;
    })));
    const p95 = (values) => {
      if (!values.length) return null;
      const sorted = [...values].sort((a, b) => a - b);
      return sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.95) - 1)];
    };
    let entries = null;
    let latency = null;
    let newest = 0;
    const refresh = async () => {
      const page = await this.api.get(`${ACCESS}/access-log?since=${encodeURIComponent(since.toISOString())}&limit=500`);
      const items = page.items;
      const granted = bucket(items, (list) => list.filter((item) => item.outcome === 'granted').length);
      const slow = bucket(items, (list) => p95(list.filter((item) => item.method === 'face').map((item) => item.latency_ms)));
      if (!entries) {
        entries = timeChart(entriesEl, { x: hours, series: [{ label: t('ops.entries_per_hour'), values: granted, colour: '#1a7f37' }], bars: true });
        latency = timeChart(latencyEl, { x: hours, series: [{ label: 'p95 ms', values: slow, colour: '#0550ae' }] });
      } else {
        entries.update(hours, [granted]);
        latency.update(hours, [slow]);
      }
      const fresh = items.filter((item) => item.id > newest);
      if (fresh.length) {
        newest = Math.max(...items.map((item) => item.id));
        clear(rows, items.slice(0, 50).map((item) => h('tr', { id: `attempt-${item.id}` },
          h('td', {}, formatTime(item.decided_at, lang())), h('td', {}, item.branch_id), h('td', {}, item.gate_id), h('td', {}, item.method),
          h('td', {}, h('span', { class: `badge ${item.outcome}` }, item.outcome), ' ', h('span', { class: 'muted' }, item.reason)),
          h('td', {}, `${Math.round(item.latency_ms)} ms`))));
      }
    };
    this.later(() => {
      entries?.destroy();
      latency?.destroy();
    });
    await this.every(ACCESS_POLL_S, () => refresh().catch((error) => this.layout.say(explain(error, t), 'error')));
  }

  // -- platform: breakers and model versions ----------------------------------------------
  async platform() {
    const rows = h('tbody', { id: 'breaker-rows' });
    const models = h('div', { id: 'models' });
    this.body.append(
      h('h3', {}, t('ops.breakers')),
      h('table', {}, h('thead', {}, h('tr', {}, ['ops.service', 'ops.state', 'ops.failures', 'ops.instances'].map((key) => h('th', { scope: 'col' }, t(key))))), rows),
      models);
    const refresh = async () => {
      const pools = await this.api.get('/admin/breakers');
      clear(rows, pools.map((pool) => h('tr', { id: `breaker-${pool.name}`, dataset: { state: pool.state } },
        h('td', {}, pool.name),
        h('td', {}, h('span', { class: `badge ${pool.state}` }, t(`breaker.${pool.state}`)), pool.retry_after_s ? h('span', { class: 'muted' }, ` ${t('ops.retry_in', { s: Math.ceil(pool.retry_after_s) })}`) : null),
        h('td', {}, pool.failures),
        h('td', {}, pool.instances.map((instance) => h('div', {}, instance.url, ' ', h('span', { class: `badge ${instance.ejected ? 'down' : 'ok'}` }, instance.ejected ? t('ops.ejected') : t('ops.healthy'))))))));
    };
    // The model registry: its panel shows only where /api/mlops answers (an operator's token).
    this.api.get('/api/mlops/v1/models').then((versions) => {
      const rollback = (family) =>
        this.api
          .post(`/api/mlops/v1/models/${family}/rollback`, { reason: 'operations dashboard' })
          .then((deployment) => {
            this.render();
            this.layout.say(t('ops.rolled_back', { family, version: deployment.version }));
          })
          .catch((error) => this.layout.say(explain(error, t), 'error'));
      const families = [...new Set(versions.map((item) => item.family))];
      clear(models, h('h3', {}, t('ops.models')), h('table', { id: 'model-versions' },
        h('thead', {}, h('tr', {}, ['ops.family', 'ops.version', 'ops.model_status'].map((key) => h('th', { scope: 'col' }, t(key))))),
        h('tbody', {}, versions.map((item) => h('tr', { dataset: { family: item.family, version: item.version, status: item.status } },
          h('td', {}, item.family), h('td', {}, item.version), h('td', {}, h('span', { class: `badge ${item.status === 'deployed' ? 'ok' : 'unknown'}` }, t(`model.${item.status}`))))))),
      families.map((family) => h('button', { type: 'button', id: `model-rollback-${family}`, onclick: () => rollback(family) }, `${t('ops.rollback')} · ${family}`)));
    }).catch(() => clear(models));
    await this.every(BREAKER_POLL_S, () => refresh().catch((error) => this.layout.say(explain(error, t), 'error')));
  }
}
