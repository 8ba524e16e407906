// The pmjq dashboard: plain JavaScript, no build step, no dependency.
//
// The server pushes the whole live state as server-sent `state` events
// (GET /events) whenever it changes; this page renders each one and never
// polls. It fetches only on a person's action (a page of the failed queue,
// a job's log, retry/kill/pause) and when an event says the failed queue
// changed. Every value from the server goes into the page as text, never as
// HTML.

// biome-ignore lint/suspicious/noRedundantUseStrict: a classic script (index.html loads it without type=module)
'use strict';

(() => {
  const $ = (sel, root = document) => root.querySelector(sel);
  const TOKEN_KEY = 'pmjq-token';

  /** el('td', {class: 'num'}, 'text', childNode…): a DOM element with text children. */
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else if (k === 'dataset') Object.assign(e.dataset, v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children) {
      if (c === undefined || c === null) continue;
      e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }

  // the SVG namespace, as the HTML parser gives it to an <svg> (a constant, not a value from the server)
  const SVG = (() => { const d = document.createElement('div'); d.innerHTML = '<svg></svg>'; return d.firstChild.namespaceURI; })();

  /** svg('rect', {x: 1, class: 'bar'}, child…): an SVG element (attributes only: the page allows no inline style). */
  function svg(tag, attrs, ...children) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) e.setAttribute(k, String(v));
    for (const c of children) if (c !== undefined && c !== null) e.append(c instanceof Node ? c : String(c));
    return e;
  }

  // ---- formatting ----

  function human(ms) {
    if (ms === null || ms === undefined || !Number.isFinite(ms)) return '–';
    ms = Math.max(0, ms);
    if (ms < 1000) return `${Math.round(ms)}ms`;
    const s = ms / 1000;
    if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)}s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m}m${String(Math.floor(s % 60)).padStart(2, '0')}s`;
    const h = Math.floor(m / 60);
    if (h < 48) return `${h}h${String(m % 60).padStart(2, '0')}m`;
    return `${Math.floor(h / 24)}d${h % 24}h`;
  }

  function clock(iso) {
    if (!iso) return '–';
    const d = new Date(iso);
    const today = new Date();
    const t = d.toLocaleTimeString([], { hour12: false });
    return d.toDateString() === today.toDateString() ? t : `${d.toLocaleDateString()} ${t}`;
  }

  const live = {
    snap: null,
    /** server clock − local clock (ms): elapsed times use the spool's clock */
    offset: 0,
    failedVersion: null,
    failedGroupsKey: null,
    selected: new Map(), // id -> {id, name, state}
    failed: { q: '', sort: 'age', order: 'asc', size: 20, offsets: new Map() },
    failedGen: 0,
    chartsKey: null,
    logId: null,
    token: sessionStorage.getItem(TOKEN_KEY) || '',
  };

  const now = () => Date.now() + live.offset;

  // ---- HTTP ----

  async function api(method, path, body) {
    const headers = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (method !== 'GET' && live.token) headers.authorization = `Bearer ${live.token}`;
    let res;
    try {
      res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (err) {
      return { ok: false, status: 0, data: { message: `network error: ${err.message}` } };
    }
    let data = null;
    try { data = await res.json(); } catch { data = { message: res.statusText }; }
    return { ok: res.ok, status: res.status, data };
  }

  // ---- live state ----

  function connect() {
    const conn = $('#conn');
    const es = new EventSource('events');
    es.addEventListener('open', () => { conn.textContent = 'live'; conn.className = 'badge badge-ok'; });
    es.addEventListener('error', () => { conn.textContent = 'reconnecting…'; conn.className = 'badge badge-warn'; });
    es.addEventListener('state', (e) => {
      let snap;
      try { snap = JSON.parse(e.data); } catch { return; }
      render(snap);
    });
  }

  function render(snap) {
    live.snap = snap;
    live.offset = Date.parse(snap.status.time) - Date.now();
    document.body.dataset.seq = String((Number(document.body.dataset.seq) || 0) + 1);
    $('#spool').textContent = snap.status.spool;
    document.title = `pmjq · ${snap.status.totals.running} running · ${snap.status.totals.failed} failed`;
    $('#updated').textContent = `updated ${clock(snap.status.time)}`;
    document.body.classList.toggle('read-only', !snap.server.writable);
    renderBanner(snap);
    renderTotals(snap);
    renderCharts(snap);
    renderNodes(snap);
    renderGroups(snap);
    renderRunning(snap);
    renderRetrying(snap);
    renderRecent(snap);
    const groupsKey = snap.status.groups.filter((g) => g.failed > 0).map((g) => `${g.group}:${g.failed}`).join('|');
    if (snap.failed_version !== live.failedVersion || groupsKey !== live.failedGroupsKey) {
      live.failedVersion = snap.failed_version;
      live.failedGroupsKey = groupsKey;
      void loadFailed();
    }
    if (live.logId && $('#log-dialog').open && $('#log-dialog').dataset.state === 'running') void loadLog(live.logId, false);
    pruneSelection(snap);
  }

  function renderBanner(snap) {
    const b = $('#banner');
    const msgs = [];
    if (!snap.server.writable) msgs.push('Read-only server (started without --token-file): retry, kill, pause and resume are disabled.');
    if (snap.status.paused_all) msgs.push('All groups are paused: no node claims new jobs.');
    else if (snap.status.paused_groups.length) msgs.push(`Paused: ${snap.status.paused_groups.join(', ')}.`);
    for (const w of snap.status.warnings) msgs.push(`Warning: ${w}`);
    b.replaceChildren(...msgs.map((m) => el('p', {}, m)));
    b.hidden = msgs.length === 0;
  }

  function renderTotals(snap) {
    const t = snap.status.totals;
    const item = (label, value, cls) => el('div', { class: `total ${cls || ''}`, dataset: { total: label } },
      el('span', { class: 'value' }, value), el('span', { class: 'label' }, label));
    $('#totals').replaceChildren(
      item('queued', t.queued, t.queued ? 'queued' : ''),
      item('running', t.running, t.running ? 'running' : ''),
      item('retrying', t.retrying, t.retrying ? 'retrying' : ''),
      item('failed', t.failed, t.failed ? 'failed' : ''),
      item('done', t.done),
      item('rejected', t.rejected, t.rejected ? 'rejected' : ''),
      item('nodes live', `${t.live_nodes}/${t.nodes}`, t.live_nodes < t.nodes ? 'failed' : ''),
    );
  }

  // ---- the last hour, per group ----

  const CW = 360; // chart width, in SVG units: one minute is CW / minutes wide
  const BARS_H = 56;
  const QUEUE_H = 36;
  const TOP = 12; // room for the scale's label

  function renderCharts(snap) {
    const c = snap.charts;
    const key = c ? JSON.stringify(c) : '';
    if (key === live.chartsKey) return;
    live.chartsKey = key;
    const groups = c ? c.groups : [];
    const queuedNow = new Map(snap.status.groups.map((g) => [g.group, g.queued]));
    $('#charts').replaceChildren(...groups.map((g) => chart(c, g, queuedNow.get(g.group) || 0)));
    $('#charts-empty').hidden = groups.length > 0;
  }

  function minuteLabel(c, i) {
    return new Date(Date.parse(c.start) + i * c.bucket_ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', hour12: false });
  }

  function chart(c, g, queuedNow) {
    const n = c.minutes;
    const w = CW / n;
    const sum = (a) => a.reduce((x, y) => x + y, 0);
    const done = sum(g.done);
    const failed = sum(g.failed);
    // jobs finished per minute: done at the bottom, failed stacked on top
    const most = Math.max(1, ...g.done.map((d, i) => d + g.failed[i]));
    const bars = [];
    for (let i = 0; i < n; i++) {
      const tip = `${minuteLabel(c, i)}: ${g.done[i]} done, ${g.failed[i]} failed`;
      const hd = (g.done[i] / most) * (BARS_H - TOP);
      const hf = (g.failed[i] / most) * (BARS_H - TOP);
      if (g.done[i]) bars.push(svg('rect', { class: 'bar-done', x: (i * w + 0.5).toFixed(1), y: (BARS_H - hd).toFixed(1), width: (w - 1).toFixed(1), height: hd.toFixed(1), 'data-minute': i, 'data-count': g.done[i] }, svg('title', {}, tip)));
      if (g.failed[i]) bars.push(svg('rect', { class: 'bar-failed', x: (i * w + 0.5).toFixed(1), y: (BARS_H - hd - hf).toFixed(1), width: (w - 1).toFixed(1), height: hf.toFixed(1), 'data-minute': i, 'data-count': g.failed[i] }, svg('title', {}, tip)));
    }
    const throughput = svg('svg', { class: 'throughput', viewBox: `0 0 ${CW} ${BARS_H + 12}`, role: 'img', 'aria-label': `${g.group}: ${done} done and ${failed} failed in the last hour, at most ${most} a minute` },
      svg('line', { class: 'axis', x1: 0, x2: CW, y1: BARS_H + 0.5, y2: BARS_H + 0.5 }),
      ...bars,
      svg('text', { x: 0, y: 9 }, `${most}/min`),
      svg('text', { x: 0, y: BARS_H + 11 }, `−${n} min`),
      svg('text', { x: CW, y: BARS_H + 11, 'text-anchor': 'end' }, 'now'));
    // the most queued at once in each minute, as steps
    const top = Math.max(1, ...g.queued);
    const y = (v) => (QUEUE_H - (v / top) * (QUEUE_H - TOP)).toFixed(1);
    const pts = [];
    for (let i = 0; i < n; i++) pts.push(`${(i * w).toFixed(1)},${y(g.queued[i])}`, `${((i + 1) * w).toFixed(1)},${y(g.queued[i])}`);
    const queue = svg('svg', { class: 'queue', viewBox: `0 0 ${CW} ${QUEUE_H + 2}`, role: 'img', 'aria-label': `${g.group}: at most ${Math.max(...g.queued)} queued at once in the last hour, ${queuedNow} now`, 'data-points': pts.length },
      svg('polygon', { class: 'depth-area', points: `0,${QUEUE_H} ${pts.join(' ')} ${CW},${QUEUE_H}` }),
      svg('polyline', { class: 'depth', points: pts.join(' ') }),
      svg('line', { class: 'axis', x1: 0, x2: CW, y1: QUEUE_H + 0.5, y2: QUEUE_H + 0.5 }),
      svg('text', { x: 0, y: 9 }, `${top} queued`));
    return el('figure', { class: 'chart', dataset: { group: g.group, done: String(done), failed: String(failed), peakQueued: String(Math.max(...g.queued)) } },
      el('figcaption', {}, el('span', { class: 'gname' }, g.group),
        el('span', { class: 'muted' }, `${done} done · ${failed} failed · ${queuedNow} queued now`)),
      throughput, queue);
  }

  const NODE_BADGE = { IDLE: 'badge-idle', PROCESSING: 'badge-ok', STARTING: 'badge-wait', STOPPING: 'badge-warn', FENCED: 'badge-bad', STALE: 'badge-bad' };

  function renderNodes(snap) {
    const body = $('#nodes tbody');
    if (snap.status.nodes.length === 0) {
      body.replaceChildren(el('tr', {}, el('td', { colspan: 9, class: 'muted' }, 'No node serves this spool (start one with: pmjq SPOOL).')));
      return;
    }
    body.replaceChildren(...snap.status.nodes.map((n) => el('tr', { dataset: { node: n.node, live: String(n.live) } },
      el('td', { class: 'mono' }, n.node),
      el('td', {}, el('span', { class: `badge ${NODE_BADGE[n.state] || ''}`, title: n.stale_reason || (n.live ? 'live' : '') }, n.live ? n.state : `STALE`)),
      el('td', { class: 'num' }, n.jobs.length),
      el('td', { class: 'num' }, n.slots === null ? '–' : n.slots === 0 ? '∞' : n.slots),
      el('td', { class: 'num' }, n.load === null ? '–' : n.load.toFixed(2)),
      el('td', { class: 'holds' }, ...(n.holds.length ? n.holds.map((h) => el('span', { class: 'badge badge-warn', title: h }, h.slice(0, h.indexOf(':')) || h)) : ['–'])),
      el('td', { class: 'muted', dataset: { hb: n.heartbeat || '' } }, n.heartbeat ? `${human(now() - Date.parse(n.heartbeat))} ago` : (n.stale_reason || '–')),
      el('td', {}, n.groups === null ? 'all' : n.groups.join(', ')),
      el('td', { class: 'muted' }, n.version || '–'),
    )));
  }

  function limit(v) { return v === undefined || v === null || v === 0 ? '–' : v; }

  function renderGroups(snap) {
    const body = $('#groups tbody');
    if (snap.status.groups.length === 0) {
      body.replaceChildren(el('tr', {}, el('td', { colspan: 11, class: 'muted' }, 'No group yet.')));
      return;
    }
    const t = snap.status.totals;
    const rows = snap.status.groups.map((g) => el('tr', { dataset: { group: g.group } },
      el('td', {}, g.group, g.settings_error ? el('span', { class: 'badge badge-bad', title: g.settings_error }, '.group.json') : null),
      el('td', { class: 'num', dataset: { col: 'queued' } }, g.queued),
      el('td', { class: `num ${g.running ? 'c-running' : ''}`, dataset: { col: 'running' } }, g.running),
      el('td', { class: `num ${g.retrying ? 'c-retrying' : ''}`, dataset: { col: 'retrying' } }, g.retrying),
      el('td', { class: `num ${g.failed ? 'c-failed' : ''}`, dataset: { col: 'failed' } }, g.failed),
      el('td', { class: 'num', dataset: { col: 'done' } }, g.done),
      el('td', { class: 'num' }, limit(g.settings.max)),
      el('td', { class: 'num' }, limit(g.settings.cluster_max)),
      el('td', {}, g.settings.timeout ? human(g.settings.timeout) : '–'),
      el('td', { class: 'num' }, g.settings.retries ?? '–'),
      el('td', { class: 'row-actions' }, g.paused
        ? el('button', { type: 'button', class: 'small needs-token', onclick: () => pauseResume('resume', [g.group]) }, 'Resume')
        : el('button', { type: 'button', class: 'small quiet needs-token', onclick: () => pauseResume('pause', [g.group]) }, 'Pause'),
      g.paused ? el('span', { class: 'badge badge-warn' }, 'paused') : null),
    ));
    rows.push(el('tr', { class: 'sum' }, el('td', {}, 'Total'), el('td', { class: 'num' }, t.queued), el('td', { class: 'num' }, t.running),
      el('td', { class: 'num' }, t.retrying), el('td', { class: 'num' }, t.failed), el('td', { class: 'num' }, t.done), el('td', { colspan: 5 })));
    body.replaceChildren(...rows);
  }

  function checkbox(job) {
    return el('input', {
      type: 'checkbox', class: 'pick', 'aria-label': `select ${job.name}`, checked: live.selected.has(job.id),
      dataset: { id: job.id },
      onchange: (e) => select(job, e.target.checked),
    });
  }

  function nameLink(job) {
    if (!job.id) return el('span', {}, job.name);
    return el('a', { href: `#job=${encodeURIComponent(job.id)}`, class: 'job-link', onclick: (e) => { e.preventDefault(); void openLog(job.id); } }, job.name);
  }

  function renderRunning(snap) {
    $('#running-count').textContent = `${snap.status.totals.running}`;
    const body = $('#running tbody');
    const rows = [];
    for (const j of snap.running) {
      rows.push(el('tr', { dataset: { id: j.id, state: 'running' } },
        el('td', { class: 'check' }, checkbox(j)),
        el('td', {}, nameLink(j), j.info ? el('span', { class: 'badge badge-warn' }, j.info) : null),
        el('td', {}, j.group),
        el('td', { class: 'mono' }, j.node),
        el('td', { class: 'num' }, j.attempt ?? '–'),
        el('td', { class: 'num elapsed', dataset: { since: j.since || '' } }, j.since ? human(now() - Date.parse(j.since)) : '–'),
        el('td', { class: 'mono muted' }, j.id),
      ));
    }
    for (const j of snap.queued) {
      rows.push(el('tr', { class: 'queued', dataset: { state: 'queued', name: j.name, group: j.group } },
        el('td', { class: 'check' }),
        el('td', {}, j.name, ' ', el('span', { class: 'badge badge-idle' }, 'queued')),
        el('td', {}, j.group),
        el('td', { class: 'muted' }, j.info || (j.eta_ms === null ? '' : j.eta_ms === 0 ? 'starts now' : `in ~${human(j.eta_ms)}`)),
        el('td', {}), el('td', { class: 'num muted' }, j.age_ms === null ? '' : `${human(j.age_ms)} waiting`), el('td', {}),
      ));
    }
    if (snap.queued_total > snap.queued.length) {
      rows.push(el('tr', { class: 'queued' }, el('td', {}), el('td', { colspan: 6, class: 'muted' }, `… and ${snap.queued_total - snap.queued.length} more queued`)));
    }
    if (rows.length === 0) rows.push(el('tr', {}, el('td', { colspan: 7, class: 'muted' }, 'Nothing running or queued.')));
    body.replaceChildren(...rows);
  }

  function renderRetrying(snap) {
    $('#retrying-section').hidden = snap.retrying.length === 0;
    $('#retrying-count').textContent = `${snap.status.totals.retrying}`;
    $('#retrying tbody').replaceChildren(...snap.retrying.map((j) => el('tr', { dataset: { id: j.id, state: 'retrying' } },
      el('td', { class: 'check' }, checkbox(j)),
      el('td', {}, nameLink(j)),
      el('td', {}, j.group),
      el('td', { class: 'num' }, j.attempt ?? '–'),
      el('td', { class: 'due', dataset: { due: j.eta_ms === null ? '' : String(Date.parse(snap.status.time) + j.eta_ms) } }, j.eta_ms === null ? '–' : human(j.eta_ms)),
      el('td', { class: 'mono muted' }, j.id),
    )));
  }

  function statusBadge(j) {
    const cls = j.status === 'done' ? 'badge-ok' : j.status === 'killed' || j.status === 'timeout' ? 'badge-warn' : 'badge-bad';
    return el('span', { class: `badge ${cls}` }, j.status || j.state);
  }

  function renderRecent(snap) {
    const body = $('#recent tbody');
    if (snap.recent.length === 0) {
      body.replaceChildren(el('tr', {}, el('td', { colspan: 7, class: 'muted' }, 'No job has finished yet.')));
      return;
    }
    body.replaceChildren(...snap.recent.map((j) => el('tr', { dataset: { id: j.id, state: j.state, status: j.status } },
      el('td', { class: 'muted' }, clock(j.since)),
      el('td', {}, nameLink(j)),
      el('td', {}, j.group),
      el('td', {}, statusBadge(j)),
      el('td', { class: 'num' }, j.signal || (j.exit_code ?? '–')),
      el('td', { class: 'num' }, human(j.duration_ms)),
      el('td', { class: 'mono muted' }, j.node || '–'),
    )));
  }

  /** Elapsed times and ages tick here, between events (local clock + the server's offset; no request). */
  function tick() {
    const t = now();
    for (const td of document.querySelectorAll('td.elapsed[data-since]')) {
      if (td.dataset.since) td.textContent = human(t - Date.parse(td.dataset.since));
    }
    for (const td of document.querySelectorAll('td.due[data-due]')) {
      if (td.dataset.due) td.textContent = human(Number(td.dataset.due) - t);
    }
    for (const td of document.querySelectorAll('td[data-hb]')) {
      if (td.dataset.hb) td.textContent = `${human(t - Date.parse(td.dataset.hb))} ago`;
    }
  }

  // ---- the failed queue: one paginated table per group ----

  async function loadFailed() {
    const gen = ++live.failedGen;
    const snap = live.snap;
    if (!snap) return;
    const groups = snap.status.groups.filter((g) => g.failed > 0).map((g) => g.group);
    const f = live.failed;
    const results = await Promise.all(groups.map(async (group) => {
      let offset = f.offsets.get(group) || 0;
      const query = (off) => {
        const p = new URLSearchParams({ state: 'failed', group, sort: f.sort, order: f.order, offset: String(off), limit: String(f.size) });
        if (f.q) p.set('q', f.q);
        return api('GET', `api/jobs?${p}`);
      };
      let r = await query(offset);
      // the page we were on emptied (retried jobs): go back to the last page that has rows
      if (r.ok && r.data.jobs.length === 0 && r.data.total > 0 && offset > 0) {
        offset = Math.max(0, Math.floor((r.data.total - 1) / f.size) * f.size);
        f.offsets.set(group, offset);
        r = await query(offset);
      }
      return { group, r };
    }));
    if (gen !== live.failedGen) return; // a newer load is under way
    const box = $('#failed-groups');
    const tpl = $('#failed-group-tpl');
    const sections = [];
    let shown = 0;
    for (const { group, r } of results) {
      if (!r.ok) {
        sections.push(el('p', { class: 'error' }, `${group}: ${r.data.message || r.status}`));
        continue;
      }
      const page = r.data;
      if (page.total === 0) continue;
      shown += page.total;
      const node = tpl.content.firstElementChild.cloneNode(true);
      node.dataset.group = group;
      $('.gname', node).textContent = group;
      $('.count', node).textContent = f.q ? `${page.total} matching` : `${page.total}`;
      const rows = page.jobs.map((j) => el('tr', { dataset: { id: j.id, state: 'failed', status: j.status } },
        el('td', { class: 'check' }, checkbox(j)),
        el('td', { class: 'muted' }, clock(j.since)),
        el('td', {}, nameLink(j)),
        el('td', {}, statusBadge(j)),
        el('td', { class: 'info' }, j.info || ''),
        el('td', { class: 'num' }, j.attempt ?? '–'),
        el('td', { class: 'num' }, human(j.duration_ms)),
        el('td', { class: 'mono muted' }, j.node || '–'),
        el('td', { class: 'mono muted' }, j.id),
      ));
      $('tbody', node).replaceChildren(...rows);
      const all = $('.select-page', node);
      all.checked = page.jobs.length > 0 && page.jobs.every((j) => live.selected.has(j.id));
      all.addEventListener('change', () => { for (const j of page.jobs) select(j, all.checked); });
      const from = page.offset + 1;
      const to = page.offset + page.jobs.length;
      $('.range', node).textContent = `${from}–${to} of ${page.total}`;
      const prev = $('.prev', node);
      const next = $('.next', node);
      prev.disabled = page.offset === 0;
      next.disabled = to >= page.total;
      prev.addEventListener('click', () => { f.offsets.set(group, Math.max(0, page.offset - f.size)); void loadFailed(); });
      next.addEventListener('click', () => { f.offsets.set(group, page.offset + f.size); void loadFailed(); });
      sections.push(node);
    }
    box.replaceChildren(...sections);
    $('#failed-count').textContent = f.q ? `${shown} matching of ${snap.status.totals.failed}` : `${snap.status.totals.failed}`;
    $('#failed-empty').hidden = sections.length > 0;
    $('#failed-empty').textContent = f.q ? 'No failed job matches.' : 'No failed jobs.';
  }

  function bindFailedControls() {
    const f = live.failed;
    let timer = null;
    $('#failed-controls').addEventListener('submit', (e) => e.preventDefault());
    $('#failed-q').addEventListener('input', (e) => {
      clearTimeout(timer);
      timer = setTimeout(() => { f.q = e.target.value.trim(); f.offsets.clear(); void loadFailed(); }, 200);
    });
    $('#failed-sort').addEventListener('change', (e) => { f.sort = e.target.value; f.offsets.clear(); void loadFailed(); });
    $('#failed-order').addEventListener('change', (e) => { f.order = e.target.value; f.offsets.clear(); void loadFailed(); });
    $('#failed-size').addEventListener('change', (e) => { f.size = Number(e.target.value); f.offsets.clear(); void loadFailed(); });
  }

  // ---- selection and actions ----

  function select(job, on) {
    if (on) live.selected.set(job.id, { id: job.id, name: job.name, state: job.state });
    else live.selected.delete(job.id);
    for (const cb of document.querySelectorAll('input.pick')) if (cb.dataset.id === job.id) cb.checked = on;
    renderSelection();
  }

  /** Forget selected jobs that left the state they were selected in (a retried job is no longer failed). */
  function pruneSelection(snap) {
    const runningIds = new Set(snap.running.map((j) => j.id));
    const retryingIds = new Set(snap.retrying.map((j) => j.id));
    for (const [id, s] of live.selected) {
      if (s.state === 'running' && !runningIds.has(id)) live.selected.delete(id);
      if (s.state === 'retrying' && !retryingIds.has(id)) live.selected.delete(id);
    }
    renderSelection();
  }

  function renderSelection() {
    const n = live.selected.size;
    $('#selection').hidden = n === 0 && !$('#action-result').textContent;
    $('#selection-count').textContent = n === 1 ? '1 job selected' : `${n} jobs selected`;
    $('#retry-selected').disabled = n === 0;
    $('#kill-selected').disabled = n === 0;
  }

  async function act(verb) {
    const jobs = [...live.selected.values()];
    if (jobs.length === 0) return;
    const out = $('#action-result');
    out.className = 'result';
    out.textContent = `${verb === 'retry' ? 'Retrying' : 'Killing'} ${jobs.length}…`;
    const failures = [];
    let ok = 0;
    for (const j of jobs) {
      const r = await api('POST', `api/jobs/${encodeURIComponent(j.id)}/${verb}`);
      if (r.ok) { ok++; live.selected.delete(j.id); } else failures.push(`${j.name}: ${r.data?.message ? r.data.message : r.status}`);
      if (r.status === 401 || r.status === 403) break;
    }
    const done = verb === 'retry' ? 'retried' : 'kill requested';
    out.textContent = `${ok} ${done}` + (failures.length ? `; ${failures.length} failed: ${failures.join('; ')}` : '');
    out.className = failures.length ? 'result error' : 'result ok';
    for (const cb of document.querySelectorAll('input.pick')) cb.checked = live.selected.has(cb.dataset.id);
    renderSelection();
  }

  async function pauseResume(verb, groups) {
    const r = await api('POST', `api/${verb}`, groups ? { groups } : {});
    const out = $('#action-result');
    out.textContent = r.ok ? `${verb === 'pause' ? 'paused' : 'resumed'} ${groups ? groups.join(', ') : 'all groups'}` : `${verb}: ${r.data.message || r.status}`;
    out.className = r.ok ? 'result ok' : 'result error';
    $('#selection').hidden = false;
  }

  // ---- a job's record and log ----

  async function openLog(id) {
    live.logId = id;
    const d = $('#log-dialog');
    $('#log-title').textContent = id;
    $('#log-meta').replaceChildren();
    $('#log-text').textContent = 'loading…';
    $('#log-note').textContent = '';
    if (!d.open) d.showModal();
    await loadLog(id, true);
  }

  async function loadLog(id, scroll) {
    const r = await api('GET', `api/jobs/${encodeURIComponent(id)}?tail=65536`);
    if (live.logId !== id) return;
    const d = $('#log-dialog');
    if (!r.ok) {
      d.dataset.state = 'error';
      $('#log-text').textContent = r.data.message || String(r.status);
      return;
    }
    const j = r.data;
    d.dataset.state = j.state;
    const rec = j.record || {};
    const meta = j.meta || {};
    $('#log-title').textContent = rec.name || meta.name || id;
    const fields = [
      ['id', j.id], ['state', j.state], ['group', rec.group || meta.group], ['node', j.node],
      ['attempt', rec.attempt ?? meta.attempt], ['created', rec.created || meta.created], ['claimed', rec.claimed || meta.claimed],
      ['started', rec.started], ['finished', rec.finished], ['duration', rec.duration_ms !== undefined ? human(rec.duration_ms) : undefined],
      ['status', rec.status], ['exit code', rec.exit_code], ['signal', rec.signal], ['error', rec.error], ['archive', rec.archive],
    ].filter(([, v]) => v !== undefined && v !== null && v !== '');
    $('#log-meta').replaceChildren(...fields.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
    const pre = $('#log-text');
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.textContent = j.log ? j.log.text || '(empty)' : '(no log)';
    $('#log-note').textContent = j.log
      ? `${j.log.path} · ${j.log.size} bytes${j.log.truncated ? ` · last ${j.log.size - j.log.offset} shown` : ''}${j.state === 'running' ? ' · follows the running job' : ''}`
      : '';
    if (scroll || atEnd) pre.scrollTop = pre.scrollHeight;
  }

  // ---- token ----

  function renderToken() {
    $('#token-state').textContent = live.token ? 'token set for this tab' : 'no token: read-only';
    document.body.classList.toggle('has-token', Boolean(live.token));
  }

  function bindToken() {
    const input = $('#token');
    $('#token-form').addEventListener('submit', (e) => {
      e.preventDefault();
      live.token = input.value.trim();
      if (live.token) sessionStorage.setItem(TOKEN_KEY, live.token); else sessionStorage.removeItem(TOKEN_KEY);
      input.value = '';
      renderToken();
    });
    $('#token-clear').addEventListener('click', () => {
      live.token = '';
      sessionStorage.removeItem(TOKEN_KEY);
      input.value = '';
      renderToken();
    });
    renderToken();
  }

  // ---- start ----

  function start() {
    bindToken();
    bindFailedControls();
    $('#retry-selected').addEventListener('click', () => void act('retry'));
    $('#kill-selected').addEventListener('click', () => void act('kill'));
    $('#clear-selected').addEventListener('click', () => {
      live.selected.clear();
      $('#action-result').textContent = '';
      for (const cb of document.querySelectorAll('input.pick, input.select-page')) cb.checked = false;
      renderSelection();
    });
    $('#pause-all').addEventListener('click', () => void pauseResume('pause', null));
    $('#resume-all').addEventListener('click', () => void pauseResume('resume', null));
    $('#log-close').addEventListener('click', () => $('#log-dialog').close());
    $('#log-dialog').addEventListener('close', () => { live.logId = null; });
    renderSelection();
    setInterval(tick, 1000);
    connect();
  }

  start();
})();
