// One prompt to several agents at once, the replies side by side as they
// stream in (POST /messages with stream: true).

import * as api from './api.js';
import { $, el, clear, status, submitOnCtrlEnter } from './dom.js';
import { list } from './agents.js';

let report = () => {};

export function setup(onError) {
  report = onError;
  $('fanout-form').addEventListener('submit', send);
  submitOnCtrlEnter($('fanout-prompt'));
}

/** Offers every live agent as a choice, keeping what was chosen. */
export async function open() {
  const chosen = new Set(checked());
  const agents = await list();
  const fieldset = $('fanout-agents');
  for (const old of fieldset.querySelectorAll('label')) old.remove();
  for (const agent of agents) {
    const box = el('input', {
      type: 'checkbox', name: 'agent', value: agent.name, checked: chosen.has(agent.name),
    });
    fieldset.append(el('label', { class: 'choice' }, box, ` ${agent.name}`));
  }
  if (agents.length === 0) fieldset.append(el('label', {}, 'No live agents: spawn some first.'));
}

function checked() {
  return [...document.querySelectorAll('#fanout-agents input:checked')].map((box) => box.value);
}

async function send(event) {
  event.preventDefault();
  const agents = checked();
  const content = $('fanout-prompt').value;
  if (agents.length === 0) {
    status('Choose at least one agent.', true);
    return;
  }
  const columns = new Map();
  const replies = clear($('fanout-replies'));
  for (const name of agents) {
    const text = el('div', { class: 'content' });
    const column = el('section', { class: 'reply', 'data-agent': name, 'aria-label': `Reply of ${name}` },
      el('h3', {}, name), text);
    columns.set(name, { column, text, streamed: false });
    replies.append(column);
  }
  try {
    await api.stream('POST', '/messages', { agents, content, stream: true }, (line) => {
      const target = columns.get(line.agent);
      if (!target) return;
      if (line.type === 'delta') {
        target.text.append(document.createTextNode(line.content));
      } else if (line.type === 'message') {
        // The stored reply is the whole text: show exactly that.
        target.text.textContent = line.message.content;
        target.column.classList.add('done');
      } else if (line.type === 'error') {
        target.column.append(el('p', { class: 'error' }, line.detail));
      }
    });
    status('Every agent answered.');
  } catch (error) {
    report(error);
  }
}
