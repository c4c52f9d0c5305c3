// Run history: the list, personal records, the step ranking among friends, importing a
// GPX/TCX/FIT file and, per run, the track on the map, splits, pace and elevation charts,
// heart-rate zones and a GPX export. Loaded on demand (the charts' library stays out of
// the shell).
import uPlot from 'uplot';
import { h, clear, config, formatTime } from '../shared/dom.js';
import { addDictionary, t, lang } from '../shared/i18n.js';
import { explain } from '../shared/api.js';
import { createMap } from '../shared/map.js';
import { profileSection } from './profile.js';
import { words } from './history.words.js';

addDictionary(words);

const RUNNING = '/api/running/v1';
const ZONE_COLOURS = ['#8c959f', '#0969da', '#1a7f37', '#9a6700', '#cf222e'];

export function pace(secondsPerKm) {
  if (!secondsPerKm || !Number.isFinite(secondsPerKm)) return '–';
  const whole = Math.round(secondsPerKm);
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, '0')}`;
}

export function duration(seconds) {
  const whole = Math.round(seconds || 0);
  const hours = Math.floor(whole / 3600);
  const rest = `${String(Math.floor((whole % 3600) / 60)).padStart(hours ? 2 : 1, '0')}:${String(whole % 60).padStart(2, '0')}`;
  return hours ? `${hours}:${rest}` : rest;
}

const km = (metres) => (metres / 1000).toFixed(2);

// A line over distance (not time), sized to its box; the figure carries a text summary
// for screen readers, as a canvas says nothing.
function distanceChart(el, { x, values, label, colour, invert = false }) {
  const width = Math.max(280, el.clientWidth || 480);
  const plot = new uPlot(
    {
      width,
      height: 180,
      legend: { show: false },
      scales: { x: { time: false }, y: invert ? { dir: -1 } : {} },
      series: [{}, { label, stroke: colour, width: 2, points: { show: false } }],
      axes: [{ label: 'km' }, { size: 56, values: invert ? (_, ticks) => ticks.map(pace) : undefined }],
    },
    [x, values],
    el,
  );
  const resize = new ResizeObserver(() => plot.setSize({ width: Math.max(280, el.clientWidth), height: 180 }));
  resize.observe(el);
  return () => {
    resize.disconnect();
    plot.destroy();
  };
}

export class HistoryView {
  constructor(root, api) {
    this.root = root;
    this.api = api;
    this.cleanups = [];
  }

  unmount() {
    for (const cleanup of this.cleanups.splice(0)) cleanup();
  }

  async mount(runId) {
    if (runId) await this.showRun(runId);
    else await this.showList();
  }

  // -- the list -----------------------------------------------------------------------------

  async showList() {
    const status = h('p', { role: 'status', id: 'history-status', 'aria-live': 'polite' });
    const file = h('input', { id: 'history-file', type: 'file', accept: '.gpx,.tcx,.fit,application/gpx+xml' });
    const importForm = h(
      'form',
      {
        class: 'card',
        onsubmit: async (event) => {
          event.preventDefault();
          if (!file.files[0]) {
            status.textContent = t('history.pick');
            return;
          }
          status.textContent = '…';
          try {
            const run = await this.api.request('POST', `${RUNNING}/runs/import`, {
              body: file.files[0],
              headers: { 'content-type': 'application/octet-stream' },
            });
            location.hash = `history/${run.run_id}`;
          } catch (error) {
            status.textContent = error.status === 422 ? t('history.refused', { reason: error.detail }) : explain(error, t);
          }
        },
      },
      h('h2', {}, t('history.import')),
      h('div', { class: 'field' }, h('label', { for: 'history-file' }, t('history.file')), file),
      h('button', { type: 'submit', class: 'primary', id: 'history-import' }, t('history.import.go')),
      status,
    );
    const runs = h('ul', { id: 'history-runs', class: 'tasks' });
    const records = h('div', { id: 'history-records' }, '…');
    const ranking = h('ol', { id: 'steps-ranking', class: 'ranking' });
    const periods = ['day', 'week'].map((period) =>
      h('button', { type: 'button', id: `steps-${period}`, 'aria-pressed': String(period === 'day'), onclick: () => this.ranking(ranking, periods, period) }, t(`steps.${period}`)),
    );
    clear(
      this.root,
      h('section', { class: 'card' }, h('h2', {}, t('history.title')), runs),
      h('section', { class: 'card' }, h('h2', {}, t('records.title')), records),
      h('section', { class: 'card' }, h('h2', {}, t('steps.title')), h('div', { class: 'row', role: 'group', 'aria-label': t('steps.period') }, periods), ranking),
      importForm,
      profileSection(this.api),
    );
    await Promise.all([this.runs(runs), this.records(records), this.ranking(ranking, periods, 'day')]);
  }

  async runs(list) {
    try {
      const found = await this.api.get(`${RUNNING}/runs?limit=50`);
      clear(
        list,
        found.length
          ? found.map((run) =>
              h(
                'li',
                { class: 'task', dataset: { id: run.run_id } },
                h('a', { href: `#history/${run.run_id}`, class: 'run-link' }, run.title || t('history.untitled')),
                h('p', { class: 'muted' }, `${formatTime(run.started_at, lang())} · ${km(run.distance_m)} km · ${duration(run.moving_s)} · ${pace(run.distance_m ? run.moving_s / (run.distance_m / 1000) : null)} /km`),
              ),
            )
          : h('li', { class: 'muted' }, t('history.none')),
      );
    } catch (error) {
      clear(list, h('li', { role: 'alert' }, explain(error, t)));
    }
  }

  async records(el) {
    try {
      const found = await this.api.get(`${RUNNING}/records`);
      const efforts = Object.entries(found.best_efforts || {}).sort(([a], [b]) => Number(a) - Number(b));
      clear(
        el,
        h('p', {}, t('records.total', { n: found.runs, km: km(found.total_distance_m || 0) })),
        found.longest ? h('p', {}, h('a', { href: `#history/${found.longest.run_id}` }, t('records.longest', { km: km(found.longest.distance_m) }))) : null,
        efforts.length
          ? h(
              'table',
              { id: 'records-table' },
              h('caption', { class: 'muted' }, t('records.best')),
              h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, t('records.distance')), h('th', { scope: 'col' }, t('records.time')))),
              h(
                'tbody',
                {},
                efforts.map(([distance, effort]) =>
                  h('tr', {}, h('td', {}, `${km(Number(distance))} km`), h('td', {}, h('a', { href: `#history/${effort.run_id}` }, duration(effort.moving_s)))),
                ),
              ),
            )
          : null,
      );
    } catch (error) {
      clear(el, h('p', { role: 'alert' }, explain(error, t)));
    }
  }

  async ranking(list, buttons, period) {
    for (const button of buttons) button.setAttribute('aria-pressed', String(button.id === `steps-${period}`));
    list.dataset.period = period;
    try {
      const rows = await this.api.get(`${RUNNING}/steps/ranking?period=${period}`);
      clear(
        list,
        rows.map((row) =>
          h(
            'li',
            { class: row.me ? 'me' : '', dataset: { rank: row.rank } },
            h('strong', {}, `${row.rank}. ${row.me ? t('steps.me') : row.name || row.user_id.slice(0, 8)}`),
            ` · ${t('steps.count', { n: row.steps.toLocaleString() })}`,
          ),
        ),
      );
    } catch (error) {
      clear(list, h('li', { role: 'alert' }, explain(error, t)));
    }
  }

  // -- one run ------------------------------------------------------------------------------

  async showRun(runId) {
    const back = h('a', { href: '#history', id: 'run-back' }, t('history.back'));
    const section = h('section', { class: 'card', id: 'run' }, back, h('p', {}, '…'));
    clear(this.root, section);
    let run;
    try {
      run = await this.api.get(`${RUNNING}/runs/${encodeURIComponent(runId)}`);
    } catch (error) {
      clear(section, back, h('p', { role: 'alert' }, explain(error, t)));
      return;
    }
    const summary = run.summary || {};
    const status = h('p', { role: 'status', id: 'run-status' });
    const mapEl = h('div', { class: 'map', id: 'run-map', role: 'region', 'aria-label': t('run.map') });
    const paceEl = h('div', { class: 'chart', id: 'run-pace-chart' });
    const elevationEl = h('div', { class: 'chart', id: 'run-elevation-chart' });
    const elevation = summary.elevation || {};
    const exportButton = h('button', { type: 'button', id: 'run-export', onclick: () => this.exportGpx(run, status) }, t('run.export'));
    clear(
      section,
      back,
      h('h2', { id: 'run-title' }, run.title || t('history.untitled')),
      h('p', { class: 'muted' }, formatTime(run.started_at, lang())),
      h(
        'dl',
        { class: 'stats', id: 'run-stats' },
        h('dt', {}, t('run.distance')),
        h('dd', {}, `${km(run.distance_m)} km`),
        h('dt', {}, t('run.time')),
        h('dd', {}, duration(run.moving_s)),
        h('dt', {}, t('run.pace')),
        h('dd', {}, `${pace(summary.avg_pace_s_per_km)} /km`),
        h('dt', {}, t('run.gain')),
        h('dd', {}, elevation.gain_m == null ? '–' : `${Math.round(elevation.gain_m)} m`),
      ),
      mapEl,
      h('div', { class: 'row' }, exportButton),
      status,
      h('h3', {}, t('run.splits')),
      this.splits(summary.splits_s || []),
      h('h3', { id: 'run-pace-title' }, t('run.pacechart')),
      h('figure', { 'aria-labelledby': 'run-pace-title' }, paceEl, h('figcaption', { class: 'muted' }, t('run.pacecaption', { pace: pace(summary.avg_pace_s_per_km) }))),
      h('h3', { id: 'run-elevation-title' }, t('run.elevation')),
      h(
        'figure',
        { 'aria-labelledby': 'run-elevation-title' },
        elevationEl,
        h('figcaption', { class: 'muted' }, elevation.gain_m == null ? t('run.noelevation') : t('run.elevationcaption', { gain: Math.round(elevation.gain_m), loss: Math.round(elevation.loss_m) })),
      ),
      h('h3', {}, t('run.hr')),
      this.zones(summary.heart_rate),
    );
    const map = createMap(mapEl, { tileUrl: config().tileUrl || '' });
    const points = (run.track || []).map(([, lat, lon]) => [lat, lon]);
    if (points.length > 1) map.map.fitBounds(map.track(points).getBounds(), { padding: [20, 20] });
    const chart = summary.pace_chart || [];
    if (chart.length) {
      this.cleanups.push(
        distanceChart(paceEl, {
          x: chart.map((row) => row.distance_m / 1000),
          values: chart.map((row) => row.pace_s_per_km),
          label: t('run.pacechart'),
          colour: '#0550ae',
          invert: true,
        }),
      );
      paceEl.dataset.points = String(chart.length);
    }
    const profile = elevation.profile || [];
    if (profile.length > 1) {
      const step = run.distance_m / 1000 / (profile.length - 1);
      this.cleanups.push(
        distanceChart(elevationEl, { x: profile.map((_, index) => index * step), values: profile, label: t('run.elevation'), colour: '#1a7f37' }),
      );
      elevationEl.dataset.points = String(profile.length);
    }
  }

  splits(splits) {
    if (!splits.length) return h('p', { class: 'muted', id: 'run-splits' }, t('run.nosplits'));
    const fastest = Math.min(...splits);
    return h(
      'table',
      { id: 'run-splits' },
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'km'), h('th', { scope: 'col' }, t('run.pace')))),
      h(
        'tbody',
        {},
        splits.map((seconds, index) =>
          h('tr', { class: seconds === fastest ? 'fastest' : '' }, h('td', {}, String(index + 1)), h('td', {}, `${pace(seconds)} /km`)),
        ),
      ),
    );
  }

  zones(heart) {
    if (!heart) return h('p', { class: 'muted', id: 'run-hr' }, t('run.nohr'));
    const total = heart.zones_s.reduce((sum, value) => sum + value, 0) || 1;
    return h(
      'div',
      { id: 'run-hr' },
      h('p', {}, t('run.hrsummary', { avg: heart.average, max: heart.max, hrmax: heart.max_hr_used })),
      h(
        'ul',
        { class: 'zones' },
        heart.zones_s.map((seconds, index) => {
          const share = Math.round((seconds / total) * 100);
          const bar = h('span', { class: 'zone-bar' });
          // The CSP allows no style attribute; the CSSOM is fine.
          bar.style.width = `${share}%`;
          bar.style.background = ZONE_COLOURS[index];
          return h(
            'li',
            {},
            h('span', { class: 'zone-name' }, t(`run.zone${index + 1}`)),
            h('span', {}, `${duration(seconds)} (${share}%)`),
            h('span', { class: 'zone-track' }, bar),
          );
        }),
      ),
    );
  }

  async exportGpx(run, status) {
    try {
      const response = await this.api.request('GET', `${RUNNING}/runs/${run.run_id}/gpx`, { raw: true });
      const url = URL.createObjectURL(await response.blob());
      const link = h('a', { href: url, download: `run-${run.run_id}.gpx`, hidden: true });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
      status.textContent = t('run.exported');
    } catch (error) {
      status.textContent = explain(error, t);
    }
  }
}
