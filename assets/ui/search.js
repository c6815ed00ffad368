// Search across every conversation, live or ended. The daemon marks each
// match in a snippet with `**`; the marked parts are shown as <mark>, and
// all of it as text.

import * as api from './api.js';
import { $, el, clear, when } from './dom.js';

let report = () => {};

export function setup(onError) {
  report = onError;
  $('search-form').addEventListener('submit', run);
}

export function focus() {
  $('search-q').focus();
}

async function run(event) {
  event.preventDefault();
  const q = $('search-q').value.trim();
  if (!q) return;
  try {
    const { results } = await api.call('GET', api.path.search(q));
    const list = clear($('search-results'));
    for (const hit of results) list.append(hitItem(hit));
    $('search-summary').textContent =
      results.length === 0 ? 'Nothing found.' : `${results.length} hit(s), best first.`;
  } catch (error) {
    report(error);
  }
}

function hitItem(hit) {
  const link = el('a', { href: `#agent/${encodeURIComponent(hit.agent)}` }, hit.agent);
  return el('li', { class: 'hit' },
    el('div', { class: 'meta' }, link, ' · ', hit.sender, ' · ',
      el('time', { datetime: hit.timestamp }, when(hit.timestamp))),
    el('div', { class: 'content' }, highlighted(hit.snippet)));
}

/** The snippet's text, every `**`-wrapped part in a <mark>. */
function highlighted(snippet) {
  return snippet.split('**').map((part, i) => (i % 2 === 1 ? el('mark', {}, part) : part));
}
