// Running friends: the member's own friend code (to give to a friend, as text or a link),
// adding a friend by theirs, requests either way, and the friends, with a way to watch the
// one out on a run now. Nobody is found by e-mail or phone: a code is only known to
// whoever its owner gave it to. Hash route: #friends, or #friends/<code> from a shared link.
import { h, clear } from '../../shared/dom.js';
import { t } from '../../shared/i18n.js';
import { ApiError, explain } from '../../shared/api.js';

const RUNNING = '/api/running/v1';
const REFRESH_MS = 3000; // a friend's request, acceptance or run start shows within seconds

export function friendsView(root, api, typedCode) {
  const codeOut = h('output', { id: 'friends-code', class: 'big code' }, '…');
  const codeLink = h('a', { id: 'friends-code-link' });
  const codeStatus = h('p', { role: 'status', class: 'muted', id: 'friends-code-status' });
  const copy = h('button', { type: 'button', id: 'friends-copy' }, t('friends.copy'));
  const renew = h('button', { type: 'button', id: 'friends-renew' }, t('friends.renew'));
  const input = h('input', {
    id: 'friends-add-code',
    autocomplete: 'off',
    autocapitalize: 'characters',
    spellcheck: 'false',
    maxlength: 20,
    placeholder: 'ABCDE-12345',
    required: true,
    value: typedCode || '',
  });
  const added = h('p', { role: 'status', id: 'friends-add-result', 'aria-live': 'polite' });
  const incoming = h('ul', { id: 'friends-incoming', class: 'plain' });
  const friends = h('ul', { id: 'friends-list', class: 'plain' });
  const requested = h('ul', { id: 'friends-requested', class: 'plain' });
  let code = null;

  const showCode = (value) => {
    code = value;
    codeOut.textContent = value;
    const link = `${location.origin}/app#friends/${encodeURIComponent(value)}`;
    codeLink.href = link;
    codeLink.textContent = link;
  };
  const loadCode = async (renewIt = false) => {
    try {
      const found = renewIt ? await api.post(`${RUNNING}/friends/code`) : await api.get(`${RUNNING}/friends/code`);
      showCode(found.code);
      codeStatus.textContent = renewIt ? t('friends.renewed') : '';
    } catch (error) {
      codeStatus.textContent = explain(error, t);
    }
  };

  const act = (fn) => async (event) => {
    event.currentTarget.disabled = true;
    try {
      await fn();
    } catch (error) {
      added.textContent = explain(error, t);
    }
    await refresh();
  };
  const person = (id, names, ...actions) =>
    h('li', { class: 'row friend', 'data-user': id }, h('span', { class: 'name' }, names[id] || id.slice(0, 4)), h('div', { class: 'spacer' }), ...actions);

  const paint = (found) => {
    const names = found.names || {};
    const live = found.live || {};
    clear(
      incoming,
      found.incoming.length
        ? found.incoming.map((id) =>
            person(
              id,
              names,
              h('button', { type: 'button', class: 'primary friend-accept', onclick: act(() => api.post(`${RUNNING}/friends/${id}/accept`)) }, t('friends.accept')),
              h('button', { type: 'button', class: 'friend-decline', onclick: act(() => api.delete(`${RUNNING}/friends/${id}`)) }, t('friends.decline')),
            ),
          )
        : h('li', { class: 'muted' }, t('friends.noincoming')),
    );
    clear(
      friends,
      found.friends.length
        ? found.friends.map((id) => {
            const remove = h('button', { type: 'button', class: 'danger friend-remove' }, t('friends.remove'));
            // A second tap confirms: a friend removed by a slip would have to be asked again.
            remove.addEventListener('click', (event) => {
              if (remove.dataset.confirm !== 'true') {
                remove.dataset.confirm = 'true';
                remove.textContent = t('friends.remove.confirm');
                return;
              }
              act(() => api.delete(`${RUNNING}/friends/${id}`))(event);
            });
            const watching = live[id]
              ? h('a', { class: 'link-button friend-watch', href: `#watch/${encodeURIComponent(live[id])}` }, t('friends.watch'))
              : null;
            return person(id, names, watching, remove);
          })
        : h('li', { class: 'muted' }, t('friends.none')),
    );
    clear(
      requested,
      found.requested.length
        ? found.requested.map((id) =>
            person(id, names, h('span', { class: 'muted' }, t('friends.waiting')), h('button', { type: 'button', class: 'friend-cancel', onclick: act(() => api.delete(`${RUNNING}/friends/${id}`)) }, t('friends.cancel'))),
          )
        : h('li', { class: 'muted' }, t('friends.norequested')),
    );
    friends.dataset.n = String(found.friends.length);
  };
  let refreshing = null;
  const refresh = () => {
    refreshing ??= api
      .get(`${RUNNING}/friends`)
      .then(paint)
      .catch(() => {})
      .finally(() => {
        refreshing = null;
      });
    return refreshing;
  };

  const form = h(
    'form',
    {
      id: 'friends-add',
      onsubmit: async (event) => {
        event.preventDefault();
        added.textContent = '';
        try {
          const answer = await api.post(`${RUNNING}/friends/requests`, { code: input.value });
          added.textContent = t(answer.status === 'accepted' ? 'friends.added' : 'friends.asked', { name: answer.name });
          added.dataset.status = answer.status;
          input.value = '';
        } catch (error) {
          delete added.dataset.status;
          if (error instanceof ApiError && error.status === 404) added.textContent = t('friends.nobody');
          else if (error instanceof ApiError && error.status === 429) added.textContent = t('friends.toomany');
          else if (error instanceof ApiError && (error.status === 422 || error.status === 409)) added.textContent = t('friends.badcode', { reason: error.detail });
          else added.textContent = explain(error, t);
        }
        await refresh();
      },
    },
    h('h3', {}, t('friends.add')),
    h('div', { class: 'field' }, h('label', { for: 'friends-add-code' }, t('friends.add.code')), input),
    h('button', { type: 'submit', class: 'primary', id: 'friends-add-go' }, t('friends.add.go')),
    added,
  );

  copy.addEventListener('click', async () => {
    if (!code) return;
    try {
      if (navigator.share) await navigator.share({ text: t('friends.share.text', { code }), url: codeLink.href });
      else await navigator.clipboard.writeText(codeLink.href);
      codeStatus.textContent = t('friends.copied');
    } catch {
      codeStatus.textContent = t('friends.copy.failed');
    }
  });
  renew.addEventListener('click', () => loadCode(true));

  clear(
    root,
    h(
      'section',
      { class: 'card', id: 'friends' },
      h('h2', {}, t('friends.title')),
      h('h3', {}, t('friends.mycode')),
      h('p', { class: 'muted' }, t('friends.mycode.why')),
      codeOut,
      h('p', {}, codeLink),
      h('div', { class: 'row' }, copy, renew),
      codeStatus,
      form,
      h('h3', {}, t('friends.incoming')),
      incoming,
      h('h3', {}, t('friends.yours')),
      friends,
      h('h3', {}, t('friends.requested')),
      requested,
    ),
  );
  loadCode();
  refresh();
  const timer = setInterval(refresh, REFRESH_MS);
  return () => clearInterval(timer);
}
