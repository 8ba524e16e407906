// Issue 7: the dashboard in a real browser. Debian's chromium, headless,
// driven by playwright-core, against a real `pmjqctl serve` and a real
// daemon: a job appears (queued), runs and finishes on the page without a
// reload, its log opens from the page, and a failed job is retried from the
// page (selected, retried without a token: refused; with the token: done).
//
// PMJQ_DASHBOARD_PNG=docs/dashboard.png saves the screenshot there (that is
// how the README's picture is made); otherwise it goes to the scratch dir.
// This test never skips: without chromium it fails and says how to get it.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { openToAll, scratch } from '../helpers/helpers.js';
import { TOKEN, postJson, startDaemon, startServer } from '../helpers/http.js';

const CHROMIUM = '/usr/bin/chromium';
const WAIT = 45_000;

/** Chromium processes started with this user-data-dir (found by it, never by name). */
function browserPids(userDataDir: string): number[] {
  const marker = `--user-data-dir=${userDataDir}`;
  const out: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (fs.readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0').includes(marker)) out.push(Number(e));
    } catch { /* gone */ }
  }
  return out;
}

async function launch(tt: { teardown(fn: () => unknown): void }, dir: string): Promise<BrowserContext> {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: this test needs Debian's chromium (as root: apt-get update && apt-get install -y chromium; .ci/run installs it). It does not skip.`);
  }
  const userDataDir = fs.mkdtempSync(path.join(dir, 'chromium-'));
  tt.teardown(async () => {
    // playwright closes its browser; whatever is left of this one is killed by its user-data-dir
    for (const pid of browserPids(userDataDir)) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
  });
  // launchPersistentContext: a fresh --user-data-dir of our own (playwright refuses it in args)
  const ctx = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1400, height: 900 },
    timeout: 60_000,
  });
  tt.teardown(async () => {
    await Promise.race([ctx.close(), new Promise((r) => setTimeout(r, 10_000).unref())]);
  });
  return ctx;
}

/** A gate a job waits at: the job loops until the file exists (the test never sleeps). */
function gate(dir: string, name: string): { path: string; open(): void; wait: string } {
  const p = path.join(dir, `gate-${name}`);
  return { path: p, open: () => fs.writeFileSync(p, ''), wait: `while [ ! -e '${p}' ]; do sleep 0.05; done` };
}

/**
 * The hour before now as a node that has since stopped would have left it in
 * SPOOL/.pmjq/history/NODE.jsonl (pmjq(5)): bursts of jobs in three groups,
 * queued a while, some failing first and done when retried. Deterministic.
 * Returns how many etl attempts failed.
 */
function replayHour(spool: string): number {
  let seed = 16;
  const rnd = (): number => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed / 2 ** 31; };
  const node = 'batch1.4711.1796000000';
  const now = Date.now();
  const lines: string[] = [];
  let n = 0;
  let etlFailures = 0;
  for (let m = 58; m >= 2; m--) {
    for (const [group, every, fails] of [['web', 1, 0.02], ['etl', 6, 0.25], ['reports', 15, 0]] as const) {
      if (m % every !== 0) continue;
      const burst = group === 'web' ? 1 + Math.floor(rnd() * 4 + 3 * Math.sin(m / 9) ** 2) : group === 'etl' ? 4 + Math.floor(rnd() * 6) : 2;
      let free = now - m * 60_000;
      for (let k = 0; k < burst; k++) {
        const created = now - m * 60_000 - Math.floor(rnd() * 5000);
        const run = group === 'reports' ? 90_000 : 2000 + Math.floor(rnd() * 20_000);
        const claimed = Math.max(created + 50, free);
        free = claimed + run / (group === 'web' ? 3 : 1);
        const id = `${node}.${++n}`;
        const rec = (attempt: number, started: number, status: string, exit: number): string => JSON.stringify({
          id, name: `${group}-${n}`, group, node, host: 'batch1', owner: 1000, parent: null,
          created: new Date(created).toISOString(), claimed: new Date(started - 5).toISOString(), started: new Date(started).toISOString(),
          finished: new Date(Math.min(started + run, now - 30_000)).toISOString(), duration_ms: run, status, exit_code: exit, signal: null,
          attempt, archive: null, log: null,
        });
        if (rnd() < fails) {
          etlFailures += group === 'etl' ? 1 : 0;
          lines.push(rec(1, claimed, 'failed', 1), rec(2, claimed + run + 1000, 'done', 0));
        } else {
          lines.push(rec(1, claimed, 'done', 0));
        }
      }
    }
  }
  fs.mkdirSync(path.join(spool, '.pmjq/history'), { recursive: true });
  fs.appendFileSync(path.join(spool, `.pmjq/history/${node}.jsonl`), lines.join('\n') + '\n');
  return etlFailures;
}

t.test('the dashboard, live, in headless Chromium', async (t) => {
  const { dir, spool, archive } = scratch(t);
  openToAll(dir, spool, archive);
  const { url } = await startServer(t, spool, { tokenDir: dir });
  // at most one job of group web at a time: a second one waits, queued, where the page can see it
  await startDaemon(t, spool, archive, ['-j', '4', '--group', 'web:max=1']);
  const ctx = await launch(t, dir);
  const page: Page = ctx.pages()[0] ?? await ctx.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  // the 401 of the retry without a token is expected (Chromium logs every failed request)
  page.on('console', (m) => { if (m.type() === 'error' && !/status of 401/.test(m.text())) errors.push(m.text()); });

  await page.goto(url);
  await page.waitForSelector('#conn.badge-ok', { timeout: WAIT });
  await page.waitForSelector('#nodes tr[data-live="true"]', { timeout: WAIT });
  // a mark that a reload would wipe out
  await page.evaluate(() => { (window as unknown as { notReloaded: boolean }).notReloaded = true; });

  t.test('a job appears, runs and finishes without a reload', async (t) => {
    const a = gate(dir, 'blocker');
    const b = gate(dir, 'star');
    t.equal((await postJson(`${url}/api/jobs`, { script: `#!/bin/sh\n${a.wait}\n`, group: 'web', name: 'blocker' })).status, 201);
    await page.waitForSelector('#running tr[data-state="running"]:has-text("blocker")', { timeout: WAIT });

    t.equal((await postJson(`${url}/api/jobs`, { script: `#!/bin/sh\necho "star starts"\n${b.wait}\necho "star done"\n`, group: 'web', name: 'star' })).status, 201);
    const queued = await page.waitForSelector('#running tr[data-state="queued"][data-name="star"]', { timeout: WAIT });
    t.ok(queued, 'the job appears, queued (group web runs one at a time)');

    a.open();
    const running = await page.waitForSelector('#running tr[data-state="running"]:has-text("star")', { timeout: WAIT });
    t.ok(running, 'then it runs');
    const elapsed = await page.textContent('#running tr[data-state="running"]:has-text("star") td.elapsed');
    t.match(elapsed, /^\d/, `with its elapsed time (${elapsed})`);
    t.equal(await page.locator('#running tr[data-state="queued"][data-name="star"]').count(), 0, 'and is no longer queued');

    b.open();
    const row = await page.waitForSelector('#recent tr[data-status="done"]:has-text("star")', { timeout: WAIT });
    t.ok(row, 'then it is among the recently finished, done');
    await page.waitForSelector('#running tr[data-state="running"]:has-text("star")', { state: 'detached', timeout: WAIT });

    await page.click('#recent tr[data-status="done"]:has-text("star") a.job-link');
    await page.waitForSelector('#log-dialog[open] #log-text:has-text("star done")', { timeout: WAIT });
    t.match(await page.textContent('#log-text'), /star starts\nstar done/, 'its log opens from the page');
    t.match(await page.textContent('#log-meta'), /status\s*done/, 'with its record');
    await page.click('#log-close');

    t.equal(await page.evaluate(() => (window as unknown as { notReloaded?: boolean }).notReloaded), true, 'the page was never reloaded');
  });

  t.test('a failed job is retried from the page, with the token', async (t) => {
    const script = '#!/bin/sh\necho "attempt $PMJQ_ATTEMPT"\nif [ "$PMJQ_ATTEMPT" -ge 2 ]; then exit 0; fi\necho "first attempt fails" >&2\nexit 7\n';
    t.equal((await postJson(`${url}/api/jobs`, { script, group: 'etl', name: 'flaky' })).status, 201);
    const row = await page.waitForSelector('#failed-groups .fgroup[data-group="etl"] tr[data-state="failed"]:has-text("flaky")', { timeout: WAIT });
    const id = await row.getAttribute('data-id');
    t.ok(id, `the failed job shows in the failed queue, under its group (${id})`);
    t.match(await row.textContent(), /exit 7/, 'with why it failed');

    // the search filters the failed queue (on the server)
    await page.fill('#failed-q', 'no-such-job');
    await page.waitForSelector('#failed-empty:not([hidden])', { timeout: WAIT });
    await page.fill('#failed-q', 'FLAK');
    await page.waitForSelector(`#failed-groups tr[data-id="${id}"]`, { timeout: WAIT });

    await page.check(`#failed-groups tr[data-id="${id}"] input.pick`);
    await page.waitForSelector('#selection:not([hidden]) #selection-count:has-text("1 job selected")', { timeout: WAIT });

    // without the token: refused, and the page says why
    await page.click('#retry-selected');
    const refused = await page.waitForSelector('#action-result.error', { timeout: WAIT });
    t.match(await refused.textContent(), /Authorization: Bearer/, 'without a token the server refuses (401) and the page says so');

    // with the token (kept in sessionStorage for this tab)
    await page.fill('#token', TOKEN);
    await page.click('#token-save');
    t.equal(await page.evaluate(() => sessionStorage.getItem('pmjq-token')), TOKEN, 'the token is kept in sessionStorage');
    await page.click('#retry-selected');
    await page.waitForSelector('#action-result.ok:has-text("1 retried")', { timeout: WAIT });
    t.pass('retried from the page');

    await page.waitForSelector(`#recent tr[data-id="${id}"][data-status="done"]`, { timeout: WAIT });
    t.pass('and it then ran again and succeeded');
    await page.waitForSelector(`#failed-groups tr[data-id="${id}"]`, { state: 'detached', timeout: WAIT });
    t.pass('it left the failed queue');
    await page.fill('#failed-q', '');

    t.equal(await page.evaluate(() => (window as unknown as { notReloaded?: boolean }).notReloaded), true, 'the page was never reloaded');
  });

  t.test('the last hour: per group, jobs finished each minute (failed apart) and the queue, drawn after jobs ran', async (t) => {
    const web = '#charts .chart[data-group="web"]';
    await page.waitForSelector(`${web} svg.throughput rect.bar-done`, { timeout: WAIT });
    const doneBars = await page.$$eval(`${web} rect.bar-done`, (rs) => rs.map((r) => Number(r.getAttribute('data-count'))));
    t.ok(doneBars.reduce((a, b) => a + b, 0) >= 2, `group web: its done jobs are bars (${doneBars.join('+')} in ${doneBars.length} minute(s))`);
    t.equal(await page.getAttribute(web, 'data-failed'), '0', 'group web: no failed job');
    const points = (await page.getAttribute(`${web} svg.queue polyline.depth`, 'points'))!.trim().split(/\s+/);
    t.equal(points.length, 120, 'its queue is a line of 60 minutes (two points a step)');
    t.ok(points.every((p) => /^\d+(\.\d+)?,\d+(\.\d+)?$/.test(p)), 'of numbers');
    t.ok(Number(await page.getAttribute(web, 'data-peak-queued')) >= 1, 'and shows the job that waited behind the other (group web runs one at a time)');
    const etl = '#charts .chart[data-group="etl"]';
    await page.waitForSelector(`${etl} rect.bar-failed`, { timeout: WAIT });
    await page.waitForSelector(`${etl} rect.bar-done`, { timeout: WAIT });
    t.equal(await page.getAttribute(etl, 'data-failed'), '1', 'group etl: the failed attempt is a red bar');
    t.equal(await page.getAttribute(etl, 'data-done'), '1', 'and its retry, done, a green one');
    t.match(await page.textContent(`${etl} figcaption`), /1 done · 1 failed · 0 queued now/, 'the caption says so');
    t.ok(await page.$eval(`${web} rect.bar-done title`, (e) => /^\d\d:\d\d: \d+ done, 0 failed$/.test(e.textContent ?? '')), 'a bar tells its minute and counts on hover');
  });

  t.test('screenshot of a busy dashboard', async (t) => {
    // For the README's picture only: an hour of another node's history, so
    // that the charts have an hour to show (the caption says so).
    let replayedEtlFailures = 0;
    if (process.env.PMJQ_DASHBOARD_PNG) replayedEtlFailures = replayHour(spool);
    // a few of each state, for the picture
    const hold = gate(dir, 'report');
    for (const [name, group, body] of [
      ['nightly-report', 'reports', `echo building\n${hold.wait}`],
      ['thumbnails', 'web', 'echo ok'],
      ['load-orders', 'etl', 'echo "orders.csv: 3 bad rows" >&2; exit 2'],
      ['load-customers', 'etl', 'echo "connection refused" >&2; exit 111'],
      ['sync-s3', 'etl', 'echo "timeout talking to the bucket" >&2; exit 1'],
      ['index-docs', 'web', 'echo indexed'],
    ] as const) {
      t.equal((await postJson(`${url}/api/jobs`, { script: `#!/bin/sh\n${body}\n`, group, name })).status, 201, `submitted ${name}`);
    }
    await page.waitForSelector('#running tr[data-state="running"]:has-text("nightly-report")', { timeout: WAIT });
    await page.waitForSelector('#failed-groups .fgroup[data-group="etl"] tr:has-text("sync-s3")', { timeout: WAIT });
    await page.waitForSelector('#recent tr:has-text("index-docs")', { timeout: WAIT });
    await page.waitForSelector('#recent tr:has-text("thumbnails")', { timeout: WAIT });
    // the charts have caught up (they follow at most a second behind): etl's three failures and flaky's first attempt
    await page.waitForSelector(`#charts .chart[data-group="etl"][data-failed="${replayedEtlFailures + 4}"]`, { timeout: WAIT });
    await page.click('#clear-selected');
    await page.waitForSelector('#selection', { state: 'hidden', timeout: WAIT });
    await page.evaluate(() => { (document.activeElement as HTMLElement | null)?.blur(); window.scrollTo(0, 0); });
    const out = process.env.PMJQ_DASHBOARD_PNG ? path.resolve(process.env.PMJQ_DASHBOARD_PNG) : path.join(dir, 'dashboard.png');
    await page.screenshot({ path: out, fullPage: true });
    const png = fs.readFileSync(out);
    t.same([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], `a PNG (${out})`);
    hold.open();
    await page.waitForSelector('#recent tr[data-status="done"]:has-text("nightly-report")', { timeout: WAIT });
  });

  t.test('no error in the page', async (t) => {
    t.same(errors, [], 'no script error, no failed request');
  });
});
