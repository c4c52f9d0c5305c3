// The member's identity check by card. The card itself never touches the page: the card
// company's reader in the native wrapper (window.SmartGymWrapper.cardToken) turns the card
// into a one-use token, and the page sends that token with the holder's name and birth
// date to auth, which asks the card company and answers at once. A plain browser has no
// card reader: it shows the status and says where the check is done.
//
// States (data-state on #identity): none → pending (card reader open, then the card
// company asked) → verified, or failed with the reason in plain words (and none again,
// to try another card).
import { h, clear, formatTime } from '../shared/dom.js';
import { addDictionary, t, lang } from '../shared/i18n.js';
import { explain } from '../shared/api.js';
import { words } from './identity.words.js';

addDictionary(words);

// The card company's refusals and rejections a member can act on; others are shown by code.
const REASONS = ['name_mismatch', 'card_reported_stolen', 'unknown_card_token', 'card_expired', 'invalid_request'];

function cardReader() {
  const bridge = window.SmartGymWrapper;
  return bridge && typeof bridge.cardToken === 'function' ? bridge : null;
}

function reasonText(code) {
  return REASONS.includes(code) ? t(`identity.reason.${code}`) : t('identity.reason.other', { code });
}

export class IdentitySection {
  constructor(root, api, { onVerified = () => {} } = {}) {
    this.root = root;
    this.api = api;
    this.onVerified = onVerified;
  }

  show(me) {
    this.section = h('section', { class: 'card', id: 'identity', dataset: { state: me.identity_verified_at ? 'verified' : 'none' } });
    this.status = h('p', { id: 'account-identity', role: 'status', 'aria-live': 'polite' });
    this.problem = h('p', { class: 'error', id: 'identity-error', role: 'alert' });
    clear(this.root, this.section);
    clear(this.section, h('h2', {}, t('identity.title')), this.status);
    if (me.identity_verified_at) {
      this.verified(me.identity_verified_at);
      return;
    }
    this.status.textContent = t('identity.none');
    this.status.dataset.verified = 'false';
    if (!cardReader()) {
      this.section.append(h('p', { class: 'muted', id: 'identity-app-only' }, t('identity.apponly')));
      return;
    }
    const name = h('input', { id: 'identity-name', autocomplete: 'name', maxlength: 100, 'aria-describedby': 'identity-error' });
    const birth = h('input', { id: 'identity-birth', type: 'date', autocomplete: 'bday', max: new Date().toISOString().slice(0, 10), 'aria-describedby': 'identity-error' });
    this.start = h('button', { type: 'submit', class: 'primary', id: 'identity-start' }, t('identity.start'));
    this.form = h(
      'form',
      { novalidate: true, onsubmit: (event) => { event.preventDefault(); this.check(name, birth); } },
      h('p', { class: 'muted' }, t('identity.why')),
      h('div', { class: 'field' }, h('label', { for: 'identity-name' }, t('identity.name')), name),
      h('div', { class: 'field' }, h('label', { for: 'identity-birth' }, t('identity.birth')), birth),
      this.start,
    );
    this.section.append(this.form, this.problem);
  }

  verified(at) {
    this.section.dataset.state = 'verified';
    this.status.dataset.verified = 'true';
    this.status.textContent = t('identity.done', { at: formatTime(at, lang()) });
    this.form?.remove();
    this.problem.textContent = '';
  }

  fail(text) {
    this.section.dataset.state = 'failed';
    this.status.textContent = t('identity.failed');
    this.problem.textContent = text;
    this.start.disabled = false;
  }

  // What is wrong with the typed name or birth date (null: nothing), and the field.
  static problem(name, birth) {
    if (!name.value.trim()) return ['identity.name.missing', name];
    if (!birth.value) return ['identity.birth.missing', birth];
    const born = new Date(`${birth.value}T00:00:00`);
    if (Number.isNaN(born.getTime()) || born > new Date() || born.getFullYear() < 1900) return ['identity.birth.invalid', birth];
    return null;
  }

  async check(name, birth) {
    this.problem.textContent = '';
    name.removeAttribute('aria-invalid');
    birth.removeAttribute('aria-invalid');
    const wrong = IdentitySection.problem(name, birth);
    if (wrong) {
      this.problem.textContent = t(wrong[0]);
      wrong[1].setAttribute('aria-invalid', 'true');
      wrong[1].focus();
      return;
    }
    this.start.disabled = true;
    this.section.dataset.state = 'pending';
    this.status.textContent = t('identity.card');
    let token;
    try {
      token = await cardReader().cardToken({ holderName: name.value.trim() });
    } catch (error) {
      this.fail(t('identity.reader', { detail: String(error?.message || error) }));
      return;
    }
    if (typeof token !== 'string' || !token) {
      // The member closed the card reader: nothing was checked, nothing failed.
      this.section.dataset.state = 'none';
      this.status.textContent = t('identity.cancelled');
      this.start.disabled = false;
      return;
    }
    this.status.textContent = t('identity.asking');
    let verdict;
    try {
      verdict = await this.api.post('/api/auth/me/identity-check', {
        card_token: token,
        holder_name: name.value.trim(),
        birth_date: birth.value,
      });
    } catch (error) {
      if (error.reason === 'unavailable') this.fail(t('identity.unavailable', { s: error.retryAfter ?? 30 }));
      else if (error.status === 422 && /card check refused: /.test(error.detail)) this.fail(reasonText(error.detail.split(': ').pop()));
      else if (error.reason === 'http') this.fail(t('identity.refused', { detail: error.detail }));
      else this.fail(explain(error, t));
      return;
    }
    if (!verdict.verified) {
      this.fail(reasonText(verdict.reason || 'other'));
      return;
    }
    // The time of record is auth's, as the account shows it from now on.
    const me = await this.api.get('/api/auth/me').catch(() => null);
    this.verified(me?.identity_verified_at || new Date().toISOString());
    this.onVerified();
  }
}
