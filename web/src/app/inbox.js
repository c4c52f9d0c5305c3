// The inbox, and push where the app runs inside the native wrapper: the wrapper hands its
// FCM registration token to the page (window.SmartGymWrapper) and the app registers it
// with the notification service for the signed-in member. A plain browser gets the inbox
// only (Web Push is not offered).
import { h, clear, formatTime } from '../shared/dom.js';
import { addDictionary, t, lang } from '../shared/i18n.js';
import { explain } from '../shared/api.js';
import { words } from './inbox.words.js';

addDictionary(words);

const REGISTERED = 'smartgym.app.push';

function wrapper() {
  return window.SmartGymWrapper || null;
}

async function wrapperToken() {
  const bridge = wrapper();
  if (!bridge) return null;
  // The token as a value, or behind a getter the wrapper answers asynchronously.
  const token = typeof bridge.fcmToken === 'function' ? await bridge.fcmToken() : bridge.fcmToken;
  return typeof token === 'string' && token ? token : null;
}

// Registered once per member and token: the wrapper may rotate its token at any launch.
export async function registerWrapperToken(api) {
  const token = await wrapperToken().catch(() => null);
  const member = api.claims()?.sub;
  if (!token || !member) return false;
  const key = `${member}:${token}`;
  if (localStorage.getItem(REGISTERED) === key) return true;
  const platform = ['android', 'ios'].includes(wrapper().platform) ? wrapper().platform : 'android';
  await api.put('/api/notifications/me/push-tokens', { token, platform });
  localStorage.setItem(REGISTERED, key);
  return true;
}

export class InboxView {
  constructor(root, api) {
    this.root = root;
    this.api = api;
  }

  async mount() {
    this.list = h('ul', { id: 'inbox-list', class: 'tasks', 'aria-live': 'polite' });
    this.push = h('p', { id: 'inbox-push', class: 'muted' });
    this.status = h('p', { role: 'status', id: 'inbox-status' });
    const readAll = h('button', { type: 'button', id: 'inbox-read', onclick: () => this.readAll() }, t('inbox.readall'));
    clear(
      this.root,
      h('section', { class: 'card' }, h('div', { class: 'row' }, h('h2', {}, t('inbox.title')), h('div', { class: 'spacer' }), readAll), this.list, this.status),
      h('section', { class: 'card' }, h('h2', {}, t('inbox.push')), this.push),
    );
    await Promise.all([this.refresh(), this.paintPush()]);
  }

  async paintPush() {
    const bridge = wrapper();
    if (!bridge) {
      this.push.textContent = t('inbox.push.browser');
      return;
    }
    const enable = h('button', { type: 'button', class: 'primary', id: 'inbox-push-on', onclick: () => this.enable() }, t('inbox.push.enable'));
    try {
      if (await registerWrapperToken(this.api)) {
        clear(this.push, t('inbox.push.on'));
        this.push.dataset.registered = 'true';
      } else {
        clear(this.push, t('inbox.push.off'), ' ', enable);
      }
    } catch (error) {
      clear(this.push, explain(error, t), ' ', enable);
    }
  }

  async enable() {
    // The wrapper asks the operating system for the permission and then has a token.
    await wrapper()?.requestPushPermission?.();
    await this.paintPush();
  }

  async refresh() {
    try {
      const page = await this.api.get('/api/notifications/inbox?limit=50');
      this.messages = page.messages || [];
      clear(
        this.list,
        this.messages.length
          ? this.messages.map((message) =>
              h(
                'li',
                { class: `task${message.read ? '' : ' unread'}`, dataset: { id: message.id, read: String(message.read) } },
                h('strong', {}, message.title),
                h('p', {}, message.body),
                h('p', { class: 'muted' }, formatTime(message.created_at, lang())),
              ),
            )
          : h('li', { class: 'muted' }, t('inbox.empty')),
      );
      this.status.textContent = page.unread ? t('inbox.unread', { n: page.unread }) : '';
    } catch (error) {
      this.status.textContent = explain(error, t);
    }
  }

  async readAll() {
    const unread = (this.messages || []).filter((message) => !message.read).map((message) => message.id);
    if (!unread.length) return;
    try {
      await this.api.post('/api/notifications/inbox/read', { message_ids: unread });
      await this.refresh();
    } catch (error) {
      this.status.textContent = explain(error, t);
    }
  }
}
