// The member and helper app (an installable PWA): entry pass, gym search, live runs, helper tasks.
// Sections are hash routes so that the service worker needs to cache one shell only.
import '../shared/tokens.css';
import './app.css';
import './features.css';
import { Api, explain } from '../shared/api.js';
import { h, clear } from '../shared/dom.js';
import { addDictionary, t, onLangChange } from '../shared/i18n.js';
import { languageButton } from '../shared/layout.js';
import { words } from './words.js';
import { PassView, lastPass } from './pass.js';
import { SearchView, showBranch } from './search.js';
import { HelperView } from './helper.js';
import { AccountView } from './account.js';
import { InboxView, registerWrapperToken } from './inbox.js';
import { showAuth } from './signin.js';
// The charts' stylesheet is tiny; their code comes with the history, on demand.
import 'uplot/dist/uPlot.min.css';
import { RunView, RUN_SECTIONS, showShared } from './run/run.js';
import { activeSession, resumeSaved, savedRun } from './run/session.js';

addDictionary(words);
const root = document.getElementById('app');
// Members stay signed in on their own phone (localStorage), unlike the staff screens.
const api = new Api({ storageKey: 'smartgym.app', storage: localStorage, onSessionEnded: () => route() });
let current = null;
let bannerOff = null;

if ('serviceWorker' in navigator) {
  navigator.serviceWorker
    .register('/app/sw.js', { scope: '/app' })
    .then(async () => {
      const ready = await navigator.serviceWorker.ready;
      // The shell's hashed assets, as the page loaded them: the worker keeps them for offline.
      const assets = performance
        .getEntriesByType('resource')
        .map((entry) => new URL(entry.name).pathname)
        .filter((path) => path.startsWith('/static/'));
      ready.active?.postMessage({ cache: ['/app', '/app/manifest.webmanifest', ...assets] });
      document.documentElement.dataset.offlineReady = 'true';
    })
    .catch(() => {});
}

function frame(section) {
  const claims = api.claims() || {};
  const helper = (claims.roles || []).includes('helper');
  const tabs = [
    ['pass', 'nav.pass'],
    ['search', 'nav.search'],
    ['run', 'nav.run'],
    ['history', 'nav.history'],
    ['inbox', 'nav.inbox'],
    ['account', 'nav.account'],
    ...(helper ? [['helper', 'nav.helper']] : []),
  ];
  const main = h('main', { id: 'main', tabindex: '-1' });
  const offline = h('p', { class: 'offline', id: 'offline', role: 'status', hidden: navigator.onLine });
  offline.textContent = t('offline');
  const banner = h('p', { class: 'run-banner', id: 'run-banner', role: 'status', hidden: true });
  clear(
    root,
    h(
      'header',
      { class: 'topbar' },
      h('h1', { class: 'title' }, t('app.title')),
      h('div', { class: 'spacer' }),
      languageButton(),
      h('button', { type: 'button', class: 'ghost', id: 'logout', onclick: async () => { await api.logout(); route(); } }, t('logout')),
    ),
    offline,
    banner,
    main,
    h(
      'nav',
      { class: 'tabs', 'aria-label': t('nav.label') },
      tabs.map(([id, key]) => h('a', { href: `#${id}`, id: `tab-${id}`, 'aria-current': id === section ? 'page' : null }, t(key))),
    ),
  );
  return main;
}

// A run still recording while another tab is shown: a way back to it, gone when it ends.
function runBanner(section) {
  bannerOff?.();
  bannerOff = null;
  const banner = document.getElementById('run-banner');
  const session = activeSession();
  if (!banner || !session) return;
  const paint = () => {
    const where = session.raceId ? `race/${session.raceId}` : 'run';
    const onRunScreen = section === 'run' || (section === 'race' && session.raceId);
    banner.hidden = session.done || Boolean(onRunScreen);
    banner.dataset.runId = session.runId || '';
    clear(banner, t('banner.running'), ' ', h('a', { href: `#${where}`, id: 'run-banner-back' }, t('banner.back')));
  };
  bannerOff = session.subscribe((what) => what === 'state' && paint());
  paint();
}

async function route() {
  current?.unmount?.();
  current = null;
  bannerOff?.();
  bannerOff = null;
  // An access token that ran out while the app was closed: the session goes on with the
  // refresh token, if there is a network to renew it.
  if (api.refreshToken && navigator.onLine) await api.freshToken();
  const claims = api.claims();
  const signedIn = claims && claims.exp * 1000 > Date.now();
  const [section, arg] = location.hash.slice(1).split('/');
  if (section === 'shared' && arg) {
    const stop = showShared(root, decodeURIComponent(arg), h('header', { class: 'topbar' }, h('h1', { class: 'title' }, t('app.title')), h('div', { class: 'spacer' }), languageButton()));
    current = { unmount: stop };
    return;
  }
  if (!signedIn) {
    // Offline with a pass kept from before: the pass is what a member needs at the door.
    if (!navigator.onLine && lastPass()) {
      current = new PassView(frame('pass'), api);
      current.showStored(true);
      return;
    }
    api.setToken(null);
    showAuth(root, api, () => route());
    return;
  }
  const main = frame(RUN_SECTIONS.includes(section) ? 'run' : section || 'pass');
  registerWrapperToken(api).catch(() => {}); // the inbox page shows why, if it failed
  // A run left unfinished by a reload or a closed tab records on from the app's start,
  // whichever tab is shown: its kept points go out and new fixes follow them.
  if (savedRun() && !activeSession()) await resumeSaved(api).catch(() => null);
  runBanner(section || 'pass');
  try {
    if (section === 'search') (current = new SearchView(main, api)).mount(decodeURIComponent(arg || ''));
    else if (section === 'branch' && arg) await showBranch(main, api, decodeURIComponent(arg));
    else if (section === 'helper') await (current = new HelperView(main, api)).mount();
    else if (section === 'history') {
      const { HistoryView } = await import('./history.js');
      await (current = new HistoryView(main, api)).mount(arg && decodeURIComponent(arg));
    } else if (section === 'inbox') await (current = new InboxView(main, api)).mount();
    else if (section === 'account') await (current = new AccountView(main, api)).mount();
    else if (RUN_SECTIONS.includes(section)) await (current = new RunView(main, api)).mount(section, arg && decodeURIComponent(arg));
    else await (current = new PassView(main, api)).mount();
  } catch (error) {
    clear(main, h('p', { role: 'alert' }, explain(error, t)));
  }
}

window.addEventListener('hashchange', route);
window.addEventListener('online', () => document.getElementById('offline')?.setAttribute('hidden', ''));
window.addEventListener('offline', () => document.getElementById('offline')?.removeAttribute('hidden'));
onLangChange(() => route());
route();
