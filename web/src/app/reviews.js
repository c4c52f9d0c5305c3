// A branch's reviews as the branch keeps them (what a member wrote shows at once; the
// search index catches up from events), and the member's own review: one per branch,
// written again to edit it.
import { h, clear, formatTime } from '../shared/dom.js';
import { addDictionary, t, lang } from '../shared/i18n.js';
import { explain } from '../shared/api.js';
import { words } from './reviews.words.js';

addDictionary(words);

export function reviewsSection(api, branchId) {
  const base = `/api/branch-owner/v1/branches/${encodeURIComponent(branchId)}/reviews`;
  const me = api.claims()?.sub;
  const list = h('ul', { id: 'branch-reviews', class: 'tasks', 'aria-live': 'polite' });
  const status = h('p', { role: 'status', id: 'review-status' });
  const rating = h(
    'select',
    { id: 'review-rating', required: true },
    [5, 4, 3, 2, 1].map((value) => h('option', { value: String(value) }, t('review.stars', { n: value }))),
  );
  const text = h('textarea', { id: 'review-text', required: true, minlength: 1, maxlength: 2000, rows: 3 });
  const send = h('button', { type: 'submit', class: 'primary', id: 'review-send' }, t('review.send'));
  const paint = (rows) => {
    const mine = rows.find((row) => row.member_id === me);
    if (mine && !text.value) {
      rating.value = String(mine.rating);
      text.value = mine.text;
    }
    clear(
      list,
      rows.length
        ? rows.map((row) =>
            h(
              'li',
              { class: 'task review', dataset: { mine: String(row.member_id === me) } },
              h('strong', { 'aria-label': t('review.stars', { n: row.rating }) }, '★'.repeat(row.rating) + '☆'.repeat(5 - row.rating)),
              row.member_id === me ? h('span', { class: 'badge' }, t('review.mine')) : null,
              h('p', { class: 'review-text' }, row.text),
              h('p', { class: 'muted' }, formatTime(row.updated_at, lang())),
              row.reply ? h('p', { class: 'reply' }, t('review.reply', { text: row.reply })) : null,
            ),
          )
        : h('li', { class: 'muted' }, t('branch.noreviews')),
    );
  };
  const load = async () => {
    try {
      paint(await api.get(`${base}?limit=50`));
    } catch (error) {
      status.textContent = explain(error, t);
    }
  };
  const form = h(
    'form',
    {
      id: 'review-form',
      onsubmit: async (event) => {
        event.preventDefault();
        send.disabled = true;
        status.textContent = '…';
        try {
          await api.put(`${base}/mine`, { rating: Number(rating.value), text: text.value.trim() });
          status.textContent = t('review.saved');
          await load();
        } catch (error) {
          status.textContent = error.status === 403 ? t('review.members') : explain(error, t);
        } finally {
          send.disabled = false;
        }
      },
    },
    h('h3', {}, t('review.write')),
    h('div', { class: 'field' }, h('label', { for: 'review-rating' }, t('review.rating')), rating),
    h('div', { class: 'field' }, h('label', { for: 'review-text' }, t('review.text')), text),
    send,
    status,
  );
  load();
  return h('div', { class: 'reviews' }, h('h3', {}, t('branch.reviews')), list, form);
}
