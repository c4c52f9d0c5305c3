// The runner's profile: the name friends see on rankings and boards, and the heart rates
// the zones are computed from (empty: running estimates them from the runs). Whatever
// else the profile holds (privacy zones, nearby) is sent back as it was.
import { h, clear } from '../shared/dom.js';
import { addDictionary, t } from '../shared/i18n.js';
import { explain } from '../shared/api.js';
import { words } from './profile.words.js';

addDictionary(words);

const PROFILE = '/api/running/v1/profile';

export function profileSection(api) {
  const status = h('p', { role: 'status', id: 'profile-status' });
  const name = h('input', { id: 'profile-name', maxlength: 40, autocomplete: 'nickname' });
  const maxHr = h('input', { id: 'profile-maxhr', type: 'number', min: 120, max: 230, inputmode: 'numeric' });
  const restingHr = h('input', { id: 'profile-resthr', type: 'number', min: 30, max: 110, inputmode: 'numeric' });
  const zones = h('p', { class: 'muted', id: 'profile-zones' });
  const send = h('button', { type: 'submit', id: 'profile-send' }, t('profile.save'));
  let current = null;
  const paint = (profile) => {
    current = profile;
    name.value = profile.display_name || '';
    maxHr.value = profile.max_hr ?? '';
    restingHr.value = profile.resting_hr ?? '';
    zones.textContent = t(`profile.zones.${profile.zones.from}`, { max: profile.zones.max_hr });
  };
  const number = (input) => (input.value === '' ? null : Number(input.value));
  const form = h(
    'form',
    {
      class: 'card',
      id: 'profile-form',
      onsubmit: async (event) => {
        event.preventDefault();
        if (!current) return;
        send.disabled = true;
        status.textContent = '…';
        try {
          paint(
            await api.put(PROFILE, {
              display_name: name.value.trim() || null,
              max_hr: number(maxHr),
              resting_hr: number(restingHr),
              nearby_opt_in: current.nearby_opt_in,
              privacy_zones: current.privacy_zones,
            }),
          );
          status.textContent = t('profile.saved');
        } catch (error) {
          status.textContent = error.status === 409 || error.status === 422 ? t('profile.refused', { reason: error.detail }) : explain(error, t);
        } finally {
          send.disabled = false;
        }
      },
    },
    h('h2', {}, t('profile.title')),
    h('div', { class: 'field' }, h('label', { for: 'profile-name' }, t('profile.name')), name),
    h('div', { class: 'row' },
      h('div', { class: 'field' }, h('label', { for: 'profile-maxhr' }, t('profile.maxhr')), maxHr),
      h('div', { class: 'field' }, h('label', { for: 'profile-resthr' }, t('profile.resthr')), restingHr),
    ),
    zones,
    send,
    status,
  );
  api.get(PROFILE).then(paint, (error) => clear(status, explain(error, t)));
  return form;
}
