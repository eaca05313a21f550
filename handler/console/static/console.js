// The console: one page that routes itself between the job log ("/") and
// a job's page ("/jobs/{jobId}"), follows the change feed, and asks for the
// admin token when the API wants one.

import { get, follow, onTokenNeeded, APIError } from './api.js';
import { Log } from './log.js';
import { JobPage } from './job.js';
import { tick } from './dom.js';

const $ = (id) => document.getElementById(id);
const refreshEvery = 5000;

const log = new Log();
let page = null; // the JobPage shown, if any
let booted = false;

// The token form: shown when a request is refused with 401, hidden once a
// token is typed; a token that is refused brings it back saying so.
onTokenNeeded((wrong) => new Promise((resolve) => {
  const panel = $('token-panel');
  const form = $('token-form');
  const input = $('token-input');
  $('token-error').textContent = wrong ? 'That token was refused. Check NOUVELHOOK_ADMIN_TOKEN and try again.' : '';
  input.setAttribute('aria-invalid', String(wrong));
  panel.hidden = false;
  $('live').textContent = 'Waiting for the admin token';
  input.value = '';
  input.focus();
  form.onsubmit = (e) => {
    e.preventDefault();
    const t = input.value.trim();
    if (!t) {
      $('token-error').textContent = 'Type the token first.';
      return;
    }
    form.onsubmit = null;
    panel.hidden = true;
    $('token-error').textContent = '';
    resolve(t);
  };
}));

/** route shows the view for the current address. */
function route(moved) {
  const m = location.pathname.match(/^\/jobs\/([^/]+)\/?$/);
  const logView = $('log-view');
  const jobView = $('job-view');
  if (m) {
    const id = decodeURIComponent(m[1]);
    logView.hidden = true;
    jobView.hidden = false;
    document.title = 'Job ' + id + ' · nouvelhook';
    if (!page || page.id !== id) {
      jobView.replaceChildren();
      page = new JobPage(jobView, id);
    }
    page.show().then(() => { if (moved) jobView.querySelector('h1')?.focus(); });
  } else {
    page = null;
    jobView.hidden = true;
    jobView.replaceChildren();
    logView.hidden = false;
    document.title = 'nouvelhook';
    if (moved) $('log-title').focus();
    if (booted && !log.loaded) log.load();
  }
}

/** go moves to a console address without reloading the page. */
function go(href) {
  history.pushState(null, '', href);
  route(true);
}

// Links to the console's own addresses move in place; others (videos) and
// modified clicks (new tab) behave as links do.
document.addEventListener('click', (e) => {
  const a = e.target.closest?.('a[href]');
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  if (a.target || a.origin !== location.origin) return;
  if (a.hash && a.pathname === location.pathname) return; // a place on this page
  if (a.pathname !== '/' && !a.pathname.startsWith('/jobs/')) return;
  e.preventDefault();
  go(a.pathname + a.search);
});
window.addEventListener('popstate', () => route(true));

// Search: the job's page when the log has it, a clear line when not.
$('search').addEventListener('submit', async (e) => {
  e.preventDefault();
  const input = $('search-id');
  const err = $('search-error');
  const id = input.value.trim();
  err.textContent = '';
  if (!id) {
    err.textContent = 'Type a job id to find.';
    input.focus();
    return;
  }
  if (!/^[A-Za-z0-9_-]{1,128}$/.test(id)) {
    err.textContent = 'A job id has only letters, digits, "-" and "_".';
    input.focus();
    return;
  }
  try {
    await get('/v1/jobs/' + encodeURIComponent(id));
  } catch (x) {
    err.textContent = x instanceof APIError && x.status === 404 ? 'No job with id ' + id + ' is in the log.' : 'Search failed: ' + x.message;
    input.focus();
    return;
  }
  go('/jobs/' + encodeURIComponent(id));
});

// announce tells screen readers, quietly, that jobs ended.
let announced = [];
let announceTimer = 0;
function announce(job) {
  announced.push(job);
  clearTimeout(announceTimer);
  announceTimer = setTimeout(() => {
    const n = announced.length;
    $('announce').textContent = n === 1
      ? `Job ${announced[0].jobId} ended: ${announced[0].status.replace(/_/g, ' ')}`
      : `${n} jobs ended`;
    announced = [];
  }, 1000);
}

let sideTimer = 0;
function refreshSoon() {
  clearTimeout(sideTimer);
  sideTimer = setTimeout(refresh, 300);
}

function refresh() {
  if (document.hidden) return;
  tick();
  if (page) page.show();
  else if (log.loaded) log.refreshSide();
}

function onJob(job) {
  log.ended(job);
  announce(job);
  if (page && page.id === job.jobId) page.show();
  refreshSoon();
}

function onState(state, err) {
  const live = $('live');
  live.dataset.state = state;
  live.textContent = state === 'live' ? 'Live' : state === 'error' ? 'Disconnected: ' + (err?.message || 'stream ended') : 'Reconnecting…';
}

async function boot() {
  route(false);
  // The feed is followed from the stats' lastSeq, so nothing older is
  // streamed again: without it, wait rather than read from the start.
  let stats;
  while (!(stats = await log.refreshStats())) await new Promise((r) => setTimeout(r, 2000));
  booted = true;
  if (!page) await log.load();
  log.refreshPending();
  log.refreshForwards();
  follow(stats.lastSeq ?? 0, onJob, onState, new AbortController().signal);
  setInterval(refresh, refreshEvery);
  document.addEventListener('visibilitychange', refresh);
}

boot();
