// The frame every staff screen shares: a header (title, language switch, sign-out), a
// section navigation, a main region and a status line read out by screen readers.
import { h, clear } from './dom.js';
import { t, lang, setLang, onLangChange } from './i18n.js';

export function languageButton() {
  const button = h('button', {
    type: 'button',
    class: 'ghost',
    id: 'lang-switch',
    onclick: () => setLang(lang() === 'ko' ? 'en' : 'ko'),
  });
  const paint = () => {
    button.textContent = t('lang.switch');
    button.setAttribute('aria-label', t('lang.switch.label'));
  };
  paint();
  onLangChange(paint);
  return button;
}

export class Layout {
  constructor(root, { titleKey, sections, onSection, onLogout }) {
    this.sections = sections;
    this.onSection = onSection;
    this.title = h('h1', { class: 'title' });
    this.userLine = h('span', { class: 'muted', id: 'whoami' });
    this.nav = h('nav', { class: 'sections', 'aria-label': t('nav.label') });
    this.main = h('main', { id: 'main', tabindex: '-1' });
    this.status = h('p', { class: 'status', role: 'status', 'aria-live': 'polite', id: 'status' });
    this.titleKey = titleKey;
    const logout = h('button', { type: 'button', class: 'ghost', id: 'logout', onclick: onLogout });
    this.logout = logout;
    clear(
      root,
      h('a', { class: 'skip', href: '#main' }, 'Skip to content'),
      h('header', { class: 'topbar' }, this.title, h('div', { class: 'spacer' }), this.userLine, languageButton(), logout),
      h('div', { class: 'frame' }, this.nav, h('div', { class: 'content' }, this.status, this.main)),
    );
    onLangChange(() => this.paint());
    this.paint();
  }

  paint() {
    this.title.textContent = t(this.titleKey);
    this.logout.textContent = t('logout');
    this.nav.setAttribute('aria-label', t('nav.label'));
    clear(
      this.nav,
      h(
        'ul',
        {},
        this.sections.map((id) =>
          h(
            'li',
            {},
            h(
              'a',
              {
                href: `#${id}`,
                id: `nav-${id}`,
                'aria-current': location.hash.slice(1) === id ? 'page' : null,
              },
              t(`section.${id}`),
            ),
          ),
        ),
      ),
    );
  }

  say(message, kind = 'info') {
    this.status.textContent = message;
    this.status.dataset.kind = kind;
  }
}
