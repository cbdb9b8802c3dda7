#!/usr/bin/env node
// Browser test of the demo page (FLOCK_DEMO=1) as a person uses it: headless
// Chromium, two browser contexts (two people), real mouse moves, a real
// flock-server (FLOCK_SERVER), and in scenario (r) two instances sharing a
// real redis-server.
//
//   node demo.mjs            every scenario
//   node demo.mjs s          only (s): one server
//   node demo.mjs r          only (r): two instances on Redis
//
// Environment: FLOCK_SERVER (server binary), CHROMIUM (browser binary),
// FLOCK_TEST_REDIS_URL (a redis-server to use; else one is started on a free
// port), DEMO_SCREENSHOT=path (save two windows mid-session, as docs/img/demo.png),
// E2E_VERBOSE=1.

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { CheckError, check, freePort, onLines, within, HOST } from './util.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SERVER_BIN = process.env.FLOCK_SERVER || path.resolve(HERE, '../../build/meson/examples/flock-server');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const VERBOSE = process.env.E2E_VERBOSE === '1';
const SCREENSHOT = process.env.DEMO_SCREENSHOT;
const WAIT_MS = 10_000;
const VIEWPORT = { width: 900, height: 560 };
const TOLERANCE_PX = 3;

// ---------------------------------------------------------------------------
// processes

const live = new Set();
process.on('exit', () => {
  for (const p of live) {
    try {
      p.kill('SIGKILL');
    } catch {
      /* gone */
    }
  }
});

function watch(proc, name, lines, onLine = () => {}) {
  live.add(proc);
  proc.on('exit', () => live.delete(proc));
  onLines(proc, (line) => {
    lines.push(line);
    if (VERBOSE) console.log(`      [${name}] ${line}`);
    onLine(line);
  });
}

class FlockServer {
  constructor(name, env = {}) {
    this.name = name;
    this.env = env;
    this.port = 0;
    this.lines = [];
    this.proc = null;
  }

  get origin() {
    return `http://${HOST}:${this.port}`;
  }

  async start() {
    if (!this.port) this.port = await freePort();
    const env = { ...process.env, FLOCK_HOST: HOST, FLOCK_PORT: String(this.port), FLOCK_THREADS: '1', FLOCK_LOG_LEVEL: 'debug', ...this.env };
    const proc = spawn(SERVER_BIN, [], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    this.exited = once(proc, 'exit');
    let onPrinted;
    this.printed = new Promise((resolve) => (onPrinted = resolve));
    const started = new Promise((resolve, reject) => {
      watch(proc, this.name, this.lines, (line) => {
        if (line.startsWith('flock demo: open ')) onPrinted(line);
        if (line.includes('msg="flock-server started"')) resolve();
      });
      proc.on('exit', (code, signal) => reject(new Error(`${this.name} exited during start-up (${code ?? signal})`)));
    });
    await within(WAIT_MS, `${this.name} start-up`, started);
  }

  async kill() {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill('SIGKILL');
    await this.exited;
  }

  tail(n = 30) {
    return this.lines.slice(-n);
  }
}

/** A redis-server for scenario (r): FLOCK_TEST_REDIS_URL, or our own on a free port. */
async function startRedis() {
  if (process.env.FLOCK_TEST_REDIS_URL) return { url: process.env.FLOCK_TEST_REDIS_URL, stop: async () => {} };
  const port = await freePort();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'flock-demo-redis-'));
  const proc = spawn('redis-server', ['--bind', HOST, '--port', String(port), '--save', '', '--appendonly', 'no',
    '--notify-keyspace-events', 'Ex', '--dir', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines = [];
  await within(WAIT_MS, 'redis-server start-up', new Promise((resolve, reject) => {
    watch(proc, 'redis', lines, (line) => line.includes('Ready to accept connections') && resolve());
    proc.on('exit', (code) => reject(new Error(`redis-server exited (${code}): ${lines.join('\n')}`)));
  }));
  return {
    url: `redis://${HOST}:${port}`,
    stop: async () => {
      proc.kill('SIGTERM');
      await once(proc, 'exit');
      await rm(dir, { recursive: true, force: true });
    },
  };
}

function httpGet(url, headers = {}) {
  return new Promise((resolve, reject) => {
    http.get(url, { headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    }).on('error', reject);
  });
}

// ---------------------------------------------------------------------------
// people in browser pages

let browser;

/** One person: a fresh browser context with the demo page of `server`. */
async function openPerson(server, name, room, extra = '') {
  const context = await browser.newContext({ viewport: VIEWPORT });
  const page = await context.newPage();
  const p = { name, context, page, console: [], requests: [] };
  page.on('console', (m) => p.console.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => p.console.push(`pageerror: ${e.message}`));
  page.on('request', (r) => p.requests.push(r.url()));
  p.frames = [];
  page.on('websocket', (ws) => {
    const note = (dir) => (f) => {
      p.frames.push(`${dir} ${String(f.payload).slice(0, 160)}`);
      if (p.frames.length > 40) p.frames.shift();
    };
    ws.on('framesent', note('>'));
    ws.on('framereceived', note('<'));
    ws.on('close', () => p.frames.push('closed'));
  });
  await page.goto(`${server.origin}/?room=${encodeURIComponent(room)}&name=${encodeURIComponent(name)}${extra}`);
  await page.waitForFunction(() => window.flockDemo, null, { timeout: WAIT_MS });
  p.userId = await page.evaluate(() => window.flockDemo.userId);
  return p;
}

/** Waits until `fn(arg)` holds in `p`'s page; the failure names `what`. */
async function until(p, what, fn, arg) {
  try {
    await p.page.waitForFunction(fn, arg, { timeout: WAIT_MS, polling: 25 });
  } catch (e) {
    const err = new CheckError(`${p.name}: timed out waiting until ${what}`);
    err.details = {
      status: await p.page.textContent('#status').catch(() => '?'),
      people: await p.page.textContent('#people').catch(() => '?'),
      cursors: await p.page.$$eval('.cursor', (els) => els.map((el) => `${el.dataset.user}@${el.style.transform}`)).catch(() => '?'),
      console: p.console.slice(-8),
      frames: p.frames.filter((f) => !f.includes('heartbeat')).slice(-16),
      cause: e.message.split('\n')[0],
    };
    throw err;
  }
  console.log(`    ok  ${p.name}: ${what}`);
}

const statusIs = (p, state, text) =>
  until(p, `the page says "${text}"`, ({ state, text }) => {
    const el = document.getElementById('status');
    return el.dataset.state === state && el.textContent.includes(text);
  }, { state, text });

const lists = (p, names, what = `who-is-online lists ${names.join(', ')}`) =>
  until(p, what, (names) => {
    const shown = [...document.querySelectorAll('#people li .name')].map((el) => el.textContent.replace(' (you)', ''));
    return shown.length === names.length && names.every((n) => shown.includes(n));
  }, names);

const statusOf = (p, other, status) =>
  until(p, `who-is-online shows ${other.name} as ${status}`, ({ id, status }) =>
    document.querySelector(`#people li[data-user="${id}"]`)?.dataset.status === status, { id: other.userId, status });

/**
 * Moves `mover`'s mouse to (x, y) and waits until `watcher` draws its cursor
 * there, within a few pixels, at rest: the same place on two polls in a row
 * (the page's interpolation moves a cursor that has not arrived every frame),
 * so a cursor merely passing through the spot does not count.
 */
async function follows(mover, watcher, x, y) {
  await mover.page.mouse.move(x, y, { steps: 4 });
  await until(watcher, `${mover.name}'s cursor follows the mouse to (${x}, ${y}) within ${TOLERANCE_PX} px`, ({ id, x, y, tol, name }) => {
    const el = document.querySelector(`.cursor[data-user="${id}"]`);
    if (!el || el.querySelector('.label').textContent !== name) return false;
    const r = el.getBoundingClientRect();
    const at = `${r.left},${r.top}`;
    const seen = (window.__cursorSeen ??= {});
    const still = seen[id] === at;
    seen[id] = at;
    return still && Math.abs(r.left - x) <= tol && Math.abs(r.top - y) <= tol;
  }, { id: mover.userId, x, y, tol: TOLERANCE_PX, name: mover.name });
}

const noCursorOf = (p, other) =>
  until(p, `${other.name}'s cursor is gone`, (id) => !document.querySelector(`.cursor[data-user="${id}"]`), other.userId);

/** Two windows side by side, as one PNG (docs/img/demo.png). */
async function screenshot(people, file) {
  const shots = await Promise.all(people.map((p) => p.page.screenshot()));
  const page = await browser.newPage({ viewport: { width: VIEWPORT.width * 2 + 72, height: VIEWPORT.height + 92 } });
  const frames = shots
    .map((png, i) => `<figure><figcaption>${people[i].name}'s window</figcaption><img src="data:image/png;base64,${png.toString('base64')}"></figure>`)
    .join('');
  await page.setContent(`<style>body{margin:0;padding:24px;display:flex;gap:24px;background:#cfd4dc;font:13px system-ui,sans-serif}
    figure{margin:0;border-radius:8px;overflow:hidden;box-shadow:0 6px 18px rgba(0,0,0,.25);background:#fff}
    figcaption{padding:6px 10px;background:#e6e8ec;color:#444}img{display:block}</style>${frames}`);
  await page.screenshot({ path: file });
  await page.close();
  console.log(`    ..  screenshot saved to ${file}`);
}

// ---------------------------------------------------------------------------
// the scenario, on one server or on two instances

/**
 * Ann's page on `servers[0]`, Ben's on `servers[1]` (the same server when one).
 * `restart()` brings the killed servers back on their ports.
 */
async function session({ servers, track, room, shot }) {
  const [sa, sb] = [servers[0], servers.at(-1)];
  const ann = track(await openPerson(sa, 'Ann', room));
  // Ben's page speaks the binary protocol (?protocol=binary), Ann's JSON.
  const ben = track(await openPerson(sb, 'Ben', room, shot ? '' : '&idleMs=1200&protocol=binary'));
  for (const p of [ann, ben]) await statusIs(p, 'open', 'connected');
  if (!shot) {
    const wires = await Promise.all([ann, ben].map((p) => p.page.evaluate(() => window.flockDemo.client.wire)));
    check(wires[0] === 'json' && wires[1] === 'binary', `Ann's page speaks ${wires[0]}, Ben's ${wires[1]} (flock.binary.v2)`);
  }
  check((await ann.page.textContent('#room')) === room, `the page shows the room from ?room= (${room})`);
  await lists(ann, ['Ann', 'Ben']);
  await lists(ben, ['Ann', 'Ben']);

  // Ben has not touched his page: after idleMs he is idle for Ann, and active again once he moves.
  if (!shot) await statusOf(ann, ben, 'idle');
  await statusOf(ann, ann, 'active');

  await follows(ann, ben, 200, 150);
  await follows(ann, ben, 640, 420);
  await follows(ben, ann, 330, 260);
  await statusOf(ann, ben, 'active');
  await follows(ben, ann, 120, 380);
  if (shot) {
    await ann.page.mouse.move(520, 200, { steps: 3 });
    await follows(ben, ann, 300, 330);
    await until(ben, "Ann's cursor at rest", (id) => !!document.querySelector(`.cursor[data-user="${id}"]`), ann.userId);
    await screenshot([ann, ben], shot);
  }
  check([...ann.requests, ...ben.requests].every((u) => u.startsWith(sa.origin) || u.startsWith(sb.origin)),
    'the pages loaded nothing from another origin');

  // The server dies: both pages say so, and come back when it does.
  for (const s of servers) await s.kill();
  console.log('    ..  flock-server killed (SIGKILL)');
  for (const p of [ann, ben]) await statusIs(p, 'reconnecting', 'reconnecting');
  await noCursorOf(ann, ben);
  for (const s of servers) await s.start();
  console.log('    ..  flock-server restarted on the same port');
  for (const p of [ann, ben]) await statusIs(p, 'open', 'connected');
  await lists(ann, ['Ann', 'Ben'], 'who-is-online lists Ann and Ben again');
  await lists(ben, ['Ann', 'Ben'], 'who-is-online lists Ann and Ben again');
  await follows(ann, ben, 450, 300);
  await follows(ben, ann, 560, 120);

  // Ben closes his window: his cursor and name leave Ann's page.
  await ben.page.close();
  console.log("    ..  Ben's page closed");
  await noCursorOf(ann, ben);
  await lists(ann, ['Ann'], "who-is-online no longer lists Ben");
  check(!ann.console.some((l) => l.startsWith('pageerror') || l.startsWith('error')), "no errors in Ann's console", ann.console);
}

async function scenarioS({ track, servers }) {
  // Off by default: a server without FLOCK_DEMO does not serve the page.
  const plain = new FlockServer('flock:plain');
  servers.push(plain);
  await plain.start();
  check((await httpGet(`${plain.origin}/`)).status === 404, 'without FLOCK_DEMO, GET / is 404');
  await plain.kill();

  const server = new FlockServer('flock:demo', { FLOCK_DEMO: '1' });
  servers.push(server);
  await server.start();
  const printed = await within(WAIT_MS, 'the line with the address', server.printed);
  check(printed === `flock demo: open http://${HOST}:${server.port}/ in two browser windows (add ?room=NAME for another room)`,
    `flock-server printed the address to open: ${printed}`);
  for (const [url, type] of [['/', 'text/html'], ['/demo', 'text/html'], ['/demo/flock.js', 'text/javascript'],
    ['/demo/demo.js', 'text/javascript'], ['/demo/demo.css', 'text/css']]) {
    const r = await httpGet(server.origin + url);
    check(r.status === 200 && r.headers['content-type'] === `${type}; charset=utf-8` && r.headers['cache-control'] === 'no-cache' && /^"[0-9a-f]+"$/.test(r.headers.etag),
      `GET ${url}: 200, ${r.headers['content-type']}, cache-control ${r.headers['cache-control']}, etag ${r.headers.etag}`);
    const again = await httpGet(server.origin + url, { 'If-None-Match': r.headers.etag });
    check(again.status === 304 && again.body === '', `GET ${url} with its ETag: 304, no body`);
  }
  await session({ servers: [server], track, room: SCREENSHOT ? 'design-review' : `room-${process.pid}`, shot: SCREENSHOT });
}

async function scenarioR({ track, servers }) {
  const redis = await startRedis();
  try {
    for (const name of ['flock:1', 'flock:2']) {
      const s = new FlockServer(name, { FLOCK_DEMO: '1', FLOCK_REDIS_URL: redis.url });
      servers.push(s);
      await s.start();
    }
    await session({ servers, track, room: `redis-${process.pid}-${Date.now()}` });
  } finally {
    for (const s of servers) await s.kill();
    await redis.stop();
  }
}

const SCENARIOS = [
  { id: 's', title: 'demo page, two people on one server', run: scenarioS },
  { id: 'r', title: 'demo page, two people on two instances sharing Redis', run: scenarioR },
];

async function main() {
  const only = process.argv.slice(2);
  const selected = SCENARIOS.filter((s) => only.length === 0 || only.includes(s.id));
  if (selected.length === 0) throw new Error(`no scenario matches ${only.join(' ')}`);
  const t0 = performance.now();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  console.log(`flock demo page test: server ${SERVER_BIN}, Chromium ${browser.version()}`);
  const results = [];
  for (const sc of selected) {
    const people = [];
    const track = (p) => (people.push(p), p);
    const started = performance.now();
    console.log(`\n(${sc.id}) ${sc.title}`);
    let error = null;
    const servers = [];
    try {
      await sc.run({ track, servers });
    } catch (e) {
      error = e;
    }
    const secs = ((performance.now() - started) / 1000).toFixed(1);
    if (error) {
      console.log(`FAIL (${sc.id}) ${sc.title} — ${secs} s\n    ${error.message}`);
      if (error.details) console.log(`    details: ${JSON.stringify(error.details, null, 1).replace(/\n\s*/g, ' ').slice(0, 4000)}`);
      if (!(error instanceof CheckError)) console.log(error.stack);
      for (const s of servers) console.log(`    ${s.name} log:\n      ${s.tail().join('\n      ')}`);
    } else {
      console.log(`PASS (${sc.id}) ${sc.title} — ${secs} s`);
    }
    results.push({ id: sc.id, ok: !error });
    for (const p of people) await p.context.close().catch(() => {});
    for (const s of servers) await s.kill();
  }
  await browser.close();
  const failed = results.filter((r) => !r.ok);
  console.log(`\n${results.length - failed.length}/${results.length} demo scenarios passed in ${((performance.now() - t0) / 1000).toFixed(1)} s` +
    (failed.length ? ` — FAILED: ${failed.map((r) => r.id).join(', ')}` : ''));
  return failed.length ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error('demo test: fatal:', e);
    process.exit(2);
  },
);
