// Sign-in and sign-up, by email or by phone. The input is checked here first, so a member
// sees what is wrong in their language without a round trip; the server still decides, and
// what it refuses is shown with its own reason.
import { h, clear } from '../shared/dom.js';
import { addDictionary, t } from '../shared/i18n.js';
import { explain } from '../shared/api.js';
import { languageButton } from '../shared/layout.js';
import { words } from './signin.words.js';

addDictionary(words);

const METHOD = 'smartgym.app.signin-by';
const E164 = /^\+[1-9][0-9]{7,14}$/;
const COUNTRY = '82'; // a number written the national way (leading 0) is Korean, as auth reads it

// The same reading of a phone number as auth's (it stores E.164): separators dropped,
// 010-1234-5678 is +821012345678, and "+82 010…" loses its trunk 0.
export function e164(value) {
  const compact = value.trim().replace(/[\s\-.()\u00a0]/g, '');
  if (compact.startsWith(`+${COUNTRY}0`)) return `+${COUNTRY}${compact.slice(COUNTRY.length + 2)}`;
  if (compact.startsWith('0') && !compact.startsWith('00')) return `+${COUNTRY}${compact.slice(1)}`;
  return compact;
}

// Why the form cannot be sent, as a words key and the field at fault (null: it can).
function problem(by, fields, mode) {
  if (by === 'phone') {
    const phone = fields.phone.value.trim();
    if (!phone) return ['auth.phone.missing', fields.phone];
    if (phone.length > 32 || !E164.test(e164(phone))) return ['auth.phone.invalid', fields.phone];
  } else {
    const email = fields.email.value.trim();
    if (!email) return ['auth.email.missing', fields.email];
    // The browser's own reading of an address (type=email), without its bubble.
    if (!fields.email.checkValidity() || !email.includes('.')) return ['auth.email.invalid', fields.email];
  }
  if (!fields.password.value) return ['auth.password.missing', fields.password];
  if (mode === 'signup' && fields.password.value.length < 10) return ['auth.password.short', fields.password];
  return null;
}

// A refusal's words: the cases a member can act on by name, anything else with the
// server's reason (pydantic's "Value error, " prefix is noise to a member).
function refusal(error, by) {
  if (error.taken) return t(`auth.taken.${by}`);
  if (error.status === 401) return t(`auth.wrong.${by}`);
  if (error.reason === 'http' && error.status >= 400 && error.status < 500)
    return t('auth.refused', { detail: String(error.detail || error.status).replace(/Value error, /g, '') });
  return explain(error, t);
}

export function showAuth(root, api, onSignedIn) {
  let mode = 'signin';
  let by = localStorage.getItem(METHOD) === 'phone' ? 'phone' : 'email';
  const fields = {
    email: h('input', { id: 'auth-email', type: 'email', autocomplete: 'username', 'aria-describedby': 'auth-error' }),
    phone: h('input', { id: 'auth-phone', type: 'tel', inputmode: 'tel', autocomplete: 'tel', placeholder: '010-1234-5678', 'aria-describedby': 'auth-error' }),
    password: h('input', { id: 'auth-password', type: 'password', autocomplete: 'current-password', 'aria-describedby': 'auth-error' }),
  };
  const message = h('p', { class: 'error', role: 'alert', id: 'auth-error' });
  const title = h('h1', {});
  const submit = h('button', { type: 'submit', class: 'primary', id: 'auth-submit' });
  const toggle = h('button', {
    type: 'button',
    class: 'ghost',
    id: 'auth-toggle',
    onclick: () => {
      mode = mode === 'signin' ? 'signup' : 'signin';
      message.textContent = '';
      paint();
    },
  });
  const choices = {
    email: h('input', { type: 'radio', name: 'auth-by', id: 'auth-by-email', value: 'email' }),
    phone: h('input', { type: 'radio', name: 'auth-by', id: 'auth-by-phone', value: 'phone' }),
  };
  for (const choice of Object.values(choices)) {
    choice.addEventListener('change', () => {
      by = choice.value;
      localStorage.setItem(METHOD, by);
      message.textContent = '';
      paint();
      fields[by].focus();
    });
  }
  const labels = {
    legend: h('legend', {}),
    email: h('label', { for: 'auth-email' }),
    phone: h('label', { for: 'auth-phone' }),
    password: h('label', { for: 'auth-password' }),
    byEmail: h('label', { for: 'auth-by-email' }),
    byPhone: h('label', { for: 'auth-by-phone' }),
  };
  const rows = {
    email: h('div', { class: 'field' }, labels.email, fields.email),
    phone: h('div', { class: 'field' }, labels.phone, fields.phone),
  };
  const paint = () => {
    title.textContent = t(mode === 'signin' ? 'auth.signin' : 'auth.signup');
    submit.textContent = title.textContent;
    toggle.textContent = t(mode === 'signin' ? 'auth.switch.signup' : 'auth.switch.signin');
    labels.legend.textContent = t('auth.by');
    labels.byEmail.textContent = t('auth.by.email');
    labels.byPhone.textContent = t('auth.by.phone');
    labels.email.textContent = t('auth.email');
    labels.phone.textContent = t('auth.phone');
    labels.password.textContent = t(mode === 'signup' ? 'auth.password.new' : 'auth.password');
    fields.password.autocomplete = mode === 'signup' ? 'new-password' : 'current-password';
    choices.email.checked = by === 'email';
    choices.phone.checked = by === 'phone';
    rows.email.hidden = by !== 'email';
    rows.phone.hidden = by !== 'phone';
  };
  const send = async () => {
    const identifier = by === 'phone' ? { phone: fields.phone.value.trim() } : { email: fields.email.value.trim() };
    const password = fields.password.value;
    if (mode === 'signup') {
      try {
        await api.post('/api/auth/signup', { ...identifier, password });
      } catch (error) {
        if (error.status === 409) throw Object.assign(error, { taken: true });
        throw error;
      }
      message.textContent = t('auth.created');
    }
    await api.login(identifier, password);
  };
  const form = h(
    'form',
    {
      class: 'card login',
      id: 'auth-form',
      // The checks are ours, with words in the member's language, not the browser's bubbles.
      novalidate: true,
      onsubmit: async (event) => {
        event.preventDefault();
        message.textContent = '';
        for (const field of Object.values(fields)) field.removeAttribute('aria-invalid');
        const wrong = problem(by, fields, mode);
        if (wrong) {
          message.textContent = t(wrong[0]);
          wrong[1].setAttribute('aria-invalid', 'true');
          wrong[1].focus();
          return;
        }
        submit.disabled = true;
        try {
          await send();
          onSignedIn();
        } catch (error) {
          message.textContent = refusal(error, by);
        } finally {
          submit.disabled = false;
        }
      },
    },
    h('div', { class: 'row' }, title, h('div', { class: 'spacer' }), languageButton()),
    h(
      'fieldset',
      { class: 'choice' },
      labels.legend,
      h('span', { class: 'option' }, choices.email, labels.byEmail),
      h('span', { class: 'option' }, choices.phone, labels.byPhone),
    ),
    rows.email,
    rows.phone,
    h('div', { class: 'field' }, labels.password, fields.password),
    message,
    submit,
    toggle,
  );
  paint(); // a language change draws the whole screen again (main.js)
  clear(root, h('main', { class: 'center' }, form));
}
