// The operations dashboard: every branch, every fault, the gateway's upstreams and the
// access stream. Operators only.
import '../shared/tokens.css';
import './ops.css';
import { Api } from '../shared/api.js';
import { addDictionary } from '../shared/i18n.js';
import { showLogin } from '../shared/login.js';
import { words } from './words.js';
import { Dashboard } from './dashboard.js';

addDictionary(words);
const root = document.getElementById('app');
const api = new Api({ storageKey: 'smartgym.ops', onSessionEnded: () => start() });

// A reload after the access token ran out keeps the session while its refresh token lasts.
async function start() {
  if (api.refreshToken) await api.freshToken();
  const claims = api.claims();
  if (claims && (claims.roles || []).includes('operator') && claims.exp * 1000 > Date.now()) {
    new Dashboard(root, api, claims).mount();
  } else {
    api.setToken(null);
    showLogin(root, api, { roles: ['operator'], titleKey: 'ops.title', onSignedIn: () => start() });
  }
}
start();
