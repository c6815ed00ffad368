// Talking to the daemon. The session is an HttpOnly cookie the browser
// keeps; every request also carries the session's CSRF value, which only
// this page holds (in sessionStorage: this tab, this origin), and every
// request that changes something is sent as JSON.

const CSRF_KEY = 'orchestration-csrf';
let csrf = sessionStorage.getItem(CSRF_KEY);

export class ApiError extends Error {
  constructor(status, code, detail) {
    super(detail);
    this.status = status;
    this.code = code;
  }
}

/** Trades the one-time token from the link for a session. */
export async function login(token) {
  const response = await fetch('/ui/login', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ token }),
    credentials: 'same-origin',
    cache: 'no-store',
  });
  if (!response.ok) throw await errorOf(response);
  const body = await response.json();
  csrf = body.csrf;
  sessionStorage.setItem(CSRF_KEY, csrf);
}

export function hasSession() {
  return Boolean(csrf);
}

export async function logout() {
  try {
    await call('POST', '/ui/logout', {});
  } finally {
    csrf = null;
    sessionStorage.removeItem(CSRF_KEY);
  }
}

function init(method, body, signal) {
  const headers = { 'X-Orchestration-CSRF': csrf ?? '' };
  const request = { method, headers, credentials: 'same-origin', cache: 'no-store', signal };
  if (method !== 'GET') {
    headers['Content-Type'] = 'application/json';
    request.body = JSON.stringify(body ?? {});
  }
  return request;
}

async function errorOf(response) {
  try {
    const body = await response.json();
    return new ApiError(response.status, body.code ?? 'other', body.detail ?? response.statusText);
  } catch {
    return new ApiError(response.status, 'other', `${response.status} ${response.statusText}`);
  }
}

/** One JSON request; the parsed answer, or null for an empty one. */
export async function call(method, path, body) {
  const response = await fetch(path, init(method, body));
  if (!response.ok) throw await errorOf(response);
  if (response.status === 204) return null;
  return response.json();
}

/** A streamed (NDJSON) request: calls `onLine` with each parsed line. */
export async function stream(method, path, body, onLine, signal) {
  const response = await fetch(path, init(method, body, signal));
  if (!response.ok) throw await errorOf(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let newline;
    while ((newline = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, newline).trim();
      buffer = buffer.slice(newline + 1);
      if (line) onLine(JSON.parse(line));
    }
  }
  if (buffer.trim()) onLine(JSON.parse(buffer));
}

export const path = {
  agent: (name) => `/agents/${encodeURIComponent(name)}`,
  message: (name) => `/agents/${encodeURIComponent(name)}/message`,
  interrupt: (name) => `/agents/${encodeURIComponent(name)}/interrupt`,
  history: (name) => `/agents/${encodeURIComponent(name)}/history`,
  search: (q) => `/search?q=${encodeURIComponent(q)}&limit=50`,
};
