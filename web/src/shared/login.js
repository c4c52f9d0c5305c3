// The sign-in form of the staff screens. A token whose roles do not fit the screen is
// dropped at once (the gateway would refuse every call anyway).
import { h, clear } from './dom.js';
import { t, onLangChange } from './i18n.js';
import { explain } from './api.js';
import { languageButton } from './layout.js';

export function showLogin(root, api, { roles, onSignedIn, titleKey }) {
  const email = h('input', { id: 'login-email', type: 'email', autocomplete: 'username', required: true });
  const password = h('input', { id: 'login-password', type: 'password', autocomplete: 'current-password', required: true });
  const message = h('p', { class: 'error', role: 'alert', id: 'login-error' });
  const labels = {
    title: h('h1', {}),
    email: h('label', { for: 'login-email' }),
    password: h('label', { for: 'login-password' }),
    submit: h('button', { type: 'submit', class: 'primary', id: 'login-submit' }),
    screen: h('p', { class: 'muted' }),
  };
  const paint = () => {
    labels.title.textContent = t('login.title');
    labels.email.textContent = t('login.email');
    labels.password.textContent = t('login.password');
    labels.submit.textContent = t('login.submit');
    labels.screen.textContent = t(titleKey);
  };
  const form = h(
    'form',
    {
      class: 'card login',
      onsubmit: async (event) => {
        event.preventDefault();
        message.textContent = '';
        labels.submit.disabled = true;
        try {
          await api.login(email.value.trim(), password.value);
          const claims = api.claims() || {};
          if (!(claims.roles || []).some((role) => roles.includes(role))) {
            await api.logout();
            message.textContent = t('login.role');
            return;
          }
          unsubscribe();
          onSignedIn(claims);
        } catch (error) {
          message.textContent = error.reason === 'session' ? t('login.wrong') : explain(error, t);
        } finally {
          labels.submit.disabled = false;
        }
      },
    },
    h('div', { class: 'row' }, labels.title, h('div', { class: 'spacer' }), languageButton()),
    labels.screen,
    h('div', { class: 'field' }, labels.email, email),
    h('div', { class: 'field' }, labels.password, password),
    message,
    labels.submit,
  );
  const unsubscribe = onLangChange(paint);
  paint();
  clear(root, h('main', { class: 'center' }, form));
  email.focus();
}
