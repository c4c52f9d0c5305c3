// The branch profile: name, address, position, opening hours per weekday, facilities,
// prices, photo links and uploaded photos. A branch without hours is open around the clock.
import { h, clear } from '../../shared/dom.js';
import { t } from '../../shared/i18n.js';
import { ApiError, explain } from '../../shared/api.js';

const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];

export async function profile(ctx, el) {
  const path = `/api/branch-owner/v1/branches/${encodeURIComponent(ctx.branch)}`;
  let current = null;
  try {
    current = await ctx.api.get(path);
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) throw error;
  }
  current = current || { name: ctx.branch, address: '', lat: 37.5, lon: 127.0, hours: [], facilities: [], prices: [], photo_urls: [], equipment: {} };
  const field = (id, label, value, attrs = {}) => {
    const input = h('input', { id, name: id, value: value ?? '', ...attrs });
    return [h('div', { class: 'field' }, h('label', { for: id }, label), input), input];
  };
  const [nameField, name] = field('profile-name', t('profile.name'), current.name, { required: true, maxlength: 100 });
  const [addressField, address] = field('profile-address', t('profile.address'), current.address, { required: true, maxlength: 300 });
  const [latField, lat] = field('profile-lat', t('profile.lat'), current.lat, { type: 'number', step: 'any', min: -90, max: 90, required: true });
  const [lonField, lon] = field('profile-lon', t('profile.lon'), current.lon, { type: 'number', step: 'any', min: -180, max: 180, required: true });
  const byDay = Object.fromEntries((current.hours || []).map((item) => [item.day, item]));
  const allDay = h('input', { type: 'checkbox', id: 'profile-24h', checked: !(current.hours || []).length });
  const rows = DAYS.map((day) => {
    const open = h('input', { type: 'time', id: `hours-${day}-open`, value: byDay[day]?.open || '06:00', 'aria-label': `${t(`day.${day}`)} ${t('profile.open')}` });
    const close = h('input', { type: 'time', id: `hours-${day}-close`, value: byDay[day]?.close || '23:00', 'aria-label': `${t(`day.${day}`)} ${t('profile.close')}` });
    const closed = h('input', { type: 'checkbox', id: `hours-${day}-closed`, checked: Boolean((current.hours || []).length && !byDay[day]), 'aria-label': `${t(`day.${day}`)} ${t('profile.closed')}` });
    return { day, open, close, closed, row: h('tr', {}, h('th', { scope: 'row' }, t(`day.${day}`)), h('td', {}, open), h('td', {}, close), h('td', {}, closed)) };
  });
  const hoursTable = h('table', { class: 'hours-table' },
    h('caption', { class: 'muted' }, t('profile.hours')),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, t('profile.day')), h('th', { scope: 'col' }, t('profile.open')), h('th', { scope: 'col' }, t('profile.close')), h('th', { scope: 'col' }, t('profile.closed')))),
    h('tbody', {}, rows.map((item) => item.row)));
  const syncHours = () => { hoursTable.hidden = allDay.checked; };
  allDay.addEventListener('change', syncHours);
  syncHours();
  const [facilitiesField, facilities] = field('profile-facilities', t('profile.facilities'), (current.facilities || []).join(', '));
  const prices = h('textarea', { id: 'profile-prices', rows: 3 }, (current.prices || []).map((p) => `${p.name}: ${p.amount_krw}`).join('\n'));
  const photos = h('textarea', { id: 'profile-photos', rows: 2 }, (current.photo_urls || []).join('\n'));
  const error = h('p', { class: 'error', role: 'alert', id: 'profile-error' });
  const form = h('form', {
    class: 'card grid-form',
    onsubmit: async (event) => {
      event.preventDefault();
      error.textContent = '';
      const hours = allDay.checked ? [] : rows.filter((item) => !item.closed.checked).map((item) => ({ day: item.day, open: item.open.value, close: item.close.value }));
      const body = {
        name: name.value.trim(),
        address: address.value.trim(),
        lat: Number(lat.value),
        lon: Number(lon.value),
        hours,
        facilities: facilities.value.split(',').map((item) => item.trim()).filter(Boolean),
        equipment: current.equipment || {},
        prices: prices.value.split('\n').map((line) => line.trim()).filter(Boolean).map((line) => {
          const [label, amount] = line.split(':');
          return { name: (label || '').trim(), amount_krw: Number(String(amount || '').replace(/[^0-9]/g, '')) };
        }),
        photo_urls: photos.value.split('\n').map((line) => line.trim()).filter(Boolean),
      };
      try {
        current = await ctx.api.put(path, body);
        ctx.say(t('saved'));
        if (card.dataset.pending) {
          const fresh = photoCard(ctx, path, current);
          card.replaceWith(fresh);
          card = fresh;
        }
      } catch (failure) {
        error.textContent = explain(failure, t);
      }
    },
  },
  nameField, addressField, h('div', { class: 'row' }, latField, lonField),
  h('div', { class: 'row' }, allDay, h('label', { for: 'profile-24h' }, t('profile.24h'))),
  hoursTable, facilitiesField,
  h('div', { class: 'field' }, h('label', { for: 'profile-prices' }, t('profile.prices')), prices),
  h('div', { class: 'field' }, h('label', { for: 'profile-photos' }, t('profile.photos')), photos),
  error,
  h('div', {}, h('button', { type: 'submit', class: 'primary', id: 'profile-save' }, t('save'))));
  let card = photoCard(ctx, path, current);
  el.append(form, card);
}

const LONGEST_SIDE = 2048;

// Shrunk in the browser before upload (a phone's 12-megapixel picture becomes a few hundred
// kB); a file the browser cannot decode goes as it is, and the server says what is wrong.
async function shrink(file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { imageOrientation: 'from-image' });
  } catch {
    return { body: file, type: file.type || 'application/octet-stream' };
  }
  const scale = Math.min(1, LONGEST_SIDE / Math.max(bitmap.width, bitmap.height));
  const canvas = document.createElement('canvas');
  canvas.width = Math.round(bitmap.width * scale);
  canvas.height = Math.round(bitmap.height * scale);
  canvas.getContext('2d').drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, 'image/jpeg', 0.85));
  return { body: blob, type: 'image/jpeg' };
}

function photoCard(ctx, path, current) {
  const gallery = h('ul', { class: 'photo-gallery', id: 'photo-gallery' });
  const input = h('input', { type: 'file', id: 'photo-file', accept: 'image/jpeg,image/png,image/webp', multiple: true });
  const status = h('p', { role: 'status', id: 'photo-status' });
  const urls = [];

  async function thumb(photo, index) {
    const label = t('photos.photo', { n: index + 1 });
    const img = h('img', { alt: label, width: 160, height: Math.round((160 * photo.height) / photo.width) });
    ctx.api.request('GET', photo.url, { raw: true })
      .then((response) => response.blob())
      .then((blob) => {
        const url = URL.createObjectURL(blob);
        urls.push(url);
        img.src = url;
      })
      .catch(() => { img.alt = `${label} (${t('photos.missing')})`; });
    return h('li', { id: `photo-${photo.id}` }, img,
      h('button', { type: 'button', class: 'danger', 'aria-label': `${t('photos.delete')}: ${label}`, onclick: async () => {
        try {
          await ctx.api.delete(photo.url);
          status.textContent = t('photos.deleted');
          await load();
        } catch (error) {
          status.textContent = explain(error, t);
        }
      } }, t('photos.delete')));
  }

  async function load() {
    urls.splice(0).forEach((url) => URL.revokeObjectURL(url));
    const photos = await ctx.api.get(`${path}/photos`);
    if (!photos.length) clear(gallery, h('li', { class: 'muted', id: 'photos-empty' }, t('photos.empty')));
    else clear(gallery, await Promise.all(photos.map(thumb)));
  }

  const pending = !current.revision;
  const form = h('form', { class: 'card', id: 'photo-form', onsubmit: async (event) => {
    event.preventDefault();
    const files = [...input.files];
    if (!files.length || pending) return;
    let added = 0;
    for (const file of files) {
      status.textContent = t('photos.uploading', { name: file.name });
      try {
        const { body, type } = await shrink(file);
        await ctx.api.request('POST', `${path}/photos`, { body, headers: { 'content-type': type } });
        added += 1;
      } catch (error) {
        status.textContent = `${file.name}: ${explain(error, t)}`;
        break;
      }
    }
    if (added === files.length) status.textContent = t('photos.added', { n: added });
    input.value = '';
    await load();
  } },
  h('h3', {}, t('photos.title')),
  h('p', { class: 'muted' }, t('photos.help')),
  gallery,
  h('div', { class: 'field' }, h('label', { for: 'photo-file' }, t('photos.choose')), input),
  h('button', { type: 'submit', class: 'primary', id: 'photo-upload', disabled: pending }, t('photos.upload')),
  status);
  if (!pending) load().catch((error) => { status.textContent = explain(error, t); });
  else {
    clear(gallery, h('li', { class: 'muted' }, t('photos.save_first')));
    form.dataset.pending = 'yes';
  }
  return form;
}
