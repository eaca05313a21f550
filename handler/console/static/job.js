// A job's page, /jobs/{jobId}: its facts, its videos, its forward and its
// timeline (tracked, polls, deliveries with their raw bodies, the end, and
// the forward's attempts).

import { get, post, text, APIError } from './api.js';
import { h, fill, chip, label, time, exact, facts, safeURL } from './dom.js';

const enc = encodeURIComponent;

/** JobPage draws one job into root and keeps it current. */
export class JobPage {
  constructor(root, id) {
    this.root = root;
    this.id = id;
    this.bodies = new Map(); // delivery id -> raw body text, for those shown
    this.seen = '';
    this.videos = '';
  }

  /** load reads the job's timeline, or its plain record where the server has no timeline. */
  async read() {
    const base = '/v1/jobs/' + enc(this.id);
    try {
      return await get(base + '/timeline');
    } catch (err) {
      if (!(err instanceof APIError) || (err.status !== 404 && err.status !== 405)) throw err;
    }
    const job = await get(base); // 404 here: no such job
    return { job, polls: null, forwardAttempts: null };
  }

  /** show draws the page; later calls redraw only what changed. */
  async show() {
    let tl;
    try {
      tl = await this.read();
    } catch (err) {
      if (this.seen) return; // keep what is shown; the next refresh tries again
      const msg = err instanceof APIError && err.status === 404
        ? 'No job with id ' + this.id + ' is in the log.'
        : 'Could not load job ' + this.id + ': ' + err.message;
      fill(this.root, back(), h('h1', { tabindex: -1 }, 'Job not found'), h('p', { class: 'error', role: 'alert' }, msg));
      return;
    }
    const s = JSON.stringify(tl);
    if (s === this.seen) return;
    const first = !this.seen;
    this.seen = s;
    const j = tl.job;
    if (first) {
      fill(this.root,
        back(),
        h('h1', { tabindex: -1 }, 'Job ', h('code', { class: 'id' }, j.jobId)),
        h('div', { id: 'job-facts' }),
        h('section', { 'aria-labelledby': 'projects-title' },
          h('h2', { id: 'projects-title' }, 'Projects'), h('div', { id: 'job-projects', class: 'projects' })),
        h('section', { 'aria-labelledby': 'forward-title' },
          h('h2', { id: 'forward-title' }, 'Forward to the app'), h('div', { id: 'job-forward' }),
          h('button', { type: 'button', id: 'retry-forward', onclick: (e) => this.retry(e.currentTarget) }, 'Retry forward'),
          h('p', { id: 'retry-note', class: 'note', role: 'status' })),
        h('section', { 'aria-labelledby': 'timeline-title' },
          h('h2', { id: 'timeline-title' }, 'Timeline'), h('ol', { id: 'timeline', class: 'timeline' })));
    }
    this.facts(j);
    this.projects(j);
    this.forward(j);
    this.timeline(tl);
  }

  $(id) {
    return this.root.querySelector('#' + id);
  }

  facts(j) {
    fill(this.$('job-facts'), h('p', { class: 'status-line' }, chip(j.status),
      j.terminal ? null : h('span', null, ` ${j.progress}%`, j.stage ? ' · ' + j.stage : '')),
    facts([
      ['Source', j.source ? 'learned by ' + j.source : null],
      ['Projects', j.totalProjects ? `${j.completedProjects} of ${j.totalProjects} completed, ${j.failedProjects} failed` : null],
      ['Created', time(j.createdAt, false)],
      ['Ended', j.terminalAt ? time(j.terminalAt, false) : null],
      ['Feed seq', j.seq ? String(j.seq) : null],
      ['Webhook deliveries', String(j.deliveriesTotal ?? j.webhookDeliveries ?? 0)],
      ['Webhook missed', j.webhookMissed ? 'yes: the poller saw the end and no webhook came' : null],
      ['Polls', String(j.pollCount ?? 0)],
      ['Last error', j.lastError || null],
    ]));
  }

  projects(j) {
    const ps = j.projects || [];
    // A redraw would stop a video playing: draw again only when they change.
    const key = JSON.stringify(ps);
    if (key === this.videos) return;
    this.videos = key;
    if (!ps.length) {
      fill(this.$('job-projects'), h('p', { class: 'empty' }, j.terminal ? 'No projects.' : 'Projects show once the job ends.'));
      return;
    }
    fill(this.$('job-projects'), ps.map((p, i) => {
      const url = safeURL(p.videoUrl);
      const title = p.title || 'Project ' + (i + 1);
      const failed = h('p', { class: 'error', role: 'status' });
      const onerror = () => { failed.textContent = 'The video could not be loaded here.'; };
      return h('figure', { class: 'project' },
        url ? h('video', { controls: true, preload: 'metadata', playsinline: true, src: url, 'aria-label': 'Video: ' + title, onerror })
          : h('p', { class: 'novideo' }, 'No video'),
        failed,
        h('figcaption', null, h('strong', null, title), ' ', chip(p.status),
          url ? h('a', { href: url, rel: 'noreferrer', target: '_blank' }, 'open video') : null,
          p.projectId ? h('small', { class: 'id' }, p.projectId) : null));
    }));
  }

  forward(j) {
    const f = j.forward;
    const box = this.$('job-forward');
    this.$('retry-forward').hidden = !j.terminal;
    if (!f) {
      fill(box, h('p', null, j.terminal ? 'Not queued (forwarding is off, or this job was never queued).' : 'Queued once the job ends.'));
      return;
    }
    fill(box, h('p', { class: 'status-line' }, chip(f.state)), facts([
      ['Attempts', String(f.attempts)],
      ['Last status', f.lastStatus ? 'HTTP ' + f.lastStatus : null],
      ['Last error', f.lastError || null],
      ['Next attempt', f.nextAttemptAt ? time(f.nextAttemptAt) : null],
      ['Delivered', f.deliveredAt ? time(f.deliveredAt, false) : null],
    ]));
  }

  async retry(btn) {
    const note = this.$('retry-note');
    btn.disabled = true;
    note.textContent = 'Queuing…';
    try {
      const ans = await post('/v1/forwards/retry', { jobIds: [this.id] });
      note.textContent = ans.queued ? 'Queued again: it will be sent now.' : 'Nothing was queued.';
    } catch (err) {
      note.textContent = 'Retry failed: ' + err.message;
    } finally {
      btn.disabled = false;
    }
    await this.show();
  }

  timeline(tl) {
    const j = tl.job;
    const items = [];
    const deliveries = j.deliveries || [];
    const polls = tl.polls || [];
    const firstDelivery = deliveries[0]?.receivedAt;
    const byWebhook = firstDelivery && polls.length === 0 && Math.abs(new Date(firstDelivery) - new Date(j.createdAt)) < 1000;
    // First whatever its time: a job made by a webhook is created a moment
    // after the delivery is received.
    const created = entry(j.createdAt, 'created', byWebhook ? 'Created by its first webhook' : 'Tracked',
      byWebhook ? null : 'The reconciler polls it until it ends.');
    created.at = -Infinity;
    items.push(created);
    for (const p of polls) {
      const what = p.ended ? 'Poll ended the job: ' + label(p.status)
        : p.status ? 'Poll: ' + label(p.status) : 'Poll: no usable answer';
      items.push(entry(p.at, 'poll' + (p.error ? ' bad' : ''), what, p.error || null));
    }
    for (const d of deliveries) items.push(this.delivery(d));
    if (j.terminalAt) {
      items.push(entry(j.terminalAt, 'end', `Ended: ${label(j.status)}`,
        'Learned by ' + (j.source || '?') + (j.webhookMissed ? '; its webhook was missed' : '')));
    }
    for (const a of tl.forwardAttempts || []) {
      const result = a.status ? 'HTTP ' + a.status : 'no answer';
      items.push(entry(a.at, 'forward' + (a.state === 'delivered' ? '' : ' bad'),
        `Forward attempt ${a.attempt}: ${result}, ${label(a.state)}`,
        [a.error || null, a.tookMs !== undefined ? `took ${a.tookMs} ms` : null].filter(Boolean).join(' · ')));
    }
    items.sort((a, b) => a.at - b.at); // stable: ties keep the order above
    const note = tl.polls === null
      ? h('li', { class: 'note' }, 'This server does not keep polls and forward attempts for the timeline.') : null;
    // Keep the focus on a raw body's button through a redraw.
    const focused = document.activeElement?.getAttribute?.('aria-controls');
    fill(this.$('timeline'), items.map((i) => i.el), note);
    if (focused) this.root.querySelector(`button[aria-controls="${focused}"]`)?.focus();
  }

  delivery(d) {
    const verdict = d.outcome || (d.duplicate ? 'duplicate' : 'accepted');
    const pre = h('pre', { class: 'body', id: 'body-' + d.id, hidden: true, tabindex: 0 });
    const btn = h('button', {
      type: 'button', class: 'small', 'aria-expanded': 'false', 'aria-controls': 'body-' + d.id,
      onclick: () => this.toggleBody(d.id, btn, pre),
    }, 'Show raw body');
    if (this.bodies.has(d.id)) {
      pre.textContent = this.bodies.get(d.id);
      pre.hidden = false;
      btn.setAttribute('aria-expanded', 'true');
      btn.textContent = 'Hide raw body';
    }
    const extra = [d.attempt ? 'attempt ' + d.attempt : 'no attempt header', d.copies > 1 ? `${d.copies} identical copies` : null]
      .filter(Boolean).join(' · ');
    const e = entry(d.receivedAt, 'delivery' + (verdict === 'conflict' ? ' bad' : ''),
      `Webhook: ${label(d.status)}, ${verdict}`, extra);
    if (d.id > 0) e.el.append(btn, pre); // 0: a server that names no deliveries
    return e;
  }

  async toggleBody(id, btn, pre) {
    if (!pre.hidden) {
      pre.hidden = true;
      this.bodies.delete(id);
      btn.setAttribute('aria-expanded', 'false');
      btn.textContent = 'Show raw body';
      return;
    }
    btn.disabled = true;
    try {
      const body = await text(`/v1/jobs/${enc(this.id)}/deliveries/${enc(id)}/body`);
      this.bodies.set(id, body);
      pre.textContent = body;
      pre.hidden = false;
      btn.setAttribute('aria-expanded', 'true');
      btn.textContent = 'Hide raw body';
    } catch (err) {
      pre.textContent = 'Could not load the body: ' + err.message;
      pre.hidden = false;
    } finally {
      btn.disabled = false;
    }
  }
}

function back() {
  return h('p', { class: 'back' }, h('a', { href: '/' }, '← All jobs'));
}

function entry(at, kind, what, detail) {
  const el = h('li', { class: 'event ' + kind },
    h('time', { datetime: at, title: exact(at) }, exact(at)),
    h('p', { class: 'what' }, what),
    detail ? h('p', { class: 'detail' }, detail) : null);
  return { at: new Date(at).getTime(), el };
}
