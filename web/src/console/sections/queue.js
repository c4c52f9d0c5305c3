// The helper task review queue: each task with its photos, the AI's verdict and reasons;
// approve or reject one, or several at once. Deciding against the AI is an override,
// said on the button so the owner knows.
import { h, clear, formatTime } from '../../shared/dom.js';
import { t, lang } from '../../shared/i18n.js';
import { explain } from '../../shared/api.js';

async function photo(ctx, path, label) {
  const img = h('img', { alt: label, loading: 'lazy' });
  try {
    // Photos need the token: fetched as blobs (the CSP allows blob: images).
    const response = await ctx.api.request('GET', path, { raw: true });
    img.src = URL.createObjectURL(await response.blob());
  } catch {
    img.alt = `${label} (${t('queue.photo_missing')})`;
  }
  return img;
}

export async function queue(ctx, el) {
  const base = `/api/branch-owner/v1/branches/${encodeURIComponent(ctx.branch)}/queue`;
  const list = h('div', { id: 'queue-items' });
  const selected = new Set();
  const bulkBar = h('div', { class: 'row', id: 'queue-bulk' });

  async function decide(ids, decision) {
    try {
      const results = await ctx.api.post(`${base}/decisions`, { task_ids: ids, decision, reason: '' });
      const failed = results.filter((item) => !item.ok);
      ctx.say(failed.length ? t('queue.partial', { ok: results.length - failed.length, failed: failed.length }) : t('queue.decided', { n: results.length }), failed.length ? 'error' : 'info');
    } catch (error) {
      ctx.say(explain(error, t), 'error');
    }
    selected.clear();
    await load();
  }

  async function load() {
    const page = await ctx.api.get(`${base}?status=pending&limit=50`);
    clear(bulkBar,
      h('button', { type: 'button', id: 'bulk-approve', onclick: () => selected.size && decide([...selected], 'approve') }, t('queue.bulk_approve')),
      h('button', { type: 'button', id: 'bulk-reject', onclick: () => selected.size && decide([...selected], 'reject') }, t('queue.bulk_reject')));
    if (!page.items.length) {
      clear(list, h('p', { class: 'muted', id: 'queue-empty' }, t('queue.empty')));
      return;
    }
    clear(list, page.items.map((item) => {
      const check = h('input', { type: 'checkbox', id: `pick-${item.task_id}`, onchange: () => (check.checked ? selected.add(item.task_id) : selected.delete(item.task_id)) });
      const thumbs = h('div', { class: 'thumbs' });
      item.photo_urls.forEach((path, index) => photo(ctx, path, t('queue.photo', { n: index + 1, title: item.title })).then((img) => thumbs.append(img)));
      const aiSays = item.verdict === 'pass' || item.verdict === 'approved' ? 'approve' : item.verdict === 'fail' || item.verdict === 'rejected' ? 'reject' : null;
      const button = (decision) => h('button', {
        type: 'button',
        class: decision === 'approve' ? 'primary' : 'danger',
        dataset: { decide: decision },
        onclick: async () => {
          try {
            await ctx.api.post(`${base}/${item.task_id}/decision`, { decision, reason: '' });
            ctx.say(t('queue.decided', { n: 1 }));
          } catch (error) {
            ctx.say(explain(error, t), 'error');
          }
          await load();
        },
      }, aiSays && aiSays !== decision ? t(`queue.override_${decision}`) : t(`queue.${decision}`));
      return h('article', { class: 'card queue-item', id: `task-${item.task_id}`, 'aria-labelledby': `title-${item.task_id}` },
        h('div', { class: 'row' }, check, h('label', { for: check.id, id: `title-${item.task_id}` }, `${item.title} · ${item.task_type}`), h('div', { class: 'spacer' }),
          h('span', { class: 'muted' }, `${item.reward_krw.toLocaleString()} KRW · ${formatTime(item.submitted_at, lang())}`),
          item.overdue ? h('span', { class: 'badge bad' }, t('queue.overdue')) : null),
        thumbs,
        h('p', {}, t('queue.ai'), ' ', h('strong', { class: 'verdict' }, item.verdict), item.confidence != null ? ` (${Math.round(item.confidence * 100)}%)` : '', item.model_version ? h('span', { class: 'muted' }, ` · ${item.model_version}`) : null),
        item.reasons.length ? h('ul', { class: 'reasons' }, item.reasons.map((reason) => h('li', {}, reason.message, h('span', { class: 'muted' }, ` (${reason.code})`)))) : null,
        h('div', { class: 'row' }, button('approve'), button('reject')));
    }));
  }
  el.append(bulkBar, list);
  await load();
}
