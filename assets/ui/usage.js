// The usage page: every budget in effect (the config's [[budgets]] and
// agents' own) with what it spent this period against its limit, what calls
// in flight hold, what is left and when it resets; then the ledger's totals
// and each agent's share. All of it is GET /usage, read again when the event
// stream says spending moved (`usage`, `budget`) or a turn ended (`state`).

import * as api from './api.js';
import { $, el, clear, when } from './dom.js';

let report = () => {};
let pending = null;

export function setup(onError) {
  report = onError;
}

/** GET /usage grouped by agent: totals, groups and budgets. */
export async function read() {
  return api.call('GET', '/usage?by=agent');
}

/** An amount as the CLI prints it: USD to the cent, more digits when a
 * call costs less than one (up to six decimals); tokens whole. */
export function amount(unit, value) {
  const number = Number(value ?? 0);
  if (unit !== 'usd') return number.toFixed(0);
  const trimmed = number.toFixed(6).replace(/0+$/, '');
  const cents = trimmed.split('.')[1] ?? '';
  return cents.length < 2 ? number.toFixed(2) : trimmed;
}

/** `spent / limit unit`, as the page and the conversation header show it. */
export function spentOfLimit(budget) {
  return `${amount(budget.unit, budget.spent)} / ${amount(budget.unit, budget.limit)} ${budget.unit}`;
}

/** When a budget resets, in local time, or `never` for a total. */
export function resets(budget) {
  return budget.resets ? when(budget.resets) : 'never';
}

export async function refresh() {
  const usage = await read();
  showBudgets(usage.budgets ?? []);
  showTotals(usage.total ?? {});
  showAgents(usage.groups ?? []);
}

function showBudgets(budgets) {
  const body = clear($('budgets-body'));
  for (const budget of budgets) body.append(budgetRow(budget));
  $('budgets-empty').hidden = budgets.length > 0;
  $('budgets-table').hidden = budgets.length === 0;
}

function budgetRow(budget) {
  const own = budget.source === 'spawn' ? el('span', { class: 'tag' }, 'own') : null;
  const meter = el('meter', {
    min: 0,
    max: budget.limit,
    value: budget.spent,
    high: budget.limit * 0.8,
    'aria-label': `${budget.scope} ${budget.period}: ${spentOfLimit(budget)} spent`,
  });
  return el('tr', { 'data-scope': budget.scope, 'data-period': budget.period, 'data-unit': budget.unit },
    el('th', { scope: 'row' }, budget.scope, own),
    el('td', {}, budget.period),
    el('td', { class: 'number spent' }, spentOfLimit(budget), el('div', {}, meter)),
    el('td', { class: 'number reserved' }, amount(budget.unit, budget.reserved)),
    el('td', { class: 'number remaining' }, amount(budget.unit, budget.remaining)),
    el('td', { class: 'resets' },
      budget.resets ? el('time', { datetime: budget.resets }, resets(budget)) : 'never'));
}

/** A group's cost: unknown when no call had a price, a lower bound when some had none. */
function cost(group) {
  if (group.cost_usd === null || group.cost_usd === undefined) return 'unknown';
  const text = amount('usd', group.cost_usd);
  return group.unpriced_calls > 0 ? `≥ ${text} (${group.unpriced_calls} unpriced)` : text;
}

function showTotals(total) {
  const figures = [
    ['Calls', String(total.calls ?? 0)],
    ['Input tokens', String(total.input_tokens ?? 0)],
    ['Output tokens', String(total.output_tokens ?? 0)],
    ['Cache read / write', `${total.cache_read_tokens ?? 0} / ${total.cache_write_tokens ?? 0}`],
    ['Reasoning tokens', String(total.reasoning_tokens ?? 0)],
    ['Cost USD', (total.calls ?? 0) === 0 ? '0.00' : cost(total)],
  ];
  const list = clear($('usage-totals'));
  for (const [label, value] of figures) {
    list.append(el('div', {}, el('dt', {}, label), el('dd', { 'data-total': label }, value)));
  }
}

function showAgents(groups) {
  const body = clear($('usage-agents-body'));
  for (const group of groups) {
    const name = el('a', { href: `#agent/${encodeURIComponent(group.key)}` }, group.key);
    body.append(el('tr', { 'data-agent': group.key },
      el('th', { scope: 'row' }, name),
      el('td', { class: 'number' }, String(group.calls)),
      el('td', { class: 'number' }, `${group.input_tokens} / ${group.output_tokens}`),
      el('td', { class: 'number' }, cost(group))));
  }
  $('usage-agents-table').hidden = groups.length === 0;
}

/** Reads /usage again (at most every half second) when spending may have moved. */
export function onEvent(line) {
  if (!['usage', 'budget', 'state'].includes(line.type)) return;
  if ($('page-usage').hidden || pending) return;
  pending = setTimeout(() => {
    pending = null;
    refresh().catch(report);
  }, 500);
}
