// One conversation: its history, then live through the event stream
// (the human's message, the reply streaming in, tool calls and results as
// collapsible blocks). Send with the form or Ctrl+Enter; interrupt a turn.
// Every text a model, a tool or a person wrote is shown as text.

import * as api from './api.js';
import { $, el, clear, when, status, submitOnCtrlEnter } from './dom.js';
import * as usage from './usage.js';

let report = () => {};
let current = null;
/** Ids of the messages shown, so history and events never show one twice. */
let shown = new Set();
/** The reply streaming in now, if any. */
let streaming = null;

export function setup(onError) {
  report = onError;
  $('send-form').addEventListener('submit', send);
  $('interrupt').addEventListener('click', interrupt);
  submitOnCtrlEnter($('prompt'));
}

export async function open(name) {
  current = name;
  $('conversation-title').textContent = name;
  await info();
  await load();
  $('prompt').focus();
}

async function info() {
  try {
    const agent = await api.call('GET', api.path.agent(current));
    const model = agent.model ? ` / ${agent.model}` : '';
    const tokens = agent.usage ?? {};
    $('conversation-info').textContent =
      `${agent.state} · ${agent.profile ?? agent.provider}${model} · ` +
      `${tokens.input_tokens ?? 0} tokens in, ${tokens.output_tokens ?? 0} out`;
    $('send-form').hidden = false;
    await ownBudget(agent);
  } catch (error) {
    if (!(error instanceof api.ApiError) || error.status !== 404) throw error;
    $('conversation-info').textContent = 'This agent has been shut down; its history is below.';
    $('conversation-budget').hidden = true;
    $('send-form').hidden = true;
  }
}

/** An agent's own budget (spawned with one) and where it stands now. */
async function ownBudget(agent) {
  const line = $('conversation-budget');
  if (!agent.budget) {
    line.hidden = true;
    return;
  }
  const { budgets } = await usage.read();
  const state = (budgets ?? []).find((b) => b.source === 'spawn' && b.scope === `agent:${agent.name}`);
  line.textContent = state
    ? `Budget ${agent.budget}: ${usage.spentOfLimit(state)} spent, ` +
      `${usage.amount(state.unit, state.remaining)} left, resets ${usage.resets(state)}`
    : `Budget ${agent.budget}`;
  line.hidden = false;
}

/** Shows the history from the start (again). */
async function load() {
  const { messages } = await api.call('GET', api.path.history(current));
  shown = new Set();
  streaming = null;
  const list = clear($('messages'));
  for (const message of messages) list.append(render(message));
  scroll();
}

/** After a reconnect: the events missed in between are in the history. */
export function resync() {
  if (current && !$('page-conversation').hidden) load().catch(report);
}

function render(message) {
  shown.add(message.id);
  const human = message.sender === 'human';
  const kind = message.message_type ?? 'chat';
  const head = el('div', { class: 'meta' },
    el('span', { class: 'sender' }, message.sender),
    ' ',
    el('time', { datetime: message.timestamp }, when(message.timestamp)),
    message.metadata?.interrupted ? el('span', { class: 'tag' }, 'interrupted') : null);
  let body;
  if (kind === 'tool_call' || kind === 'tool_result') {
    const tool = message.metadata?.tool ?? 'tool';
    const failed = message.metadata?.is_error ? ' (error)' : '';
    const label = kind === 'tool_call' ? `Tool call: ${tool}` : `Tool result: ${tool}${failed}`;
    const detail = kind === 'tool_call' && message.metadata?.input !== undefined
      ? JSON.stringify(message.metadata.input, null, 2)
      : message.content;
    body = el('details', { class: 'tool' }, el('summary', {}, label), el('pre', {}, detail));
  } else {
    body = el('div', { class: 'content' }, message.content);
  }
  return el('li', { class: `message ${human ? 'human' : 'agent'} ${kind}`, 'data-id': message.id }, head, body);
}

function scroll() {
  const list = $('messages');
  list.lastElementChild?.scrollIntoView({ block: 'nearest' });
}

/** An event of the agent shown: a message, a piece of a reply, a state change. */
export function onEvent(line) {
  if (!current || line.agent !== current || $('page-conversation').hidden) return;
  if (line.type === 'delta') {
    if (!streaming) {
      streaming = el('div', { class: 'content' });
      const item = el('li', { class: 'message agent chat streaming', 'aria-busy': 'true' },
        el('div', { class: 'meta' }, el('span', { class: 'sender' }, current), ' ', 'replying…'),
        streaming);
      $('messages').append(item);
    }
    streaming.append(document.createTextNode(line.content));
    scroll();
  } else if (line.type === 'message') {
    const message = line.message;
    if (shown.has(message.id)) return;
    if (message.metadata?.truncated) {
      load().catch(report);
      return;
    }
    if (message.sender !== 'human' && streaming) {
      streaming.closest('li').remove();
      streaming = null;
    }
    $('messages').append(render(message));
    scroll();
  } else if (['state', 'usage', 'budget', 'shutdown', 'suspended', 'restored'].includes(line.type)) {
    info().catch(report);
  }
}

async function send(event) {
  event.preventDefault();
  const prompt = $('prompt');
  const content = prompt.value;
  if (!content.trim()) return;
  prompt.value = '';
  const name = current;
  status(`Sent to ${name}.`);
  try {
    // The reply shows through the event stream; this stream only says how it ended.
    await api.stream('POST', api.path.message(name), { content, stream: true }, (line) => {
      if (line.type === 'error') status(`${name}: ${line.detail}`, true);
      if (line.type === 'done') status(`${name} replied.`);
    });
  } catch (error) {
    prompt.value = prompt.value || content;
    report(error);
  }
}

async function interrupt() {
  try {
    const { interrupted } = await api.call('POST', api.path.interrupt(current), {});
    status(interrupted ? `Interrupted ${current}.` : `${current} was not replying.`);
  } catch (error) {
    report(error);
  }
}
