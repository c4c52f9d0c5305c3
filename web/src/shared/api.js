// The one way the screens talk to the platform: same-origin calls through the gateway with
// the bearer token this client holds. Failures become ApiError with a reason a screen can
// show: 'offline' (no answer), 'session' (401: the token is dropped and onSessionEnded
// runs), 'rate_limited' (429, with retryAfter), 'unavailable' (503: breaker open or a
// service down, with retryAfter), 'forbidden', or 'http'.
//
// A session lasts as long as its refresh token, not the access token's 15 minutes: a token
// near its end is renewed before a call (and once after a 401), single-flight, and the
// rotated refresh token replaces the old one.

// Renew this long before the access token ends, so a socket opened with it is not refused.
const RENEW_BEFORE_MS = 60_000;

export class ApiError extends Error {
  constructor(reason, status, detail, retryAfter = null, refusal = null) {
    super(`${reason}: ${detail}`);
    this.reason = reason;
    this.status = status;
    this.detail = detail;
    this.retryAfter = retryAfter;
    // Which refusal of several a status stands for, where a service names it.
    this.refusal = refusal;
  }
}

function detailOf(body, fallback) {
  if (!body) return fallback;
  if (typeof body.detail === 'string') return body.detail;
  if (Array.isArray(body.detail)) return body.detail.map((item) => item.msg).join('; ');
  return fallback;
}

export class Api {
  constructor({ storageKey = 'smartgym.session', storage = sessionStorage, onSessionEnded = () => {} } = {}) {
    this.storageKey = storageKey;
    this.storage = storage;
    this.onSessionEnded = onSessionEnded;
    this.token = storage.getItem(storageKey);
    this.refreshToken = storage.getItem(`${storageKey}.refresh`);
    this.renewing = null;
  }

  // A new access token, with the refresh token that came with it (undefined: keep the one
  // held). No token ends the session: both go.
  setToken(token, refreshToken = undefined) {
    this.token = token;
    if (token) this.storage.setItem(this.storageKey, token);
    else this.storage.removeItem(this.storageKey);
    if (!token || refreshToken !== undefined) {
      this.refreshToken = token ? refreshToken : null;
      if (this.refreshToken) this.storage.setItem(`${this.storageKey}.refresh`, this.refreshToken);
      else this.storage.removeItem(`${this.storageKey}.refresh`);
    }
  }

  // An access token with at least a minute left when the session can still give one (for
  // a WebSocket, which cannot be retried after a 401 the way a call is).
  async freshToken() {
    const claims = this.claims();
    if (this.token && claims?.exp && claims.exp * 1000 - Date.now() > RENEW_BEFORE_MS) return this.token;
    if (!this.refreshToken) return this.token;
    this.renewing ??= this.renew().finally(() => {
      this.renewing = null;
    });
    return this.renewing;
  }

  async renew() {
    let response;
    try {
      response = await fetch('/api/auth/token/refresh', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ refresh_token: this.refreshToken }),
        credentials: 'omit',
      });
    } catch {
      return this.token; // offline: what is held may still do, and the next call tries again
    }
    if (response.ok) {
      const tokens = await response.json();
      this.setToken(tokens.access_token, tokens.refresh_token ?? null);
    } else if (response.status === 401) {
      this.setToken(null); // revoked or expired: the member signs in again
      this.onSessionEnded('session');
    }
    return this.token;
  }

  authHeaders() {
    return this.token ? { authorization: `Bearer ${this.token}` } : {};
  }

  async request(method, path, { json, body, headers = {}, signal, raw = false, renewed = false } = {}) {
    if (this.refreshToken) await this.freshToken();
    const init = { method, headers: { ...this.authHeaders(), ...headers }, signal, credentials: 'omit' };
    if (json !== undefined) {
      init.body = JSON.stringify(json);
      init.headers['content-type'] = 'application/json';
    } else if (body !== undefined) {
      init.body = body;
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (error) {
      if (error.name === 'AbortError') throw error;
      throw new ApiError('offline', 0, String(error.message || error));
    }
    if (raw && response.ok) return response;
    const text = await response.text();
    let parsed = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = null;
    }
    if (response.ok) return parsed;
    const detail = detailOf(parsed, response.statusText || String(response.status));
    const retryAfter = Number(response.headers.get('retry-after')) || null;
    if (response.status === 401) {
      if (this.refreshToken && !renewed && (await this.renew())) {
        return this.request(method, path, { json, body, headers, signal, raw, renewed: true });
      }
      if (this.token) {
        this.setToken(null);
        this.onSessionEnded(detail);
      }
      throw new ApiError('session', 401, detail);
    }
    if (response.status === 403) throw new ApiError('forbidden', 403, detail);
    if (response.status === 429) throw new ApiError('rate_limited', 429, detail, retryAfter ?? 1);
    if (response.status === 503 || response.status === 502 || response.status === 504)
      throw new ApiError('unavailable', response.status, detail, retryAfter);
    throw new ApiError('http', response.status, detail, null, response.headers.get('x-smartgym-refusal'));
  }

  get(path, options) {
    return this.request('GET', path, options);
  }
  post(path, json, options = {}) {
    return this.request('POST', path, { ...options, json });
  }
  put(path, json, options = {}) {
    return this.request('PUT', path, { ...options, json });
  }
  delete(path, options) {
    return this.request('DELETE', path, options);
  }

  // identifier: an email, or { email } / { phone } (auth takes exactly one).
  async login(identifier, password) {
    const who = typeof identifier === 'string' ? { email: identifier } : identifier;
    const tokens = await this.request('POST', '/api/auth/login', { json: { ...who, password } });
    this.setToken(tokens.access_token, tokens.refresh_token ?? null);
    return tokens;
  }

  // Ends the session here and revokes its refresh token (best effort: offline, it simply
  // expires).
  async logout() {
    const refreshToken = this.refreshToken;
    this.setToken(null);
    if (!refreshToken) return;
    await fetch('/api/auth/logout', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ refresh_token: refreshToken }),
      credentials: 'omit',
    }).catch(() => {});
  }

  // The roles and branches the token carries (what the gateway checks), read from its
  // payload: only for choosing what to show, never trusted for anything else.
  claims() {
    if (!this.token) return null;
    try {
      const payload = this.token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      return JSON.parse(atob(payload.padEnd(payload.length + ((4 - (payload.length % 4)) % 4), '=')));
    } catch {
      return null;
    }
  }
}

// The token to open a WebSocket with: renewed first when the client can (an anonymous
// watcher holds a bare { token: null }).
export async function socketToken(api) {
  if (typeof api.freshToken !== 'function') return api.token ?? null;
  return api.freshToken().catch(() => api.token);
}

// A message for an ApiError in the current language.
export function explain(error, t) {
  if (!(error instanceof ApiError)) return t('error.other', { detail: String(error?.message || error) });
  switch (error.reason) {
    case 'offline':
      return t('error.offline');
    case 'session':
      return t('error.session');
    case 'rate_limited':
      return t('error.rate_limited', { s: error.retryAfter ?? 1 });
    case 'unavailable':
      return t('error.unavailable', { detail: error.detail });
    case 'forbidden':
      return t('error.forbidden', { detail: error.detail });
    default:
      return t('error.other', { detail: error.detail });
  }
}
