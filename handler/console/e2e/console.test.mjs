// Drives the console in Debian's headless Chromium through playwright-core.
// cmd/nouvelhook's TestConsole starts the services and runs one case per
// process: node console.test.mjs CASE. Settings come from the environment:
//
//   CONSOLE_URL        admin listener of a service without a token
//   PUBLIC_URL         its public listener, for live webhooks
//   WEBHOOK_SECRET     the secret webhooks are signed with
//   JOBS               job ids the log holds, comma-separated, newest first
//   FAILED_JOB         a job that ended failed
//   VIDEO_JOB          a job whose project's video is VIDEO_URL
//   VIDEO_URL          a WebM on a local server
//   VIDEO_BODY         the exact bytes of VIDEO_JOB's first delivery
//   PENDING_JOB        a job the reconciler is polling
//   POLL_JOB           a tracked job that the reconciler's polls end
//   FORWARD_JOB        a job whose forward failed (queue's Retry)
//   FORWARD_JOB_PAGE   another (the job page's Retry forward)
//   GONE_JOB           a job whose forward the app answered 410 (pause_resume)
//   TOKEN_CONSOLE_URL  admin listener of a service with ADMIN_TOKEN
//   SCREENSHOTS        folder for screenshots
//   CHROMIUM           the browser (default /usr/bin/chromium)
//
// It prints "ok CASE" and exits 0, or prints why and exits 1.

import { createHmac } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const env = process.env;
const wait = { timeout: 30000 }; // CI runs other packages' tests at the same time
const jobs = (env.JOBS || '').split(',').filter(Boolean);
const shots = env.SCREENSHOTS || '.';

class Failure extends Error {}
function check(ok, msg) {
  if (!ok) throw new Failure(msg);
}

async function open(browser, url, opts = {}) {
  const context = await browser.newContext({
    viewport: opts.viewport || { width: 1280, height: 800 },
    colorScheme: opts.colorScheme || 'light',
    deviceScaleFactor: 1,
  });
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  page.on('console', (m) => {
    // A refused token is answered 401, which the browser logs: expected.
    if (m.type() === 'error' && !/401/.test(m.text())) problems.push('console error: ' + m.text());
  });
  page.problems = problems;
  await page.goto(url);
  return page;
}

// noProblems fails on errors the page logged, but for those expected.
function noProblems(page, expected) {
  const left = page.problems.filter((p) => !(expected && expected.test(p)));
  check(left.length === 0, 'the page reported: ' + left.join('; '));
}

// rows answers the job ids the log view lists, in order.
function rows(page) {
  return page.$$eval('#jobs > li', (lis) => lis.map((li) => ({ id: li.dataset.jobId, status: li.dataset.status })));
}

async function listShows(page, ids) {
  await page.waitForFunction((ids) => {
    const shown = new Set([...document.querySelectorAll('#jobs > li')].map((li) => li.dataset.jobId));
    return ids.every((id) => shown.has(id));
  }, ids, wait);
}

const cases = {
  // The list shows the log newest first, counts by status, the reconciler
  // and pending jobs; every control has a name; screenshots at 1280 and 360.
  async list(browser) {
    const page = await open(browser, env.CONSOLE_URL + '/');
    await listShows(page, jobs.slice(0, 10));
    const got = (await rows(page)).map((r) => r.id);
    check(got.length === 50, `first page: got ${got.length} rows, want 50`);
    check(got.slice(0, 10).join() === jobs.slice(0, 10).join(), `order: got ${got.slice(0, 10)}, want ${jobs.slice(0, 10)}`);
    await page.click('#more');
    await page.waitForFunction((n) => document.querySelectorAll('#jobs > li').length === n, jobs.length, wait);
    check(await page.isHidden('#more'), 'Load more still shown after the last page');

    const all = await page.textContent('#chips [data-status="all"] .count');
    check(Number(all) === jobs.length, `"all" chip counts ${all}, want ${jobs.length}`);
    await page.waitForSelector(`#pending a[href="/jobs/${env.PENDING_JOB}"]`, wait);
    await page.waitForFunction(() => /Budget: \d+ of \d+ requests/.test(document.querySelector('#reconciler').textContent), null, wait);
    await page.waitForFunction(() => document.querySelector('#live').dataset.state === 'live', null, wait);

    const unnamed = await page.evaluate(() => [
      ...[...document.querySelectorAll('input')].filter((i) => i.labels.length === 0).map((i) => 'input#' + i.id),
      ...[...document.querySelectorAll('button')].filter((b) => !(b.getAttribute('aria-label') || b.textContent).trim()).map((b) => b.outerHTML),
      ...[...document.querySelectorAll('a')].filter((a) => !a.getAttribute('href') || !a.textContent.trim()).map((a) => a.outerHTML),
    ]);
    check(unnamed.length === 0, 'controls without a name or label: ' + unnamed.join(', '));

    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: join(shots, 'console-1280.png') });
    const light = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    noProblems(page);
    await page.context().close();

    const narrow = await open(browser, env.CONSOLE_URL + '/', { viewport: { width: 360, height: 780 }, colorScheme: 'dark' });
    await listShows(narrow, jobs.slice(0, 5));
    const width = await narrow.evaluate(() => document.documentElement.scrollWidth);
    check(width <= 360, `at 360 px wide the page is ${width} px wide: it scrolls sideways`);
    const dark = await narrow.evaluate(() => getComputedStyle(document.body).backgroundColor);
    check(dark !== light, `dark scheme has the light background ${dark}`);
    await narrow.screenshot({ path: join(shots, 'console-360.png') });
    // Narrow, the panels are below the list: a link jumps there, in place.
    await narrow.click('nav.jump a[href="#fwd-title"]');
    await narrow.waitForFunction(() => location.hash === '#fwd-title', null, wait);
    const top = await narrow.evaluate(() => document.querySelector('#fwd-title').getBoundingClientRect().top);
    check(top > -2 && top < 100, `after the jump, Forwarding's heading is at ${top} px`);
    check(await narrow.locator('#jobs > li').count() > 0, 'the jump reloaded the list');
    noProblems(narrow);
  },

  // A signed webhook sent while the page is open shows at the top of the
  // list, and in the counts, with no reload.
  async live(browser) {
    const page = await open(browser, env.CONSOLE_URL + '/');
    await listShows(page, jobs.slice(0, 3));
    await page.waitForFunction(() => document.querySelector('#live').dataset.state === 'live', null, wait);
    const before = Number(await page.textContent('#chips [data-status="completed"] .count'));
    await page.evaluate(() => { window.notReloaded = true; });

    const id = 'live-' + Date.now();
    const body = JSON.stringify({
      event: 'job.completed', jobId: id, status: 'completed', totalProjects: 1, completedProjects: 1,
      failedProjects: 0, projects: [{ projectId: 'p-' + id, title: 'Live ad', status: 'completed', videoUrl: env.VIDEO_URL }],
    });
    const resp = await fetch(env.PUBLIC_URL + '/webhooks/nouvel', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Nouvel-Signature': createHmac('sha256', env.WEBHOOK_SECRET).update(body).digest('hex') },
      body,
    });
    check(resp.status === 200, `webhook answered ${resp.status}: ${await resp.text()}`);

    await page.waitForFunction((id) => document.querySelector('#jobs > li')?.dataset.jobId === id, id, wait);
    await page.waitForFunction((n) => Number(document.querySelector('#chips [data-status="completed"] .count').textContent) === n,
      before + 1, wait);
    check(await page.evaluate(() => window.notReloaded === true), 'the page reloaded');
    noProblems(page);
  },

  // Status chips filter the list (by keyboard too) and keep the filter in
  // the address; search finds a job by id and says when there is none.
  async filter_search(browser) {
    const page = await open(browser, env.CONSOLE_URL + '/');
    await listShows(page, jobs.slice(0, 3));
    await page.focus('#chips [data-status="failed"]');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => {
      const lis = [...document.querySelectorAll('#jobs > li')];
      return lis.length > 0 && lis.every((li) => li.dataset.status === 'failed');
    }, null, wait);
    const failed = await rows(page);
    check(failed.some((r) => r.id === env.FAILED_JOB), `filtered list lacks ${env.FAILED_JOB}: ${JSON.stringify(failed)}`);
    check(new URL(page.url()).searchParams.get('status') === 'failed', 'filter not in the address: ' + page.url());
    check(await page.getAttribute('#chips [data-status="failed"]', 'aria-pressed') === 'true', 'failed chip not pressed');

    await page.reload();
    await page.waitForFunction(() => {
      const lis = [...document.querySelectorAll('#jobs > li')];
      return lis.length > 0 && lis.every((li) => li.dataset.status === 'failed');
    }, null, wait);
    await page.click('#chips [data-status="all"]');
    await listShows(page, jobs.slice(0, 10));

    // Search, by keyboard: an unknown id says so; a known one opens its page.
    await page.focus('#search-id');
    await page.keyboard.type('no-such-job');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => /No job with id no-such-job/.test(document.querySelector('#search-error').textContent), null, wait);
    await page.fill('#search-id', env.FAILED_JOB);
    await page.keyboard.press('Enter');
    await page.waitForURL('**/jobs/' + env.FAILED_JOB, wait);
    await page.waitForFunction((id) => document.querySelector('#job-view h1')?.textContent.includes(id), env.FAILED_JOB, wait);
    check(await page.isHidden('#log-view'), 'the log still shows on a job page');
    check(await page.textContent('#search-error') === '', 'search error still shown');

    // Back to the log with the browser's Back; then a job link, by keyboard.
    await page.goBack();
    await page.waitForSelector('#log-view', { state: 'visible', ...wait });
    const link = `#jobs a[href="/jobs/${jobs[1]}"]`;
    await page.focus(link);
    await page.keyboard.press('Enter');
    await page.waitForURL('**/jobs/' + jobs[1], wait);
    await page.waitForFunction((id) => document.querySelector('#job-view h1')?.textContent.includes(id), jobs[1], wait);
    noProblems(page, /status of 404/); // the search for no-such-job
  },

  // A job's page plays its video from the local server, and shows its
  // timeline with the delivery's raw body on demand.
  async video(browser) {
    const page = await open(browser, env.CONSOLE_URL + '/jobs/' + env.VIDEO_JOB);
    const video = await page.waitForSelector('#job-view video', wait);
    check(await video.getAttribute('src') === env.VIDEO_URL, 'video src: ' + await video.getAttribute('src'));
    check(await video.evaluate((v) => v.controls), 'video has no controls');
    const played = await video.evaluate((v) => new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no playback: readyState ${v.readyState}, error ${v.error?.message}`)), 15000);
      v.addEventListener('timeupdate', () => {
        if (v.currentTime > 0.2) { clearTimeout(t); resolve({ time: v.currentTime, ready: v.readyState, w: v.videoWidth }); }
      });
      v.muted = true;
      v.play().catch(reject);
    }));
    check(played.ready >= 2 && played.w === 160, 'playback state: ' + JSON.stringify(played));

    // The timeline: created, the deliveries with their verdicts, the end.
    await page.waitForSelector('#timeline li.end', wait);
    const events = await page.$$eval('#timeline > li .what', (ps) => ps.map((p) => p.textContent));
    check(events.some((e) => /^Webhook: completed, accepted/.test(e)), 'no accepted delivery in ' + JSON.stringify(events));
    check(events.some((e) => /^Webhook: failed, conflict/.test(e)), 'no conflicting delivery in ' + JSON.stringify(events));
    check(events.some((e) => /^Ended: completed/.test(e)), 'no end in ' + JSON.stringify(events));
    const show = page.locator('#timeline button', { hasText: 'Show raw body' }).first();
    await show.click();
    const pre = page.locator('#timeline pre.body').first();
    await pre.waitFor({ state: 'visible', ...wait });
    const raw = await pre.textContent();
    check(raw === env.VIDEO_BODY, `raw body: got ${JSON.stringify(raw)}, want ${JSON.stringify(env.VIDEO_BODY)}`);
    check(await page.locator('#timeline button[aria-expanded="true"]').count() === 1, 'raw body button not expanded');

    await page.screenshot({ path: join(shots, 'job-1280.png'), fullPage: true });
    await page.setViewportSize({ width: 360, height: 780 });
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    check(width <= 360, `job page at 360 px is ${width} px wide`);
    await page.screenshot({ path: join(shots, 'job-360.png'), fullPage: true });
    noProblems(page);
  },

  // A job the reconciler tracked and polled to its end: each poll, then
  // the poll that ended it (the page refreshes itself until then).
  async polled(browser) {
    const page = await open(browser, env.CONSOLE_URL + '/jobs/' + env.POLL_JOB);
    await page.waitForFunction(() => [...document.querySelectorAll('#timeline .what')].some((p) => /^Poll ended the job: partial/.test(p.textContent)),
      null, { timeout: 30000 });
    const steps = await page.$$eval('#timeline > li .what', (ps) => ps.map((p) => p.textContent));
    check(steps[0] === 'Tracked', 'first step: ' + JSON.stringify(steps));
    check(steps.some((s) => /^Poll: (pending|running)/.test(s)), 'no poll before the end: ' + JSON.stringify(steps));
    check(steps.some((s) => /^Ended: partial/.test(s)), 'no end: ' + JSON.stringify(steps));
    check(/learned by poll/.test(await page.textContent('#job-facts')), 'source is not the poll');
    await page.waitForFunction(() => /could not be loaded/.test(document.querySelector('#job-projects').textContent), null, wait);
    await page.screenshot({ path: join(shots, 'job-polled-1280.png'), fullPage: true });
    // The stand-in's videos are on a name that never resolves here.
    noProblems(page, /ERR_NAME_NOT_RESOLVED/);
  },

  // A failed forward's Retry, in the queue and on the job's page, sends it
  // again: the test's app answers 200 this time (TestConsole checks it got it).
  async forward_retry(browser) {
    const page = await open(browser, env.CONSOLE_URL + '/');
    const row = `#forwards li[data-job-id="${env.FORWARD_JOB}"]`;
    await page.waitForSelector(`${row}[data-state="failed"]`, { timeout: 30000 });
    await page.click(`${row} button`);
    await page.waitForSelector(`${row}[data-state="delivered"]`, { timeout: 30000 });

    await page.goto(env.CONSOLE_URL + '/jobs/' + env.FORWARD_JOB_PAGE);
    await page.waitForFunction(() => document.querySelector('#job-forward .chip')?.textContent === 'failed', null, { timeout: 30000 });
    await page.click('#retry-forward');
    await page.waitForFunction(() => /Queued again/.test(document.querySelector('#retry-note').textContent), null, wait);
    await page.waitForFunction(() => document.querySelector('#job-forward .chip')?.textContent === 'delivered', null, { timeout: 30000 });
    await page.waitForFunction(() => [...document.querySelectorAll('#timeline .what')].some((p) => /^Forward attempt \d+: HTTP 200, delivered/.test(p.textContent)),
      null, wait);
    noProblems(page);
  },

  // The app's 410 pauses forwarding: the console says why, and Resume
  // sends the paused forward again.
  async pause_resume(browser) {
    const page = await open(browser, env.CONSOLE_URL + '/');
    await page.waitForSelector('#forward-state .paused', { timeout: 30000 });
    const reason = await page.textContent('#forward-state .paused p');
    check(/410/.test(reason), 'pause reason does not name the 410: ' + reason);
    await page.waitForSelector(`#forwards li[data-job-id="${env.GONE_JOB}"][data-state="paused"]`, wait);
    await page.click('#forward-state .paused button');
    await page.waitForSelector('#forward-state .paused', { state: 'detached', timeout: 30000 });
    // Delivered, it sorts after every earlier delivered forward: see it on its page.
    await page.goto(env.CONSOLE_URL + '/jobs/' + env.GONE_JOB);
    await page.waitForFunction(() => document.querySelector('#job-forward .chip')?.textContent === 'delivered', null, { timeout: 30000 });
    noProblems(page);
  },

  // With an admin token: the page asks once, says when a token is wrong,
  // keeps the right one for the tab, and never puts it in the address.
  async token(browser) {
    const page = await open(browser, env.TOKEN_CONSOLE_URL + '/');
    await page.waitForSelector('#token-panel', { state: 'visible', ...wait });
    check(await page.evaluate(() => document.activeElement?.id) === 'token-input', 'token input not focused');
    check(await page.locator('#jobs > li').count() === 0, 'jobs shown without a token');

    await page.fill('#token-input', 'not-the-token');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => /refused/.test(document.querySelector('#token-error').textContent) &&
      !document.querySelector('#token-panel').hidden, null, wait);
    check(await page.locator('#jobs > li').count() === 0, 'jobs shown with a wrong token');

    await page.fill('#token-input', env.ADMIN_TOKEN);
    await page.click('#token-form button');
    await page.waitForSelector('#token-panel', { state: 'hidden', ...wait });
    await page.waitForSelector('#jobs > li', wait);
    await page.waitForFunction(() => document.querySelector('#live').dataset.state === 'live', null, wait);
    check(!page.url().includes(env.ADMIN_TOKEN), 'token in the address: ' + page.url());

    // Kept for the tab: a reload and a job page need no second asking.
    await page.reload();
    await page.waitForSelector('#jobs > li', wait);
    check(await page.isHidden('#token-panel'), 'asked again after a reload');
    const first = await page.getAttribute('#jobs > li', 'data-job-id');
    await page.click(`#jobs a[href="/jobs/${first}"]`);
    await page.waitForSelector('#timeline li.end', wait);
    check(await page.isHidden('#token-panel'), 'asked again on a job page');
    noProblems(page);
  },
};

const names = process.argv.slice(2);
if (names.length === 0 || names.some((n) => !cases[n])) {
  console.error('usage: node console.test.mjs CASE... (cases: ' + Object.keys(cases).join(', ') + ')');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });
const browser = await chromium.launch({
  executablePath: env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
    '--no-first-run', '--disable-component-update', '--disable-sync',
    // Every name but the loopback fails at once: the test never asks DNS.
    '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1'],
});
let failed = false;
for (const name of names) {
  try {
    await cases[name](browser);
    console.log('ok ' + name);
  } catch (err) {
    failed = true;
    console.log('not ok ' + name + ': ' + (err instanceof Failure ? err.message : err.stack || err));
  }
}
await browser.close();
process.exit(failed ? 1 : 0);
