// The job log (newest first, filterable by status, live) and the side
// panels: the reconciler, pending jobs and the forwarding queue.

import { get, post, APIError } from './api.js';
import { h, fill, chip, jobLink, label, time, facts, plural } from './dom.js';

/** statuses are every status a job can have, in the order the chips show them. */
export const statuses = ['pending', 'running', 'completed', 'partial', 'failed', 'cancelled', 'expired', 'not_found'];

const pageSize = 50;
// maxRows bounds the list a tab open for days keeps; past it the oldest
// rows go, and paging on from them needs a reload.
const maxRows = 1000;
const $ = (id) => document.getElementById(id);

/** Log is the log view's state and rendering. */
export class Log {
  constructor() {
    this.filter = new Set(); // statuses shown; empty shows all
    this.rows = new Map(); // jobId -> <li>
    this.cursor = '';
    this.stats = null;
    this.loaded = false;
    this.seen = {}; // panel -> last JSON rendered, to redraw only on change
    const q = new URLSearchParams(location.search).get('status');
    for (const s of (q || '').split(',')) if (statuses.includes(s)) this.filter.add(s);
    $('more').addEventListener('click', () => this.more());
    $('forwards-more').addEventListener('click', () => this.moreForwards());
  }

  /** load fetches the stats and the first page of jobs. */
  async load() {
    if (!this.stats) await this.refreshStats();
    await this.reload();
    this.loaded = true;
  }

  query(cursor) {
    const p = new URLSearchParams({ limit: String(pageSize) });
    if (this.filter.size) p.set('status', [...this.filter].join(','));
    if (cursor) p.set('cursor', cursor);
    return '/v1/jobs?' + p;
  }

  async reload() {
    const list = $('jobs');
    $('jobs-error').textContent = '';
    $('jobs-note').textContent = '';
    try {
      const ans = await get(this.query(''));
      list.replaceChildren();
      this.rows.clear();
      for (const j of ans.jobs) list.append(this.row(j));
      this.cursor = ans.nextCursor || '';
    } catch (err) {
      $('jobs-error').textContent = 'Could not load jobs: ' + err.message;
    }
    this.tidy();
  }

  async more() {
    const btn = $('more');
    btn.disabled = true;
    try {
      const ans = await get(this.query(this.cursor));
      for (const j of ans.jobs) if (!this.rows.has(j.jobId)) $('jobs').append(this.row(j));
      this.cursor = ans.nextCursor || '';
    } catch (err) {
      $('jobs-error').textContent = 'Could not load more jobs: ' + err.message;
    } finally {
      btn.disabled = false;
    }
    this.tidy();
  }

  tidy() {
    $('more').hidden = !this.cursor;
    $('jobs-empty').hidden = this.rows.size > 0;
  }

  row(j) {
    const projects = j.totalProjects ? `${j.completedProjects}/${j.totalProjects} projects` : '';
    const when = j.terminalAt
      ? ['ended ', time(j.terminalAt)]
      : ['updated ', time(j.updatedAt)];
    const li = h('li', { class: 'job', dataset: { jobId: j.jobId, status: j.status } },
      h('div', { class: 'job-head' }, jobLink(j.jobId), chip(j.status)),
      h('p', { class: 'meta' },
        j.source ? h('span', null, 'by ' + j.source) : null,
        projects ? h('span', null, projects) : null,
        h('span', null, when),
        j.webhookMissed ? h('span', { class: 'warn' }, 'webhook missed') : null,
        j.forward ? h('span', null, 'forward ' + label(j.forward.state)) : null));
    const old = this.rows.get(j.jobId);
    if (old) old.replaceWith(li);
    this.rows.set(j.jobId, li);
    return li;
  }

  /** ended takes a job from the change feed into the list, if the filter shows it. */
  ended(j) {
    if (!this.loaded) return;
    if (this.filter.size && !this.filter.has(j.status)) {
      this.rows.get(j.jobId)?.remove();
      this.rows.delete(j.jobId);
    } else {
      // A job the list has stays in its place (the list is in the order
      // jobs came into the log); a new one is the newest.
      const known = this.rows.has(j.jobId);
      const li = this.row(j);
      li.classList.add('fresh');
      if (!known) $('jobs').prepend(li);
      setTimeout(() => li.classList.remove('fresh'), 3000);
      while (this.rows.size > maxRows) {
        const last = $('jobs').lastElementChild;
        this.rows.delete(last.dataset.jobId);
        last.remove();
        this.cursor = '';
        $('jobs-note').textContent = `Showing the newest ${maxRows} jobs: reload the page to see older ones.`;
      }
    }
    this.tidy();
  }

  setFilter(s) {
    if (s === null) this.filter.clear();
    else if (this.filter.has(s)) this.filter.delete(s);
    else this.filter.add(s);
    const u = new URL(location.href);
    if (this.filter.size) u.searchParams.set('status', [...this.filter].join(','));
    else u.searchParams.delete('status');
    history.replaceState(null, '', u);
    this.chips();
    return this.reload();
  }

  chips() {
    const by = this.stats?.byStatus || {};
    const mk = (s, text, count) => h('button', {
      type: 'button',
      class: 'filter' + (s ? ' f-' + s : ''),
      'aria-pressed': s === null ? String(this.filter.size === 0) : String(this.filter.has(s)),
      dataset: { status: s ?? 'all' },
      onclick: () => this.setFilter(s),
    }, text, ' ', h('span', { class: 'count' }, String(count ?? 0)));
    const box = $('chips');
    const focused = document.activeElement?.closest?.('#chips') ? document.activeElement.dataset.status : null;
    fill(box, mk(null, 'all', this.stats?.jobs), statuses.map((s) => mk(s, label(s), by[s])));
    if (focused) box.querySelector(`[data-status="${focused}"]`)?.focus();
  }

  /** refreshStats reads /v1/stats and redraws the chips and the reconciler. */
  async refreshStats() {
    try {
      this.stats = await get('/v1/stats');
    } catch (err) {
      fill($('reconciler'), h('p', { class: 'error' }, 'Could not read the stats: ' + err.message));
      return null;
    }
    this.chips();
    this.reconciler();
    return this.stats;
  }

  changed(panel, data) {
    const s = JSON.stringify(data);
    if (this.seen[panel] === s) return false;
    this.seen[panel] = s;
    return true;
  }

  reconciler() {
    const st = this.stats;
    const p = st.poller || {};
    const box = $('reconciler');
    if (!this.changed('reconciler', [p, st.webhooksMissed, st.duplicates, st.rejectedSignatures, st.deliveries])) return;
    const counts = facts([
      ['Deliveries', String(st.deliveries ?? 0)],
      ['Duplicates', String(st.duplicates ?? 0)],
      ['Webhooks missed', String(st.webhooksMissed ?? 0)],
      ['Rejected signatures', String(st.rejectedSignatures ?? 0)],
    ], 'facts small');
    if (!p.enabled) {
      fill(box, h('p', null, 'Off: set NOUVEL_API_KEY to poll Nouvel for the jobs whose webhook is missed.'), counts);
      return;
    }
    const used = p.requestsLastMinute ?? 0;
    const budget = p.budgetPerMinute ?? 0;
    fill(box,
      p.stopped ? h('p', { class: 'error', role: 'alert' }, 'Stopped: ' + p.stopped) : null,
      p.pausedUntil ? h('p', { class: 'warn' }, 'Paused by Nouvel\'s rate limit until ', time(p.pausedUntil)) : null,
      h('p', { class: 'budget' },
        h('label', { for: 'budget-meter' }, `Budget: ${used} of ${budget} requests in the last minute`),
        h('meter', { id: 'budget-meter', min: 0, max: Math.max(budget, 1), value: used, high: budget * 0.8, optimum: 0 })),
      h('p', null, p.leader ? 'This replica polls.' : 'Standing by: another replica polls.'),
      counts);
  }

  /** refreshPending reads the jobs that have not ended yet. */
  async refreshPending() {
    let ans;
    try {
      ans = await get('/v1/jobs?status=pending,running&limit=20');
    } catch (err) {
      fill($('pending'), h('li', { class: 'error' }, 'Could not load: ' + err.message));
      return;
    }
    if (!this.changed('pending', ans)) return;
    fill($('pending'), ans.jobs.map((j) => h('li', null,
      h('div', { class: 'job-head' }, jobLink(j.jobId), chip(j.status)),
      h('p', { class: 'meta' },
        h('span', null, plural(j.pollCount, 'poll')),
        j.progress ? h('span', null, j.progress + '%') : null,
        j.stage ? h('span', null, j.stage) : null,
        j.nextPollAt ? h('span', null, 'next poll ', time(j.nextPollAt)) : h('span', null, 'updated ', time(j.updatedAt)),
        j.lastError ? h('span', { class: 'warn' }, j.lastError) : null))));
    $('pending-empty').hidden = ans.jobs.length > 0;
  }

  /** refreshForwards reads the forwarding queue's state and its first page. */
  async refreshForwards() {
    const fw = this.stats?.forwards;
    const state = $('forward-state');
    if (!fw) {
      if (this.changed('forwards', null)) {
        fill(state, h('p', null, 'Off: set NOUVELHOOK_FORWARD_URL to send every job that ends to your app.'));
        $('forwards').replaceChildren();
        $('forwards-more').hidden = true;
      }
      return;
    }
    let ans;
    try {
      ans = await get('/v1/forwards?limit=20');
    } catch (err) {
      this.seen.forwards = null;
      fill(state, h('p', { class: 'error' }, 'Could not load the queue: ' + err.message));
      return;
    }
    if (!this.changed('forwards', [fw, ans])) return;
    const by = fw.byState || {};
    fill(state,
      fw.paused ? h('div', { class: 'paused', role: 'alert' },
        h('p', null, 'Paused: ', fw.pauseReason || 'the app answered 410 Gone'),
        h('button', { type: 'button', onclick: (e) => this.resume(e.currentTarget) }, 'Resume forwarding')) : null,
      facts([
        ['Waiting', String(fw.depth ?? 0)],
        ['Failed', String(by.failed ?? 0)],
        ['Delivered', String(by.delivered ?? 0)],
        ['Oldest waiting', fw.oldestPending ? time(fw.oldestPending) : null],
      ], 'facts small'));
    fill($('forwards'), ans.forwards.map((f) => this.forwardRow(f)));
    this.forwardCursor = ans.nextCursor || '';
    $('forwards-more').hidden = !this.forwardCursor;
  }

  async moreForwards() {
    try {
      const ans = await get('/v1/forwards?limit=20&cursor=' + encodeURIComponent(this.forwardCursor));
      $('forwards').append(...ans.forwards.map((f) => this.forwardRow(f)));
      this.forwardCursor = ans.nextCursor || '';
      $('forwards-more').hidden = !this.forwardCursor;
    } catch (err) {
      $('forward-note').textContent = 'Could not load more: ' + err.message;
    }
  }

  forwardRow(f) {
    const again = f.state === 'failed' || f.state === 'paused' ? 'Retry' : f.state === 'delivered' ? 'Send again' : null;
    return h('li', { class: 'forward', dataset: { jobId: f.jobId, state: f.state } },
      h('div', { class: 'job-head' }, jobLink(f.jobId), chip(f.state)),
      h('p', { class: 'meta' },
        h('span', null, plural(f.attempts, 'attempt')),
        f.lastStatus ? h('span', null, 'last HTTP ' + f.lastStatus) : null,
        f.lastError ? h('span', { class: 'warn' }, f.lastError) : null,
        f.nextAttemptAt ? h('span', null, 'next ', time(f.nextAttemptAt)) : null,
        f.deliveredAt ? h('span', null, 'delivered ', time(f.deliveredAt)) : null),
      again ? h('button', {
        type: 'button', class: 'small', 'aria-label': `${again}: forward job ${f.jobId}`,
        onclick: (e) => this.retry(f.jobId, e.currentTarget),
      }, again) : null);
  }

  async retry(jobId, btn) {
    btn.disabled = true;
    const note = $('forward-note');
    try {
      const ans = await post('/v1/forwards/retry', { jobIds: [jobId] });
      note.textContent = `Queued ${ans.queued} forward again: ${jobId}`;
    } catch (err) {
      note.textContent = 'Retry failed: ' + err.message;
      btn.disabled = false;
      return;
    }
    await this.refreshSide();
  }

  async resume(btn) {
    btn.disabled = true;
    try {
      await post('/v1/forwards/resume', {});
    } catch (err) {
      btn.disabled = false;
      $('forward-note').textContent = 'Resume failed: ' + (err instanceof APIError ? err.message : String(err));
      return;
    }
    await this.refreshSide();
  }

  /** refreshSide redraws the chips and every side panel from fresh reads. */
  async refreshSide() {
    await this.refreshStats();
    await Promise.all([this.refreshPending(), this.refreshForwards()]);
  }
}
