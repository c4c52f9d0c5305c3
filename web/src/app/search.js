// Branch search with a map (overlays drawn with or without tiles) and a branch page with
// its reviews (reviews.js).
import { h, clear, config } from '../shared/dom.js';
import { t } from '../shared/i18n.js';
import { explain } from '../shared/api.js';
import { createMap } from '../shared/map.js';
import { reviewsSection } from './reviews.js';

export class SearchView {
  constructor(root, api) {
    this.root = root;
    this.api = api;
  }

  mount(query = '') {
    const input = h('input', { id: 'search-q', type: 'search', value: query, 'aria-label': t('search.query') });
    const open24 = h('input', { id: 'search-24h', type: 'checkbox' });
    const shower = h('input', { id: 'search-shower', type: 'checkbox' });
    this.results = h('ol', { class: 'results', id: 'search-results', 'aria-live': 'polite' });
    this.summary = h('p', { class: 'muted', id: 'search-summary' });
    const mapEl = h('div', { class: 'map', id: 'search-map', role: 'img', 'aria-label': t('search.title') });
    const form = h(
      'form',
      {
        class: 'card',
        role: 'search',
        onsubmit: (event) => {
          event.preventDefault();
          this.run(input.value.trim(), { open24: open24.checked, shower: shower.checked });
        },
      },
      h('h2', {}, t('search.title')),
      h('div', { class: 'row' }, input, h('button', { type: 'submit', class: 'primary', id: 'search-go' }, t('search.go'))),
      h(
        'div',
        { class: 'row' },
        h('label', {}, open24, ' ', t('search.open24')),
        h('label', {}, shower, ' ', t('search.shower')),
      ),
    );
    clear(this.root, form, mapEl, this.summary, this.results);
    this.map = createMap(mapEl, { tileUrl: config().tileUrl || '' });
    if (query) this.run(query, {});
    else input.focus();
  }

  async run(q, { open24, shower }) {
    const params = new URLSearchParams();
    if (q) params.set('q', q);
    if (open24) params.set('open_24h', 'true');
    if (shower) params.append('facility', 'shower');
    this.summary.textContent = '…';
    try {
      const page = await this.api.get(`/api/search/search?${params}`);
      this.summary.textContent = page.hits.length ? t('search.results', { n: page.total }) : t('search.none');
      clear(
        this.results,
        page.hits.map((hit) =>
          h(
            'li',
            { class: 'card hit' },
            h('a', { href: `#branch/${encodeURIComponent(hit.branch_id)}`, class: 'hit-name' }, hit.name),
            h('p', { class: 'muted' }, hit.address),
            h('p', {}, t('search.rating', { rating: hit.rating.toFixed(1), n: hit.review_count })),
            hit.monthly_price_krw ? h('p', {}, t('search.price', { price: hit.monthly_price_krw.toLocaleString() })) : null,
          ),
        ),
      );
      this.map.setMarkers(
        page.hits.map((hit) => ({ id: hit.branch_id, lat: hit.lat, lon: hit.lon, label: hit.name, status: 'ok' })),
        { onSelect: (point) => (location.hash = `branch/${encodeURIComponent(point.id)}`) },
      );
    } catch (error) {
      this.summary.textContent = explain(error, t);
    }
  }
}

export async function showBranch(root, api, branchId) {
  const back = h('a', { href: '#search', id: 'branch-back' }, t('branch.back'));
  const section = h('section', { class: 'card', id: 'branch' }, back, h('p', {}, '…'));
  clear(root, section);
  try {
    const branch = await api.get(`/api/search/branches/${encodeURIComponent(branchId)}`);
    clear(
      section,
      back,
      h('h2', { id: 'branch-name' }, branch.name),
      h('p', { class: 'muted' }, branch.address || ''),
      h('p', {}, (branch.facilities || []).join(' · ')),
      reviewsSection(api, branchId),
    );
  } catch (error) {
    clear(section, back, h('p', { role: 'alert' }, explain(error, t)));
  }
}
