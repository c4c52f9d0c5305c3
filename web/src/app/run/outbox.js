// The run's points on this phone until the server says they are stored (an `ack` by device
// time). They live in IndexedDB as well as in memory, so a tunnel, a dead socket or a
// closed tab loses nothing: the page that opens next sends them, in order, and the server
// stores each moment once (a point's device time is its identity).
const DB = 'smartgym-run';
const STORE = 'points';

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

let opening = null;
function database() {
  if (!opening) {
    opening = new Promise((resolve, reject) => {
      const req = indexedDB.open(DB, 1);
      // Keyed by (run, device time): a point put twice is one row.
      req.onupgradeneeded = () => req.result.createObjectStore(STORE, { keyPath: ['run', 't'] });
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    }).catch((error) => {
      opening = null; // private mode without IndexedDB: memory only, tried again next time
      throw error;
    });
  }
  return opening;
}

async function store(mode, work) {
  const db = await database();
  const tx = db.transaction(STORE, mode);
  const result = work(tx.objectStore(STORE));
  await new Promise((resolve, reject) => {
    tx.oncomplete = resolve;
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
  return result instanceof IDBRequest ? result.result : result;
}

export class Outbox {
  // run: this phone's key for the run (known before the server has named it).
  constructor(run) {
    this.run = run;
    this.items = []; // in device-time order: points, and the pause/resume buttons between them
    this.saving = Promise.resolve();
  }

  async load() {
    try {
      const rows = await store('readonly', (points) => points.getAll(IDBKeyRange.bound([this.run, 0], [this.run, Infinity])));
      const known = new Set(this.items.map((item) => item.t));
      for (const row of rows) if (!known.has(row.t)) this.items.push(row.item);
      this.items.sort((a, b) => a.t - b.t);
    } catch {
      /* nothing kept: memory only */
    }
    return this.items.length;
  }

  add(item) {
    const last = this.items[this.items.length - 1];
    if (last && item.t <= last.t) return false; // the phone's clock went back: not a new moment
    this.items.push(item);
    this.saving = this.saving
      .then(() => store('readwrite', (points) => points.put({ run: this.run, t: item.t, item })))
      .catch(() => {});
    return true;
  }

  // Everything up to device time `t` is stored on the server.
  acknowledge(t) {
    const before = this.items.length;
    this.items = this.items.filter((item) => item.t > t);
    if (this.items.length !== before) {
      this.saving = this.saving
        .then(() => store('readwrite', (points) => points.delete(IDBKeyRange.bound([this.run, 0], [this.run, t]))))
        .catch(() => {});
    }
  }

  after(t) {
    return this.items.filter((item) => item.t > t);
  }

  get size() {
    return this.items.filter((item) => item.kind === 'point').length;
  }

  async clear() {
    this.items = [];
    this.saving = this.saving
      .then(() => store('readwrite', (points) => points.delete(IDBKeyRange.bound([this.run, 0], [this.run, Infinity]))))
      .catch(() => {});
    await this.saving;
  }
}
