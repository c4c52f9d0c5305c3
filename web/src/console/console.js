// The console's frame: the caller's branches, a section per hash (#equipment, …), and the
// branch every section works on. Sections live in sections/*.js; each is a function
// (ctx, el) that renders into el and may return a cleanup (live streams closed on leave).
import { h, clear } from '../shared/dom.js';
import { t, onLangChange } from '../shared/i18n.js';
import { explain } from '../shared/api.js';
import { Layout } from '../shared/layout.js';
import { SECTIONS } from './sections/index.js';

export class Console {
  constructor(root, api, claims) {
    this.root = root;
    this.api = api;
    this.claims = claims;
    this.branches = [];
    this.branch = sessionStorage.getItem('smartgym.console.branch') || null;
    this.cleanup = null;
  }

  async mount() {
    this.layout = new Layout(this.root, {
      titleKey: 'console.title',
      sections: Object.keys(SECTIONS),
      onLogout: async () => {
        await this.api.logout();
        location.hash = '';
        location.reload();
      },
    });
    this.layout.userLine.textContent = (this.claims.roles || []).join(', ');
    await this.loadBranches();
    window.addEventListener('hashchange', () => this.render());
    onLangChange(() => this.render());
    this.render();
  }

  async loadBranches() {
    try {
      const profiles = await this.api.get('/api/branch-owner/v1/branches');
      const ids = new Set([...(this.claims.branches || []), ...profiles.map((item) => item.branch_id)]);
      this.profiles = Object.fromEntries(profiles.map((item) => [item.branch_id, item]));
      this.branches = [...ids].sort();
    } catch (error) {
      this.branches = [...(this.claims.branches || [])];
      this.profiles = {};
      this.layout.say(explain(error, t), 'error');
    }
    if (!this.branches.includes(this.branch)) this.branch = this.branches[0] || null;
  }

  picker() {
    const select = h(
      'select',
      {
        id: 'branch-picker',
        onchange: () => {
          this.branch = select.value;
          sessionStorage.setItem('smartgym.console.branch', this.branch);
          this.render();
        },
      },
      this.branches.map((id) =>
        h('option', { value: id, selected: id === this.branch }, this.profiles[id]?.name ? `${this.profiles[id].name} (${id})` : id),
      ),
    );
    return h('div', { class: 'branch-picker' }, h('label', { for: 'branch-picker' }, t('pick.branch')), select);
  }

  render() {
    this.cleanup?.();
    this.cleanup = null;
    const names = Object.keys(SECTIONS);
    const id = names.includes(location.hash.slice(1)) ? location.hash.slice(1) : names[0];
    this.layout.paint();
    this.layout.say('');
    const body = h('section', { id: `section-${id}`, 'aria-labelledby': 'section-title' });
    clear(this.layout.main, h('div', { class: 'row' }, h('h2', { id: 'section-title' }, t(`section.${id}`)), h('div', { class: 'spacer' }), this.picker()), body);
    if (!this.branch) {
      body.append(h('p', {}, t('none')));
      return;
    }
    const ctx = { api: this.api, branch: this.branch, claims: this.claims, say: (m, k) => this.layout.say(m, k), profiles: this.profiles };
    Promise.resolve(SECTIONS[id](ctx, body))
      .then((cleanup) => {
        this.cleanup = typeof cleanup === 'function' ? cleanup : null;
      })
      .catch((error) => this.layout.say(explain(error, t), 'error'));
  }
}
