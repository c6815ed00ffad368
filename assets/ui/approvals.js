// The approvals panel, on every page while something waits: each pending
// tool call with its agent, tool, summary, working directory and age, and
// Approve / Deny (with an optional reason). Loaded from GET /approvals and
// kept current by the event stream's approval_requested / approval_resolved.

import * as api from './api.js';
import { $, el, clear, status, when } from './dom.js';

let report = () => {};
/** The pending approvals by id, oldest first (insertion order). */
const pending = new Map();

export function setup(onError) {
  report = onError;
}

/** Reloads the list from the daemon (at login and after a lost stream). */
export async function refresh() {
  const listed = await api.call('GET', '/approvals');
  pending.clear();
  for (const approval of listed) pending.set(approval.id, approval);
  render();
}

export function onEvent(line) {
  if (line.type === 'approval_requested' && line.approval) {
    pending.set(line.approval.id, line.approval);
    render();
  } else if (line.type === 'approval_resolved') {
    if (pending.delete(line.approval_id)) render();
  }
}

/** How long ago, in words a person reads at a glance. */
function age(timestamp) {
  const seconds = Math.max(0, Math.round((Date.now() - new Date(timestamp).getTime()) / 1000));
  if (Number.isNaN(seconds)) return '';
  if (seconds < 60) return `${seconds}s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m ago`;
  return `${Math.floor(seconds / 3600)}h ago`;
}

function render() {
  const list = clear($('approvals-list'));
  for (const approval of pending.values()) list.append(item(approval));
  $('approvals').hidden = pending.size === 0;
  $('approvals-count').textContent = String(pending.size);
}

function item(approval) {
  const reasonId = `approval-reason-${approval.id}`;
  const reason = el('input', { id: reasonId, class: 'reason', placeholder: '(optional)', autocomplete: 'off' });
  const approve = el('button', {
    type: 'button',
    class: 'approve',
    'aria-label': `Approve ${approval.tool} for ${approval.agent}`,
    onclick: () => answer(approval, 'approve'),
  }, 'Approve');
  const deny = el('button', {
    type: 'button',
    class: 'danger deny',
    'aria-label': `Deny ${approval.tool} for ${approval.agent}`,
    onclick: () => answer(approval, 'deny', reason.value.trim() || undefined),
  }, 'Deny');
  // Enter in the reason denies: typing a reason means the answer is no.
  reason.addEventListener('keydown', (event) => {
    if (event.key === 'Enter') {
      event.preventDefault();
      deny.click();
    }
  });
  return el('li', { class: 'approval', 'data-approval': approval.id },
    el('div', { class: 'meta' },
      el('span', { class: 'sender' }, approval.agent),
      el('span', { class: 'tag tool' }, approval.tool),
      el('time', { class: 'age', datetime: approval.requested_at, title: when(approval.requested_at) },
        ` ${age(approval.requested_at)}`)),
    el('pre', { class: 'summary' }, approval.summary),
    approval.cwd ? el('div', { class: 'muted cwd' }, `in ${approval.cwd}`) : null,
    el('div', { class: 'buttons' },
      approve,
      el('label', { for: reasonId, class: 'choice' }, 'Reason ', reason),
      deny));
}

async function answer(approval, decision, reason) {
  try {
    await api.call('POST', `/approvals/${encodeURIComponent(approval.id)}`, { decision, reason });
    status(`${decision === 'approve' ? 'Approved' : 'Denied'} ${approval.tool} for ${approval.agent}.`);
  } catch (error) {
    // 404/409: answered elsewhere or timed out; either way it is no longer pending.
    if (!(error instanceof api.ApiError) || ![404, 409].includes(error.status)) return report(error);
    status(error.message, true);
  }
  if (pending.delete(approval.id)) render();
}
