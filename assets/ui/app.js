// The page's entry: logs in with the one-time token from the link's
// fragment (then removes it from the address bar and history), shows one
// page at a time by the fragment (#agents, #agent/NAME, #search, #fanout,
// #usage),
// and follows the daemon's event stream for live updates.

import * as api from './api.js';
import { $, status } from './dom.js';
import * as agents from './agents.js';
import * as conversation from './conversation.js';
import * as search from './search.js';
import * as fanout from './fanout.js';
import * as approvals from './approvals.js';
import * as usage from './usage.js';

const pages = ['login', 'agents', 'conversation', 'search', 'fanout', 'usage'];
let events = null;

function show(page) {
  for (const name of pages) $(`page-${name}`).hidden = name !== page;
  for (const link of document.querySelectorAll('nav a')) {
    const current = link.id === `nav-${page}` || (page === 'conversation' && link.id === 'nav-agents');
    if (current) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  $('logout').hidden = page === 'login';
}

/** Shows the page the fragment names. */
async function route() {
  if (!api.hasSession()) return loggedOut('This tab has no session.');
  const hash = decodeURIComponent(location.hash.slice(1));
  try {
    if (hash.startsWith('agent/')) {
      show('conversation');
      await conversation.open(hash.slice('agent/'.length));
    } else if (hash === 'search') {
      show('search');
      search.focus();
    } else if (hash === 'fanout') {
      show('fanout');
      await fanout.open();
    } else if (hash === 'usage') {
      show('usage');
      await usage.refresh();
    } else {
      show('agents');
      await agents.refresh();
    }
    document.title = `${document.querySelector('section:not([hidden]) h2')?.textContent || 'orchestration'} — orchestration`;
  } catch (error) {
    failed(error);
  }
}

function loggedOut(reason) {
  if (events) events.abort();
  events = null;
  $('approvals').hidden = true;
  $('login-reason').textContent = reason;
  show('login');
}

/** Reports an error; a lost session sends the user back to `orchestration ui`. */
export function failed(error) {
  if (error instanceof api.ApiError && error.status === 401) {
    loggedOut(error.message);
    return;
  }
  status(error.message || String(error), true);
}

/** Follows GET /events, reconnecting after a pause when it ends. */
async function follow() {
  while (api.hasSession()) {
    events = new AbortController();
    try {
      await api.stream('GET', '/events', null, (line) => {
        agents.onEvent(line);
        conversation.onEvent(line);
        approvals.onEvent(line);
        usage.onEvent(line);
      }, events.signal);
    } catch (error) {
      if (error.name === 'AbortError') return;
      if (error instanceof api.ApiError && error.status === 401) return failed(error);
    }
    status('Lost the event stream; reconnecting…', true);
    await new Promise((resolve) => setTimeout(resolve, 2000));
    conversation.resync();
    approvals.refresh().catch(failed);
  }
}

async function start() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const token = fragment.get('t');
  if (token) {
    // The token is spent either way: keep it out of the address bar and history.
    history.replaceState(null, '', '/ui/#agents');
    try {
      await api.login(token);
    } catch (error) {
      return loggedOut(error.message);
    }
  }
  $('logout').addEventListener('click', async () => {
    try {
      await api.logout();
    } finally {
      loggedOut('You logged out.');
    }
  });
  agents.setup(failed);
  conversation.setup(failed);
  search.setup(failed);
  fanout.setup(failed);
  approvals.setup(failed);
  usage.setup(failed);
  window.addEventListener('hashchange', route);
  await route();
  if (!api.hasSession()) return;
  follow();
  approvals.refresh().catch(failed);
}

start();
