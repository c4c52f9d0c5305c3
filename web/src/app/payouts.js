// The helper's money: what the balance is made of (the ledger) and payout requests. A
// request carries one key per form: sending it again after a lost answer is one payout.
import { h, clear, formatTime } from '../shared/dom.js';
import { addDictionary, t, lang } from '../shared/i18n.js';
import { explain } from '../shared/api.js';
import { words } from './payouts.words.js';

addDictionary(words);

const HELPER = '/api/helper/v1';

export class PayoutsSection {
  constructor(root, api) {
    this.root = root;
    this.api = api;
  }

  mount() {
    this.ledger = h('ul', { id: 'helper-ledger', class: 'tasks' });
    this.payouts = h('ul', { id: 'helper-payouts', class: 'tasks' });
    this.status = h('p', { role: 'status', id: 'payout-status' });
    const amount = h('input', { id: 'payout-amount', type: 'number', min: 1000, step: 1, required: true, inputmode: 'numeric' });
    const send = h('button', { type: 'submit', class: 'primary', id: 'payout-send' }, t('payout.send'));
    let key = crypto.randomUUID();
    const form = h(
      'form',
      {
        id: 'payout-form',
        onsubmit: async (event) => {
          event.preventDefault();
          send.disabled = true;
          this.status.textContent = '…';
          try {
            await this.api.post(`${HELPER}/me/payouts`, { amount_krw: Number(amount.value), client_key: key });
            key = crypto.randomUUID();
            form.reset();
            this.status.textContent = t('payout.sent');
            await this.refresh();
            this.onChange?.();
          } catch (error) {
            this.status.textContent = error.status === 409 || error.status === 422 ? t('payout.refused', { reason: error.detail }) : explain(error, t);
          } finally {
            send.disabled = false;
          }
        },
      },
      h('h3', {}, t('payout.request')),
      h('div', { class: 'field' }, h('label', { for: 'payout-amount' }, t('payout.amount')), amount),
      send,
      this.status,
    );
    clear(
      this.root,
      h('section', { class: 'card' }, h('h2', {}, t('payout.title')), form, h('h3', {}, t('payout.list')), this.payouts),
      h('section', { class: 'card' }, h('h2', {}, t('ledger.title')), this.ledger),
    );
  }

  async refresh() {
    try {
      const [ledger, payouts] = await Promise.all([this.api.get(`${HELPER}/me/ledger?limit=30`), this.api.get(`${HELPER}/me/payouts`)]);
      clear(
        this.ledger,
        ledger.entries.length
          ? ledger.entries.map((entry) =>
              h(
                'li',
                { class: 'task', dataset: { kind: entry.kind } },
                h('strong', {}, `${entry.amount_krw > 0 ? '+' : ''}${entry.amount_krw.toLocaleString()} KRW`),
                ` · ${t(`ledger.${entry.kind}`)} · `,
                h('span', { class: 'muted' }, formatTime(entry.created_at, lang())),
              ),
            )
          : h('li', { class: 'muted' }, t('ledger.none')),
      );
      clear(
        this.payouts,
        payouts.length
          ? payouts.map((payout) =>
              h(
                'li',
                { class: 'task', dataset: { status: payout.status, id: payout.id } },
                h('strong', {}, `${payout.amount_krw.toLocaleString()} KRW`),
                ` · ${t(`payout.status.${payout.status}`)} · `,
                h('span', { class: 'muted' }, formatTime(payout.requested_at, lang())),
                payout.note ? h('p', { class: 'muted' }, payout.note) : null,
              ),
            )
          : h('li', { class: 'muted' }, t('payout.none')),
      );
    } catch (error) {
      this.status.textContent = explain(error, t);
    }
  }
}
