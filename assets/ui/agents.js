// The agents page: every live agent with its state, provider and model,
// messages, queue (messages waiting behind the one being answered) and
// token usage; spawn one, shut one down. Kept current by the event stream,
// and, while an agent is busy, by a re-read every second: a message joining
// a queue is no event.

import * as api from './api.js';
import { $, el, clear, status } from './dom.js';

let report = () => {};
let pending = null;
let polling = null;
const BUSY_POLL_MS = 1000;

export function setup(onError) {
  report = onError;
  $('spawn-form').addEventListener('submit', spawn);
}

/** The live agents, as the daemon lists them. */
export async function list() {
  return api.call('GET', '/agents');
}

export async function refresh() {
  const agents = await list();
  const body = clear($('agents-body'));
  for (const agent of agents) body.append(row(agent));
  $('agents-empty').hidden = agents.length > 0;
  $('agents-table').hidden = agents.length === 0;
  const busy = agents.some((agent) => agent.state === 'processing' || agent.queued > 0);
  if (busy && !polling) {
    polling = setTimeout(() => {
      polling = null;
      if (!$('page-agents').hidden) refresh().catch(report);
    }, BUSY_POLL_MS);
  }
}

function row(agent) {
  const usage = agent.usage ?? {};
  const model = agent.model ? ` / ${agent.model}` : '';
  const name = el('a', { href: `#agent/${encodeURIComponent(agent.name)}` }, agent.name);
  const state = el('span', { class: `state state-${agent.state}` }, agent.state);
  const shutdown = el('button', {
    type: 'button',
    class: 'danger',
    'aria-label': `Shut down ${agent.name}`,
    onclick: () => shutDown(agent.name),
  }, 'Shut down');
  return el('tr', { 'data-agent': agent.name },
    el('th', { scope: 'row' }, name),
    el('td', {}, state, agent.reason ? el('div', { class: 'muted' }, agent.reason) : null),
    el('td', {}, `${agent.profile ?? agent.provider}${model}`),
    el('td', { class: 'number' }, String(agent.message_count ?? 0)),
    el('td', { class: 'number queue' }, String(agent.queued ?? 0)),
    el('td', { class: 'number' }, `${usage.input_tokens ?? 0} / ${usage.output_tokens ?? 0}`),
    el('td', {}, shutdown));
}

async function spawn(event) {
  event.preventDefault();
  const value = (id) => $(id).value.trim() || undefined;
  const request = {
    name: value('spawn-name'),
    provider: value('spawn-provider'),
    profile: value('spawn-profile'),
    model: value('spawn-model'),
    instructions: value('spawn-instructions'),
    budget: value('spawn-budget'),
  };
  try {
    const info = await api.call('POST', '/agents', request);
    status(`Spawned ${info.name}.`);
    $('spawn-form').reset();
    await refresh();
  } catch (error) {
    report(error);
  }
}

async function shutDown(name) {
  if (!confirm(`Shut down ${name}? Its history stays readable.`)) return;
  try {
    await api.call('DELETE', api.path.agent(name), {});
    status(`Shut down ${name}.`);
    await refresh();
  } catch (error) {
    report(error);
  }
}

/** Refreshes the list (at most every half second) when agents change. */
export function onEvent(line) {
  if (!['spawned', 'state', 'shutdown', 'usage', 'message', 'suspended', 'restored'].includes(line.type)) return;
  if ($('page-agents').hidden || pending) return;
  pending = setTimeout(() => {
    pending = null;
    refresh().catch(report);
  }, 500);
}
