// Building the page's elements. Text from models, tools, agents and the
// daemon is only ever set as text (textContent / text nodes), never parsed
// as HTML: nothing here touches innerHTML.

/** An element with attributes and children; a string child becomes a text node. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') node.className = value;
    else if (name === 'text') node.textContent = value;
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  append(node, ...children);
  return node;
}

/** Appends children; strings as text nodes. */
export function append(node, ...children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(typeof child === 'string' ? document.createTextNode(child) : child);
  }
  return node;
}

/** Removes every child. */
export function clear(node) {
  while (node.firstChild) node.firstChild.remove();
  return node;
}

export function $(id) {
  return document.getElementById(id);
}

/** A local time for an RFC 3339 timestamp. */
export function when(timestamp) {
  const date = new Date(timestamp);
  return Number.isNaN(date.getTime()) ? String(timestamp ?? '') : date.toLocaleString();
}

/** Says something in the status line (announced to screen readers). */
export function status(text, error = false) {
  const node = $('status');
  node.textContent = text;
  node.classList.toggle('error', error);
}

/** Ctrl+Enter (Cmd+Enter on a Mac) in `textarea` submits its form. */
export function submitOnCtrlEnter(textarea) {
  textarea.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      textarea.form.requestSubmit();
    }
  });
}
