// The branch-owner console: one branch at a time, chosen among the caller's own.
import '../shared/tokens.css';
import './console.css';
import { Api } from '../shared/api.js';
import { addDictionary } from '../shared/i18n.js';
import { showLogin } from '../shared/login.js';
import { words } from './words.js';
import { Console } from './console.js';

addDictionary(words);
const root = document.getElementById('app');
const api = new Api({ storageKey: 'smartgym.console', onSessionEnded: () => start() });
const ROLES = ['branch_owner', 'operator'];

// A reload after the access token ran out keeps the session while its refresh token lasts.
async function start() {
  if (api.refreshToken) await api.freshToken();
  const claims = api.claims();
  if (claims && (claims.roles || []).some((role) => ROLES.includes(role)) && claims.exp * 1000 > Date.now()) {
    new Console(root, api, claims).mount();
  } else {
    api.setToken(null);
    showLogin(root, api, { roles: ROLES, titleKey: 'console.title', onSignedIn: () => start() });
  }
}
start();
