// Members' reviews of the branch, with the owner's replies.
import { h, formatTime } from '../../shared/dom.js';
import { t, lang } from '../../shared/i18n.js';
import { explain } from '../../shared/api.js';

export async function reviews(ctx, el) {
  const items = await ctx.api.get(`/api/branch-owner/v1/branches/${encodeURIComponent(ctx.branch)}/reviews?limit=50`);
  if (!items.length) {
    el.append(h('p', { class: 'muted' }, t('none')));
    return;
  }
  el.append(...items.map((review) => {
    const reply = h('textarea', { id: `reply-${review.id}`, rows: 2, maxlength: 2000 }, review.reply || '');
    return h('article', { class: 'card' },
      h('p', {}, h('strong', {}, '★'.repeat(review.rating) + '☆'.repeat(5 - review.rating)), ' ', h('span', { class: 'muted' }, formatTime(review.updated_at, lang()))),
      h('p', {}, review.text),
      review.reports ? h('p', { class: 'badge warn' }, t('reviews.reports', { n: review.reports })) : null,
      h('form', { onsubmit: async (event) => {
        event.preventDefault();
        try {
          await ctx.api.post(`/api/branch-owner/v1/reviews/${review.id}/reply`, { text: reply.value });
          ctx.say(t('saved'));
        } catch (error) {
          ctx.say(explain(error, t), 'error');
        }
      } }, h('label', { for: reply.id }, t('reviews.reply')), reply, h('button', { type: 'submit' }, t('reviews.send'))));
  }));
}
