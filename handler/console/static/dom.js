// DOM helpers. Every piece of data reaches the page as text or as an
// attribute value: nothing here parses HTML.

/**
 * h makes an element. attrs: "class", "on<event>" handlers, "dataset", and
 * plain attributes (true for a bare one; null, undefined and false are
 * left out). Children are nodes or text; arrays are flattened.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  add(el, children);
  return el;
}

function add(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** fill replaces el's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  add(el, children);
  return el;
}

/**
 * safeURL returns an absolute http(s) URL for s, or null: a video address
 * from a webhook must not become a javascript: link.
 */
export function safeURL(s) {
  if (typeof s !== 'string' || s === '') return null;
  try {
    const u = new URL(s, location.href);
    return u.protocol === 'https:' || u.protocol === 'http:' ? u.href : null;
  } catch {
    return null;
  }
}

/** jobHref is the console's own address of a job's page. */
export function jobHref(id) {
  return '/jobs/' + encodeURIComponent(id);
}

/** jobLink is a real link to a job's page. */
export function jobLink(id, attrs) {
  return h('a', { href: jobHref(id), class: 'job-id', ...attrs }, id);
}

/** chip shows a status (of a job or a forward) as a coloured label. */
export function chip(status) {
  return h('span', { class: 'chip s-' + String(status).replace(/[^a-z_]/g, '') }, label(status));
}

/** plural counts n of a thing: "1 poll", "3 polls". */
export function plural(n, word) {
  return `${n ?? 0} ${word}${n === 1 ? '' : 's'}`;
}

/** label is a status as people read it. */
export function label(status) {
  return String(status || '').replace(/_/g, ' ');
}

const full = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

/** exact formats an RFC 3339 time in the reader's zone. */
export function exact(iso) {
  const d = new Date(iso);
  return isNaN(d) ? String(iso) : full.format(d);
}

/** ago says how far an RFC 3339 time is from now: "12 s ago", "in 3 min". */
export function ago(iso, now = Date.now()) {
  const d = new Date(iso);
  if (isNaN(d)) return String(iso);
  const s = Math.round((d.getTime() - now) / 1000);
  const a = Math.abs(s);
  let text;
  if (a < 2) return 'now';
  if (a < 60) text = a + ' s';
  else if (a < 3600) text = Math.round(a / 60) + ' min';
  else if (a < 86400) text = Math.round(a / 3600) + ' h';
  else return full.format(d);
  return s < 0 ? text + ' ago' : 'in ' + text;
}

/** time is a <time> element: relative text, the exact time on hover. */
export function time(iso, relative = true) {
  if (!iso) return h('span', null, '—');
  return h('time', { datetime: iso, title: exact(iso), class: relative ? 'rel' : null }, relative ? ago(iso) : exact(iso));
}

/** tick brings every relative time under root up to date. */
export function tick(root = document) {
  const now = Date.now();
  for (const t of root.querySelectorAll('time.rel')) t.textContent = ago(t.getAttribute('datetime'), now);
}

/** facts is a description list from [term, value] pairs; empty values are left out. */
export function facts(pairs, cls = 'facts') {
  return h('dl', { class: cls }, pairs.filter(([, v]) => v !== null && v !== undefined && v !== '')
    .map(([k, v]) => h('div', null, h('dt', null, k), h('dd', null, v))));
}
