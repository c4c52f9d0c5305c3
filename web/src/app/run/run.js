// The live run screens: a run (map, distance, pace, splits, pause, a share link), a race
// with friends (the live leaderboard and the winner), a walk together (everyone's
// position), running friends, and watching a friend's run or a shared link. Hash routes:
// #run, #race[/id], #outing, #friends[/code], #watch/<run id>, #shared/<link token> (the
// last needs no sign-in).
import './run.css';
import { h, clear } from '../../shared/dom.js';
import { addDictionary, t } from '../../shared/i18n.js';
import { explain } from '../../shared/api.js';
import { socket } from '../../shared/live.js';
import { runWords } from './words.js';
import { liveMap } from './livemap.js';
import { activeSession, resumeSaved, startRun } from './session.js';
import { friendsView } from './friends.js';

addDictionary(runWords);

export const RUN_SECTIONS = ['run', 'race', 'outing', 'friends', 'watch'];
const RUNNING = '/api/running/v1';

export function clock(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '–';
  const s = Math.round(seconds);
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return hh ? `${hh}:${String(mm).padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
}

const pace = (secondsPerKm) => (secondsPerKm ? `${clock(secondsPerKm)} /km` : '–');
const km = (metres) => ((metres || 0) / 1000).toFixed(2);
const shortId = (id) => String(id).slice(0, 4).toUpperCase();

function subnav(current) {
  const items = [
    ['run', 'run.title'],
    ['race', 'race.title'],
    ['outing', 'outing.title'],
    ['friends', 'friends.title'],
  ];
  return h(
    'nav',
    { class: 'subnav', 'aria-label': t('run.title') },
    items.map(([id, key]) => h('a', { href: `#${id}`, id: `sub-${id}`, 'aria-current': id === current ? 'page' : null }, t(key))),
  );
}

// Accepted friends' ids, and the name each chose.
async function friendList(api) {
  const found = await api.get(`${RUNNING}/friends`).catch(() => null);
  return { ids: (found && found.friends) || [], names: (found && found.names) || {} };
}

function friendPicker({ ids, names }, name) {
  if (!ids.length) return h('p', { class: 'muted' }, t('race.nofriends'));
  return h(
    'fieldset',
    { class: 'friends' },
    h('legend', {}, t('race.invite')),
    ids.map((id) =>
      h('label', { class: 'check' }, h('input', { type: 'checkbox', name, value: id, 'data-friend': id }), ' ', names[id] || t('friend', { id: shortId(id) })),
    ),
  );
}

export class RunView {
  constructor(root, api) {
    this.root = root;
    this.api = api;
    this.cleanups = [];
  }

  unmount() {
    for (const cleanup of this.cleanups.splice(0)) cleanup();
  }

  async mount(section, arg) {
    if (section === 'watch') return this.watch(arg);
    if (section === 'race') return this.race(arg);
    if (section === 'outing') return this.outing();
    if (section === 'friends') {
      const body = h('div', {});
      clear(this.root, subnav('friends'), body);
      this.cleanups.push(friendsView(body, this.api, arg));
      return undefined;
    }
    return this.run();
  }

  // -- a run ------------------------------------------------------------------------------

  async run() {
    const session = activeSession() || (await resumeSaved(this.api));
    if (session?.raceId && !session.done) {
      location.hash = `race/${session.raceId}`;
      return;
    }
    const panel = h('div', {});
    clear(this.root, subnav('run'), h('section', { class: 'card', id: 'run' }, h('h2', {}, t('run.title')), panel));
    this.runPanel(panel, session, {});
  }

  // The run's panel: used alone and inside a race.
  runPanel(panel, session, { raceId = null, canStart = true }) {
    panel.id = 'run-panel';
    const state = h('p', { class: 'status', id: 'run-state', role: 'status', 'aria-live': 'polite' });
    const figure = (id, key) => h('div', { class: 'figure' }, h('dt', {}, t(key)), h('dd', { id, class: 'big' }, '–'));
    const figures = h('dl', { class: 'figures' }, figure('run-distance', 'run.distance'), figure('run-pace', 'run.pace'),
      figure('run-avgpace', 'run.avgpace'), figure('run-time', 'run.time'));
    const start = h('button', { type: 'button', class: 'primary', id: 'run-start' }, t('run.start'));
    const pause = h('button', { type: 'button', id: 'run-pause' }, t('run.pause'));
    const resume = h('button', { type: 'button', id: 'run-resume' }, t('run.resume'));
    const finish = h('button', { type: 'button', class: 'danger', id: 'run-finish' }, t('run.finish'));
    const queue = h('p', { class: 'muted', id: 'run-queue', 'aria-live': 'polite' });
    const mapEl = h('div', { class: 'map run-map', id: 'run-map', role: 'region', 'aria-label': t('run.map') });
    const splits = h('ol', { id: 'run-splits', class: 'splits' });
    const shareButton = h('button', { type: 'button', id: 'run-share' }, t('run.share'));
    const shareOut = h('div', { id: 'run-share-out' });
    const board = h('div', { id: 'race-panel' });
    clear(
      panel,
      state,
      figures,
      h('div', { class: 'row' }, start, pause, resume, finish),
      queue,
      mapEl,
      board,
      h('h3', {}, t('run.splits')),
      splits,
      h('div', { class: 'row' }, shareButton),
      shareOut,
    );
    const map = liveMap(mapEl);
    let current = session;
    let drawn = 0;

    const paint = () => {
      const s = current;
      const running = s && !s.done;
      start.hidden = running || !canStart || Boolean(s?.done && s.summary);
      pause.hidden = !running || s.paused;
      resume.hidden = !running || !s.paused;
      finish.hidden = !running;
      shareButton.hidden = !running || !s.runId;
      panel.dataset.runId = s?.runId || '';
      panel.dataset.state = s ? (s.done ? 'finished' : s.paused ? 'paused' : s.state) : 'idle';
      let text;
      if (!s) text = t('run.state.idle');
      else if (s.done && s.summary) text = t('run.summary', { km: km(s.summary.distance_m), time: clock(s.summary.moving_s) });
      else if (s.done) text = s.detail ? t('run.ended', { reason: s.detail }) : t('run.state.finished');
      else if (s.paused) text = t('run.state.paused');
      else if (s.state === 'nogps') text = t('run.state.nogps', { detail: s.detail });
      else text = t(`run.state.${s.state}`) || s.state;
      state.textContent = text;
      const stats = s?.summary || s?.stats;
      if (stats) {
        panel.querySelector('#run-distance').textContent = `${km(stats.distance_m)} km`;
        panel.querySelector('#run-pace').textContent = pace(s.done ? null : stats.pace_s_per_km);
        panel.querySelector('#run-avgpace').textContent = pace(stats.avg_pace_s_per_km);
        panel.querySelector('#run-time').textContent = clock(stats.moving_s);
        panel.dataset.distance = String(stats.distance_m ?? 0);
        panel.dataset.serverPaused = String(Boolean(stats.paused)); // as the server has it
        const list = stats.splits_s || [];
        clear(splits, list.length ? list.map((split, i) => h('li', {}, t('run.split', { n: i + 1, time: clock(split) }))) : h('li', { class: 'muted' }, t('run.nosplits')));
      }
      const waiting = s && !s.done ? s.outbox.size : 0;
      queue.dataset.n = String(waiting);
      queue.textContent = waiting ? t('run.queue', { n: waiting }) : s ? t('run.queue.none') : '';
      if (s) {
        for (; drawn < s.track.length; drawn += 1) map.extend(...s.track[drawn]);
      }
      if (s?.raceId) this.paintBoard(board, s);
    };

    const attach = (s) => {
      current = s;
      drawn = 0;
      const off = s.subscribe(() => paint());
      this.cleanups.push(off);
      paint();
    };
    start.addEventListener('click', async () => {
      start.disabled = true;
      try {
        attach(await startRun(this.api, { raceId }));
      } finally {
        start.disabled = false;
      }
    });
    pause.addEventListener('click', () => current?.control('pause'));
    resume.addEventListener('click', () => current?.control('resume'));
    finish.addEventListener('click', () => current?.finish());
    shareButton.addEventListener('click', async () => {
      try {
        const link = await current.share(3);
        const shared = `${location.origin}/app#shared/${link.token}`;
        const friends = `${location.origin}/app#watch/${current.runId}`;
        clear(
          shareOut,
          h('p', {}, t('run.share.link'), ' ', h('a', { href: shared, id: 'run-share-link' }, shared)),
          h('p', {}, t('run.friends.link'), ' ', h('a', { href: friends, id: 'run-watch-link' }, friends)),
        );
        if (navigator.share) navigator.share({ url: shared }).catch(() => {});
      } catch (error) {
        clear(shareOut, h('p', { role: 'alert' }, explain(error, t)));
      }
    });
    if (session) attach(session);
    else paint();
    const tick = setInterval(() => current && !current.done && paint(), 1000);
    this.cleanups.push(() => clearInterval(tick));
  }

  paintBoard(el, session) {
    const rows = session.board || [];
    const names = new Map(rows.map((row) => [row.user_id, row.name]));
    const me = this.api.claims()?.sub;
    const table = h(
      'table',
      { id: 'race-board' },
      h('caption', {}, t('race.board')),
      h('thead', {}, h('tr', {}, ['pos', 'name', 'distance', 'pace', 'gap'].map((col) => h('th', { scope: 'col' }, t(`race.col.${col}`))))),
      h(
        'tbody',
        {},
        rows.map((row) =>
          h(
            'tr',
            { 'data-user': row.user_id, class: row.user_id === me ? 'me' : null },
            h('td', {}, String(row.position)),
            h('td', { class: 'name' }, row.name || shortId(row.user_id)),
            h('td', {}, `${km(row.distance_m)} km`),
            h('td', {}, row.finish_s !== null && row.finish_s !== undefined ? t('race.finished', { time: clock(row.finish_s) }) : pace(row.pace_s_per_km)),
            h('td', {}, row.gap_m ? `${Math.round(row.gap_m)} m${row.gap_s ? ` · ${clock(row.gap_s)}` : ''}` : '–'),
          ),
        ),
      ),
    );
    let winner = null;
    if (session.results) {
      const first = session.results.find((placing) => placing.rank === 1);
      if (first) {
        const name = names.get(first.user_id) || (first.user_id === me ? t('you') : t('friend', { id: shortId(first.user_id) }));
        winner = h('p', { id: 'race-winner', class: 'big', 'data-user': first.user_id }, t('race.winner', { name }));
      }
    }
    clear(el, rows.length ? table : null, winner);
  }

  // -- a race -----------------------------------------------------------------------------

  async race(raceId) {
    const body = h('div', {});
    clear(this.root, subnav('race'), h('section', { class: 'card', id: 'race' }, h('h2', {}, t('race.title')), body));
    if (!raceId) return this.newRace(body);
    const info = h('p', { id: 'race-info', role: 'status' });
    const actions = h('div', { class: 'row' });
    const panel = h('div', {});
    clear(body, info, actions, panel);
    let shown = false;
    let race = null;
    const describe = () => {
      if (!race) return;
      const startsIn = race.start_at ? Math.ceil((Date.parse(race.start_at) - Date.now()) / 1000) : null;
      const phase = race.status === 'open' ? t('race.waiting') : startsIn > 0 ? t('race.starts', { s: startsIn }) : '';
      info.textContent = [`${t('race.id')}: ${race.title}`, `${km(race.target)} km`, phase].filter(Boolean).join(' · ');
    };
    const load = async () => {
      race = await this.api.get(`${RUNNING}/races/${encodeURIComponent(raceId)}`);
      const me = this.api.claims()?.sub;
      const mine = race.entries.find((entry) => entry.user_id === me);
      body.dataset.status = race.status;
      describe();
      clear(actions);
      if (mine?.status === 'invited') {
        actions.append(h('button', { type: 'button', class: 'primary', id: 'race-join', onclick: async () => { await this.api.post(`${RUNNING}/races/${raceId}/join`); load(); } }, t('race.join')));
      }
      if (race.status === 'open' && race.host_id === me) {
        actions.append(h('button', { type: 'button', class: 'primary', id: 'race-start', onclick: async () => { await this.api.post(`${RUNNING}/races/${raceId}/start`); load(); } }, t('race.start')));
      }
      const session = activeSession() || (await resumeSaved(this.api));
      const mineNow = session && session.raceId === raceId ? session : null;
      if (!shown && (mineNow || (race.status === 'running' && mine && mine.status === 'joined'))) {
        shown = true;
        this.runPanel(panel, mineNow, { raceId, canStart: race.status === 'running' });
      }
      return race;
    };
    try {
      await load();
    } catch (error) {
      clear(body, h('p', { role: 'alert' }, explain(error, t)));
      return;
    }
    // The host's start (and its countdown) is seen within a second.
    const poll = setInterval(() => {
      if (!shown || body.dataset.status === 'open') load().catch(() => {});
      else describe(); // the countdown
    }, 1000);
    this.cleanups.push(() => clearInterval(poll));
  }

  async newRace(body) {
    const ids = await friendList(this.api);
    const target = h('input', { id: 'race-target', type: 'number', min: 100, max: 100000, step: 100, value: 1000, required: true });
    const message = h('p', { role: 'alert', class: 'error' });
    clear(
      body,
      h(
        'form',
        {
          id: 'race-form',
          onsubmit: async (event) => {
            event.preventDefault();
            const invite = [...body.querySelectorAll('input[name=race-friend]:checked')].map((box) => box.value);
            try {
              const race = await this.api.post(`${RUNNING}/races`, { title: t('race.title'), mode: 'distance', target: Number(target.value), invite });
              location.hash = `race/${race.race_id}`;
            } catch (error) {
              message.textContent = explain(error, t);
            }
          },
        },
        h('h3', {}, t('race.new')),
        h('div', { class: 'field' }, h('label', { for: 'race-target' }, t('race.target')), target),
        friendPicker(ids, 'race-friend'),
        message,
        h('button', { type: 'submit', class: 'primary', id: 'race-create' }, t('race.create')),
      ),
    );
  }

  // -- walking together -------------------------------------------------------------------

  async outing() {
    const body = h('div', {});
    clear(this.root, subnav('outing'), h('section', { class: 'card', id: 'outing' }, h('h2', {}, t('outing.title')), body));
    const [ids, mine] = await Promise.all([friendList(this.api), this.api.get(`${RUNNING}/outings`).catch(() => [])]);
    this.names = ids.names;
    const me = this.api.claims()?.sub;
    const message = h('p', { role: 'alert', class: 'error' });
    const list = h(
      'ul',
      { id: 'outing-list', class: 'plain' },
      mine.length
        ? mine.map((outing) => {
            const act = (answer) => async () => {
              try {
                await this.api.post(`${RUNNING}/outings/${outing.outing_id}/${answer}`);
                this.outing();
              } catch (error) {
                message.textContent = explain(error, t);
              }
            };
            return h(
              'li',
              { class: 'row' },
              h('span', {}, outing.title),
              outing.answer === 'invited' ? h('button', { type: 'button', class: 'outing-accept', onclick: act('accept') }, t('outing.accept')) : null,
              outing.host_id === me && !outing.started ? h('button', { type: 'button', class: 'outing-begin', onclick: act('start') }, t('outing.begin')) : null,
              outing.answer === 'accepted' ? h('button', { type: 'button', class: 'primary outing-join', onclick: () => this.together(body, outing) }, t('outing.go')) : null,
            );
          })
        : h('li', { class: 'muted' }, t('outing.none')),
    );
    clear(
      body,
      h('h3', {}, t('outing.mine')),
      list,
      message,
      h(
        'form',
        {
          onsubmit: async (event) => {
            event.preventDefault();
            const members = [...body.querySelectorAll('input[name=outing-friend]:checked')].map((box) => box.value);
            try {
              await this.api.post(`${RUNNING}/outings`, { title: t('outing.title'), members, minutes: 90 });
              this.outing();
            } catch (error) {
              message.textContent = explain(error, t);
            }
          },
        },
        h('h3', {}, t('outing.new')),
        friendPicker(ids, 'outing-friend'),
        h('button', { type: 'submit', class: 'primary', id: 'outing-create' }, t('outing.create')),
      ),
    );
  }

  together(body, outing) {
    const me = this.api.claims()?.sub;
    const status = h('p', { role: 'status', id: 'outing-status' });
    const mapEl = h('div', { class: 'map', id: 'outing-map', role: 'region', 'aria-label': t('outing.map') });
    const leave = h('button', { type: 'button', id: 'outing-leave' }, t('outing.leave'));
    const left = h('ul', { id: 'outing-left', class: 'plain', 'aria-live': 'polite' });
    clear(body, h('h3', {}, outing.title), status, mapEl, left, leave);
    const map = liveMap(mapEl);
    const nameOf = (id) => (id === me ? t('you') : (this.names || {})[id] || t('friend', { id: shortId(id) }));
    const shown = new Set();
    let last = 0;
    const live = socket(this.api, `/api/live/ws/outings/${encodeURIComponent(outing.outing_id)}`, {
      onMessage: (message) => {
        if (message.type === 'group') {
          const members = message.members;
          status.textContent = t('outing.members', { n: members.length });
          status.dataset.n = String(members.length);
          // Whoever the group no longer has (they left, on any replica) leaves the map.
          const present = new Set(members.map((member) => member.user_id));
          for (const id of shown) if (!present.has(id) && id !== me) map.forget(id);
          shown.clear();
          for (const id of present) shown.add(id);
          for (const member of members) {
            if (typeof member.lat !== 'number') continue;
            const self = member.user_id === me;
            map.move(member.user_id, member.lat, member.lon, {
              label: nameOf(member.user_id),
              className: self ? 'runner-marker' : 'member-marker',
              colour: self ? '#0550ae' : null,
              follow: false,
            });
          }
          map.fit();
        } else if (message.type === 'left' && message.user_id !== me) {
          // Someone walked off: their marker goes, and the others are told who.
          shown.delete(message.user_id);
          map.forget(message.user_id);
          left.append(h('li', { 'data-user': message.user_id }, t('outing.left', { name: nameOf(message.user_id) })));
        } else if (message.type === 'closed') {
          status.textContent = t('outing.closed', { reason: message.reason });
          stop();
        }
      },
    });
    // Positions go to the group about once a second (a walk needs no more).
    const watch = navigator.geolocation?.watchPosition(
      (position) => {
        if (position.timestamp - last < 1000) return;
        last = position.timestamp;
        const c = position.coords;
        live.send({ t: position.timestamp / 1000, lat: c.latitude, lon: c.longitude, acc: Math.max(1, Math.min(500, c.accuracy)) });
        map.move(me, c.latitude, c.longitude, { label: t('you'), className: 'runner-marker', colour: '#0550ae' });
      },
      () => {},
      { enableHighAccuracy: true, maximumAge: 0 },
    );
    const stop = () => {
      if (watch !== undefined) navigator.geolocation.clearWatch(watch);
      live.close();
    };
    leave.addEventListener('click', () => {
      live.send({ type: 'leave' });
      setTimeout(stop, 300);
      this.outing();
    });
    this.cleanups.push(stop);
  }

  // -- watching ---------------------------------------------------------------------------

  watch(runId) {
    this.cleanups.push(watchRun(this.root, this.api, `/api/live/ws/runs/${encodeURIComponent(runId || '')}/watch`));
  }
}

// Watching a run: a friend (signed in) or anyone with a shared link (no account needed).
// Returns the function that stops it.
export function watchRun(root, api, path) {
  const state = h('p', { role: 'status', id: 'watch-state', 'aria-live': 'polite' }, t('watch.waiting'));
  const where = h('p', { id: 'watch-where' });
  const mapEl = h('div', { class: 'map run-map', id: 'watch-map', role: 'region', 'aria-label': t('watch.map') });
  clear(root, h('section', { class: 'card', id: 'watch' }, h('h2', {}, t('watch.title')), state, where, mapEl));
  const map = liveMap(mapEl);
  let moves = 0;
  const live = socket(api, path, {
    onMessage: (message) => {
      if (message.type === 'position') {
        if (message.hidden || typeof message.lat !== 'number') {
          state.textContent = t('watch.hidden');
          return;
        }
        map.extend(message.lat, message.lon);
        // For the figures: the marker is where the runner was at device time t.
        performance.mark('smartgym:watch-move', { detail: { t: message.t } });
        moves += 1;
        where.dataset.t = String(message.t);
        where.dataset.moves = String(moves);
        state.textContent = '';
        where.textContent = t('watch.where', {
          time: new Date(message.t * 1000).toLocaleTimeString(),
          km: km(message.distance_m),
        });
      } else if (message.type === 'finished') {
        state.textContent = t('watch.finished');
        root.querySelector('#watch').dataset.finished = 'true';
        live.close();
      }
    },
    onState: (phase) => {
      root.querySelector('#watch').dataset.live = phase;
    },
  });
  return () => live.close();
}

// A shared link opened by anyone, signed in or not.
export function showShared(root, token, header) {
  const main = h('main', { id: 'main' });
  clear(root, header, main);
  return watchRun(main, { token: null }, `/api/live/ws/share/${encodeURIComponent(token)}`);
}
