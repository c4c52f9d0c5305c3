// The member's own account: identity check, memberships, and face entry.
import { h, clear, formatTime } from '../shared/dom.js';
import { addDictionary, t, lang } from '../shared/i18n.js';
import { EnrolSection } from './enrol.js';
import { IdentitySection } from './identity.js';
import { words } from './account.words.js';

addDictionary(words);

export class AccountView {
  constructor(root, api) {
    this.root = root;
    this.api = api;
  }

  async mount() {
    const identity = h('div', {});
    this.memberships = h('ul', { id: 'account-memberships', class: 'tasks' });
    const face = h('div', {});
    clear(
      this.root,
      h('section', { class: 'card' }, h('h2', {}, t('account.title')), h('p', { id: 'account-email', class: 'muted' })),
      identity,
      h('section', { class: 'card' }, h('h2', {}, t('account.memberships')), this.memberships),
      face,
    );
    this.enrol = new EnrolSection(face, this.api);
    this.identity = new IdentitySection(identity, this.api, { onVerified: () => this.showMemberships() });
    const [me] = await Promise.all([this.showMemberships(), this.enrol.mount()]);
    this.root.querySelector('#account-email').textContent = me.email || me.phone || '';
    this.identity.show(me);
  }

  // Memberships with what each still needs (an identity check, for some).
  async showMemberships() {
    const [me, list] = await Promise.all([this.api.get('/api/auth/me'), this.api.get('/api/auth/me/memberships')]);
    clear(
      this.memberships,
      (list || []).length
        ? list.map((item) =>
            h(
              'li',
              { class: 'task', dataset: { status: item.status } },
              h('strong', {}, item.branch_id || t('account.allbranches')),
              ` · ${t(`account.status.${item.status}`)} · `,
              t('account.until', { date: formatTime(item.valid_until, lang()) }),
              item.requires_identity && !me.identity_verified_at ? h('p', { class: 'muted needs-identity' }, t('account.needsidentity')) : null,
            ),
          )
        : h('li', { class: 'muted' }, t('pass.none')),
    );
    return me;
  }

  unmount() {
    this.enrol?.unmount();
  }
}
