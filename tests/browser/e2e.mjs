#!/usr/bin/env node
// Browser end-to-end test: real headless Chromium pages running client.js (a
// faithful re-implementation of the existing Flock browser client) against a
// real flock-server process.
//
//   node e2e.mjs            run every scenario
//   node e2e.mjs a c        run only scenarios a and c
//
// Environment: FLOCK_SERVER (server binary), CHROMIUM (browser binary),
// E2E_VERBOSE=1 (print server logs and browser console as they happen).

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { CheckError, check, checkEqual, freePort, onLines, within, HOST } from './util.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SERVER_BIN = process.env.FLOCK_SERVER || path.resolve(HERE, '../../build/meson/examples/flock-server');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const VERBOSE = process.env.E2E_VERBOSE === '1';
const WAIT_MS = 10_000; // default upper bound for any single awaited event

// ---------------------------------------------------------------------------
// flock-server process

const liveServers = new Set();
process.on('exit', () => {
  for (const s of liveServers) s.kill();
});

class FlockServer {
  constructor(name, port, env = {}) {
    liveServers.add(this);
    this.name = name;
    this.port = port;
    this.env = env;
    this.lines = [];
    this.proc = null;
  }

  get wsUrl() {
    return `ws://${HOST}:${this.port}/`;
  }

  async start() {
    const env = {
      ...process.env,
      FLOCK_HOST: HOST,
      FLOCK_PORT: String(this.port),
      FLOCK_LOG_LEVEL: 'debug',
      ...this.env,
    };
    const proc = spawn(SERVER_BIN, [], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    this.exited = once(proc, 'exit').then(([code, signal]) => ({ code, signal }));
    let onLine;
    const started = new Promise((resolve, reject) => {
      onLine = (line) => {
        if (line.includes('msg="flock-server started"')) resolve();
      };
      this.exited.then(({ code, signal }) => reject(new Error(`flock-server exited during start-up (code ${code}, signal ${signal})`)));
    });
    onLines(proc, (line) => {
      this.lines.push(line);
      if (VERBOSE) console.log(`      [${this.name}] ${line}`);
      onLine(line);
    });
    await within(WAIT_MS, 'flock-server start-up', started);
    // Readiness over HTTP too: GET /health is part of the contract.
    const health = await httpGet(`http://${HOST}:${this.port}/health`);
    if (health.status !== 200 || health.body !== '{"status":"ok"}') {
      throw new Error(`GET /health answered ${health.status} ${health.body}`);
    }
  }

  /** Sends `signal` and waits for the process to exit. */
  async stop(signal = 'SIGTERM') {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return this.exited;
    this.proc.kill(signal);
    try {
      return await within(WAIT_MS, `flock-server exit after ${signal}`, this.exited);
    } catch (e) {
      this.proc.kill('SIGKILL');
      throw e;
    }
  }

  kill() {
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
      try {
        this.proc.kill('SIGCONT');
        this.proc.kill('SIGKILL');
      } catch {
        /* gone */
      }
    }
  }

  tail(n = 40) {
    return this.lines.slice(-n);
  }
}

function httpGet(url, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('error', reject);
  });
}

/** A raw WebSocket upgrade request; resolves with the HTTP status the server answered. */
function upgradeStatus(port, target) {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: HOST,
      port,
      path: target,
      headers: {
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
      },
    });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve(res.statusCode);
    });
    req.on('response', (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('error', reject);
    req.end();
  });
}

// ---------------------------------------------------------------------------
// static server for page.html and client.js

async function startStaticServer() {
  const files = {
    '/page.html': 'text/html; charset=utf-8',
    '/client.js': 'text/javascript; charset=utf-8',
  };
  const srv = http.createServer(async (req, res) => {
    const { pathname } = new URL(req.url, 'http://x');
    const type = files[pathname];
    if (!type) {
      res.writeHead(404).end();
      return;
    }
    const body = await readFile(path.join(HERE, pathname.slice(1)));
    res.writeHead(200, { 'content-type': type, 'cache-control': 'no-store' }).end(body);
  });
  srv.listen(0, HOST);
  await once(srv, 'listening');
  return { srv, origin: `http://${HOST}:${srv.address().port}` };
}

// ---------------------------------------------------------------------------
// browser pages

let browser;
let pageOrigin;

/**
 * Opens a fresh browser context (its own cookies, cache, sockets) with one page
 * that creates a FlockClient and joins `rooms`, as an app would at start-up.
 */
async function openUser({ server, user, rooms, meta, options = {} }) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const u = { user, context, page, sockets: [], console: [] };
  page.on('websocket', (ws) => {
    const rec = { url: ws.url(), sent: [], received: [], errors: [], closed: false };
    u.sockets.push(rec);
    ws.on('framesent', (f) => rec.sent.push(parseFrame(f.payload)));
    ws.on('framereceived', (f) => rec.received.push(parseFrame(f.payload)));
    ws.on('socketerror', (e) => rec.errors.push(String(e)));
    ws.on('close', () => (rec.closed = true));
  });
  page.on('console', (m) => {
    u.console.push(`${m.type()}: ${m.text()}`);
    if (VERBOSE) console.log(`      [${user} console] ${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => u.console.push(`pageerror: ${e.message}`));
  const q = new URLSearchParams({ server, user, rooms: rooms.join(',') });
  if (meta) q.set('meta', JSON.stringify(meta));
  for (const [k, v] of Object.entries(options)) q.set(k, String(v));
  await page.goto(`${pageOrigin}/page.html?${q}`);
  await page.waitForFunction(() => window.flock && window.flock.client, null, { timeout: WAIT_MS });
  return u;
}

function parseFrame(payload) {
  try {
    return JSON.parse(String(payload));
  } catch {
    return { unparsed: String(payload) };
  }
}

/** The client's full state (views, logs, counters) as plain data. */
function snap(u) {
  return u.page.evaluate(() => window.flock.client.snapshot());
}

/** Runs `fn(client, arg)` inside the page. */
function act(u, fn, arg) {
  return u.page.evaluate(({ src, arg }) => (0, eval)(`(${src})`)(window.flock.client, arg), { src: fn.toString(), arg });
}

/**
 * Waits until `pred(snapshot, arg)` holds inside `u`'s page, polled on page
 * state (no fixed sleeps). On timeout the error carries `what` and the state.
 */
async function waitUntil(u, what, pred, arg, timeout = WAIT_MS) {
  try {
    await u.page.waitForFunction(
      ({ src, arg }) => {
        const s = window.flock && window.flock.client && window.flock.client.snapshot();
        return !!s && (0, eval)(`(${src})`)(s, arg);
      },
      { src: pred.toString(), arg },
      { timeout, polling: 25 },
    );
  } catch (e) {
    const err = new CheckError(`${u.user}: timed out waiting until ${what}`);
    err.details = { state: await snap(u).catch(() => 'unavailable'), cause: e.message.split('\n')[0] };
    throw err;
  }
  console.log(`    ok  ${u.user}: ${what}`);
}

const sentFrames = (u, type) => u.sockets.flatMap((s) => s.sent).filter((m) => !type || m.type === type);
const receivedFrames = (u, type) => u.sockets.flatMap((s) => s.received).filter((m) => !type || m.type === type);

async function noAnomalies(...users) {
  for (const u of users) {
    const s = await snap(u);
    const anomalies = Object.values(s.rooms).flatMap((r) => r.anomalies.map((a) => ({ room: r.roomId, ...a })));
    checkEqual(anomalies, [], `${u.user}: view stayed consistent (no duplicate joins, no events for absent members)`);
  }
}

// ---------------------------------------------------------------------------
// scenarios

const ANN = { name: 'Ann', color: '#e4572e' };
const BEN = { name: 'Ben', color: '#17bebb' };
const CARA = { name: 'Cara', color: '#ffc914' };

/** (a) two users in one room: snapshot, joins, cursors, presence, leaves. */
async function scenarioA({ server, track }) {
  const ann = track(await openUser({ server: server.wsUrl, user: 'ann', rooms: ['demo'], meta: ANN }));
  await waitUntil(ann, 'joined "demo" (empty snapshot)', (s) => s.rooms.demo.joined && s.rooms.demo.log[1]?.users.length === 0);
  const ben = track(await openUser({ server: server.wsUrl, user: 'ben', rooms: ['demo'], meta: BEN }));

  await waitUntil(ben, 'view of "demo" has Ann (from the join:ack snapshot)', (s) => s.rooms.demo.joined && !!s.rooms.demo.members.ann);
  await waitUntil(ann, 'view of "demo" has Ben (user:joined)', (s) => !!s.rooms.demo.members.ben);
  let a = await snap(ann);
  let b = await snap(ben);
  checkEqual(b.rooms.demo.members.ann.metadata, ANN, "Ben's view carries Ann's metadata");
  checkEqual(a.rooms.demo.members.ben.metadata, BEN, "Ann's view carries Ben's metadata");
  checkEqual(Object.keys(a.rooms.demo.members), ['ben'], "Ann's view lists only Ben (never herself)");

  // Cursor at an exact (non-round) position: relayed as given.
  const pos = { x: 0.3141592653589793, y: 0.2718281828459045 };
  const before = Date.now();
  await act(ann, (c, p) => c.moveCursor('demo', p.x, p.y), pos);
  await waitUntil(ben, `Ann's cursor is at exactly (${pos.x}, ${pos.y})`, (s, p) => {
    const cur = s.rooms.demo.members.ann.cursor;
    return !!cur && cur.x === p.x && cur.y === p.y;
  }, pos);
  b = await snap(ben);
  const ts = b.rooms.demo.members.ann.cursor.timestamp;
  check(Number.isFinite(ts) && ts >= before - 5000 && ts <= Date.now() + 5000, `cursor:updated carries an epoch-ms timestamp (${ts})`);

  // Throttling: a burst of 40 moves goes out as at most a handful of messages,
  // and the last position always arrives.
  const movesBefore = sentFrames(ann, 'cursor:move').length;
  await act(ann, (c) => {
    for (let i = 1; i <= 40; i++) c.moveCursor('demo', i / 40 - 0.25, 0.125);
  });
  await waitUntil(ben, "Ann's cursor ends at the burst's last position (0.75, 0.125)", (s) => {
    const cur = s.rooms.demo.members.ann.cursor;
    return !!cur && cur.x === 0.75 && cur.y === 0.125;
  });
  const burst = sentFrames(ann, 'cursor:move').length - movesBefore;
  check(burst >= 1 && burst <= 3, `a 40-move burst was throttled to ${burst} cursor:move message(s)`);

  // Ben's cursor reaches Ann; nobody gets their own cursor echoed.
  await act(ben, (c) => c.moveCursor('demo', 0.9, 0.1));
  await waitUntil(ann, "Ben's cursor is at (0.9, 0.1)", (s) => s.rooms.demo.members.ben.cursor?.x === 0.9 && s.rooms.demo.members.ben.cursor?.y === 0.1);
  check(!receivedFrames(ann, 'cursor:updated').some((m) => m.userId === 'ann'), 'Ann never received her own cursor back');
  check(!receivedFrames(ben, 'cursor:updated').some((m) => m.userId === 'ben'), 'Ben never received his own cursor back');

  // Presence patch: merged in the view; the broadcast carries only the patch.
  await act(ben, (c) => c.updatePresence('demo', { status: 'away' }));
  await waitUntil(ann, "Ben's metadata is merged with {status: 'away'}", (s) => s.rooms.demo.members.ben.metadata.status === 'away');
  a = await snap(ann);
  checkEqual(a.rooms.demo.members.ben.metadata, { ...BEN, status: 'away' }, "Ann's view of Ben: name and color kept, status added");
  checkEqual(receivedFrames(ann, 'presence:updated').map((m) => m.metadata), [{ status: 'away' }], 'presence:updated carried only the patch');

  // A late joiner's snapshot is complete: merged metadata and last cursors.
  const cara = track(await openUser({ server: server.wsUrl, user: 'cara', rooms: ['demo'], meta: CARA }));
  await waitUntil(cara, 'joined "demo" with Ann and Ben in the snapshot', (s) => s.rooms.demo.joined && !!s.rooms.demo.members.ann && !!s.rooms.demo.members.ben);
  const c = await snap(cara);
  checkEqual(c.rooms.demo.members.ben.metadata, { ...BEN, status: 'away' }, "late joiner's snapshot has Ben's merged metadata");
  checkEqual(
    [c.rooms.demo.members.ann.cursor?.x, c.rooms.demo.members.ann.cursor?.y],
    [0.75, 0.125],
    "late joiner's snapshot has Ann's last cursor",
  );

  // Cursor leave.
  await act(ann, (c) => c.leaveCursor('demo'));
  await waitUntil(ben, "Ann's cursor is removed", (s) => s.rooms.demo.members.ann && s.rooms.demo.members.ann.cursor === null && s.rooms.demo.log.at(-1).t === 'cursor:removed');
  await waitUntil(cara, "Ann's cursor is removed", (s) => s.rooms.demo.members.ann.cursor === null);

  // Clean leave: Ben is gone for everyone, his socket stays open.
  await act(ben, (c) => c.leave('demo'));
  await waitUntil(ann, 'Ben is gone from "demo"', (s) => !s.rooms.demo.members.ben && s.rooms.demo.log.at(-1).t === 'user:left');
  await waitUntil(cara, 'Ben is gone from "demo"', (s) => !s.rooms.demo.members.ben);
  b = await snap(ben);
  check(b.state === 'open' && b.stats.closes.length === 0 && ben.sockets.length === 1, 'Ben left the room but kept his one socket open');
  await noAnomalies(ann, ben, cara);
}

/** (b) several rooms on one socket, routed by roomId. */
async function scenarioB({ server, track }) {
  const ann = track(await openUser({ server: server.wsUrl, user: 'ann', rooms: ['r1', 'r2'], meta: ANN }));
  const ben = track(await openUser({ server: server.wsUrl, user: 'ben', rooms: ['r2'], meta: BEN }));
  const cara = track(await openUser({ server: server.wsUrl, user: 'cara', rooms: ['r1'], meta: CARA }));

  await waitUntil(ann, 'r1 has only Cara and r2 has only Ben', (s) =>
    JSON.stringify(Object.keys(s.rooms.r1.members)) === '["cara"]' && JSON.stringify(Object.keys(s.rooms.r2.members)) === '["ben"]');
  await waitUntil(ben, 'r2 has only Ann', (s) => JSON.stringify(Object.keys(s.rooms.r2.members)) === '["ann"]');
  await waitUntil(cara, 'r1 has only Ann', (s) => JSON.stringify(Object.keys(s.rooms.r1.members)) === '["ann"]');
  check(ann.sockets.length === 1, 'Ann uses a single WebSocket for both rooms');
  checkEqual(sentFrames(ann, 'join').map((m) => m.roomId), ['r1', 'r2'], 'Ann sent one join per room on that socket');

  // Cursor in r2 reaches Ben, not Cara.
  await act(ann, (c) => c.moveCursor('r2', 0.2, 0.8));
  await waitUntil(ben, "r2: Ann's cursor is at (0.2, 0.8)", (s) => s.rooms.r2.members.ann.cursor?.x === 0.2 && s.rooms.r2.members.ann.cursor?.y === 0.8);
  // Barrier: a later message from the same socket to Cara. Anything the server
  // had wrongly sent her for r2 would have arrived before it.
  await act(ann, (c) => c.moveCursor('r1', 0.6, 0.4));
  await waitUntil(cara, "r1: Ann's cursor is at (0.6, 0.4)", (s) => s.rooms.r1.members.ann.cursor?.x === 0.6 && s.rooms.r1.members.ann.cursor?.y === 0.4);
  check(!receivedFrames(cara).some((m) => m.roomId === 'r2'), 'Cara received nothing for r2');
  checkEqual(
    receivedFrames(cara, 'cursor:updated').map((m) => [m.roomId, m.position.x, m.position.y]),
    [['r1', 0.6, 0.4]],
    'Cara got exactly one cursor update: the r1 one',
  );
  await waitUntil(ben, "r2: Ann's cursor is still at (0.2, 0.8)", (s) => s.rooms.r2.members.ann.cursor?.x === 0.2);
  check(!receivedFrames(ben).some((m) => m.roomId === 'r1'), 'Ben received nothing for r1');

  // Replies to Ann are routed by roomId into the right view.
  await act(ben, (c) => c.moveCursor('r2', 0.33, 0.66));
  await act(cara, (c) => c.updatePresence('r1', { status: 'busy' }));
  await waitUntil(ann, "r2 shows Ben's cursor and r1 shows Cara busy", (s) =>
    s.rooms.r2.members.ben.cursor?.x === 0.33 && s.rooms.r1.members.cara.metadata.status === 'busy');
  const a = await snap(ann);
  check(!a.rooms.r1.members.ben && !a.rooms.r2.members.cara && a.stats.unrouted === 0, "Ann's two views never mixed (no Ben in r1, no Cara in r2, nothing unrouted)");

  // Leaving one room keeps the other.
  await act(ann, (c) => c.leave('r1'));
  await waitUntil(cara, 'Ann left r1', (s) => !s.rooms.r1.members.ann);
  await act(ann, (c) => c.moveCursor('r2', 0.5, 0.5));
  await waitUntil(ben, "r2: Ann is still there, cursor at (0.5, 0.5)", (s) => s.rooms.r2.members.ann?.cursor?.x === 0.5);
  await noAnomalies(ann, ben, cara);
}

/** (c) refresh: Ben reloads the page and re-joins with the same userId. */
async function scenarioC({ server, track }) {
  const ann = track(await openUser({ server: server.wsUrl, user: 'ann', rooms: ['demo'], meta: ANN }));
  await waitUntil(ann, 'joined "demo"', (s) => s.rooms.demo.joined);
  const ben = track(await openUser({ server: server.wsUrl, user: 'ben', rooms: ['demo'], meta: BEN }));
  await waitUntil(ann, 'sees Ben', (s) => !!s.rooms.demo.members.ben);
  await act(ben, (c) => c.moveCursor('demo', 0.4, 0.4));
  await waitUntil(ann, "sees Ben's cursor", (s) => s.rooms.demo.members.ben.cursor?.x === 0.4);
  const mark = (await snap(ann)).rooms.demo.log.length;

  await ben.page.reload();
  await ben.page.waitForFunction(() => window.flock && window.flock.client, null, { timeout: WAIT_MS });
  await waitUntil(ben, 'after reload: joined again, sees Ann', (s) => s.rooms.demo.joined && !!s.rooms.demo.members.ann);
  await waitUntil(ann, 'sees Ben again after a user:left and a user:joined', (s, mark) => {
    const ev = s.rooms.demo.log.slice(mark).filter((e) => e.userId === 'ben').map((e) => e.t);
    return !!s.rooms.demo.members.ben && ev.includes('user:left') && ev.at(-1) === 'user:joined';
  }, mark);
  check(ben.sockets.length === 2, 'the reload used a new socket');

  // Barrier: traffic after the re-join, then a late joiner checks the server's
  // own member list (its join:ack snapshot).
  await act(ben, (c) => c.moveCursor('demo', 0.7, 0.2));
  await waitUntil(ann, "sees the reloaded Ben's cursor", (s) => s.rooms.demo.members.ben?.cursor?.x === 0.7);
  const cara = track(await openUser({ server: server.wsUrl, user: 'cara', rooms: ['demo'], meta: CARA }));
  await waitUntil(cara, 'joined "demo"', (s) => s.rooms.demo.joined);
  await waitUntil(ann, 'sees Cara', (s) => !!s.rooms.demo.members.cara);
  const ack = receivedFrames(cara, 'join:ack')[0];
  checkEqual(ack.users.map((u) => u.userId).sort(), ['ann', 'ben'], "late joiner's snapshot: Ann and exactly one Ben");

  const a = await snap(ann);
  const benEvents = a.rooms.demo.log.slice(mark).filter((e) => e.userId === 'ben' && e.t.startsWith('user:')).map((e) => e.t);
  checkEqual(benEvents, ['user:left', 'user:joined'], "Ann saw exactly one user:left then one user:joined for Ben");
  check(!!a.rooms.demo.members.ben && a.rooms.demo.members.ben.cursor?.x === 0.7, 'the stale socket never removed the live Ben');
  await noAnomalies(ann, ben, cara);
}

/** (d) server restart on the same port: clients reconnect with backoff and re-join. */
async function scenarioD({ server, track }) {
  const ann = track(await openUser({ server: server.wsUrl, user: 'ann', rooms: ['demo'], meta: ANN }));
  await waitUntil(ann, 'joined "demo"', (s) => s.rooms.demo.joined);
  const ben = track(await openUser({ server: server.wsUrl, user: 'ben', rooms: ['demo'], meta: BEN }));
  await waitUntil(ben, 'sees Ann', (s) => !!s.rooms.demo.members.ann);
  await act(ann, (c) => c.moveCursor('demo', 0.1, 0.9));
  await waitUntil(ben, "sees Ann's cursor", (s) => s.rooms.demo.members.ann.cursor?.x === 0.1);

  const stopped = await server.stop('SIGTERM');
  check(stopped.code === 0, `flock-server exited cleanly on SIGTERM (code ${stopped.code}, signal ${stopped.signal})`);
  for (const u of [ann, ben]) {
    // The first retry (after 1 s) finds nothing listening; the next is 2 s later.
    await waitUntil(u, 'saw the close and one refused reconnect (backoff 1 s, then 2 s)', (s) =>
      s.stats.closes.length >= 2 && s.stats.closes[0].wasOpen && !s.stats.closes[1].wasOpen && s.stats.reconnectDelays.length >= 2, null, 6000);
    const s = await snap(u);
    check(s.stats.closes[0].code === 1001, `${u.user}: the server closed the socket with 1001 on shutdown (got ${s.stats.closes[0].code})`);
    checkEqual(s.stats.reconnectDelays.slice(0, 2), [1000, 2000], `${u.user}: reconnect delays were 1 s then 2 s`);
  }

  await server.start(); // same port
  console.log(`    ..  flock-server restarted on port ${server.port}`);
  for (const u of [ann, ben]) {
    await waitUntil(u, 'reconnected by itself and re-joined "demo"', (s) => s.state === 'open' && s.stats.opens === 2 && s.rooms.demo.joined, null, 8000);
  }
  await waitUntil(ann, 'sees Ben again', (s) => !!s.rooms.demo.members.ben);
  await waitUntil(ben, 'sees Ann again', (s) => !!s.rooms.demo.members.ann);
  const b = await snap(ben);
  check(b.rooms.demo.members.ann.cursor === null, "Ben's view was rebuilt from the new snapshot only (Ann's pre-restart cursor is gone)");
  checkEqual(b.rooms.demo.members.ann.metadata, ANN, "Ann's metadata came back with the re-join");
  for (const u of [ann, ben]) {
    const s = await snap(u);
    check(s.stats.connects === 3 && s.stats.opens === 2, `${u.user}: 3 connection attempts (first, refused, reconnected), 2 opened`);
  }

  await act(ann, (c) => c.moveCursor('demo', 0.55, 0.45));
  await waitUntil(ben, "Ann's cursor flows again (0.55, 0.45)", (s) => s.rooms.demo.members.ann.cursor?.x === 0.55 && s.rooms.demo.members.ann.cursor?.y === 0.45);
  await act(ben, (c) => c.moveCursor('demo', 0.45, 0.55));
  await waitUntil(ann, "Ben's cursor flows again (0.45, 0.55)", (s) => s.rooms.demo.members.ben.cursor?.x === 0.45);
  await noAnomalies(ann, ben);
}

/** (e) API keys: `?apiKey=` in the URL is accepted at upgrade, a wrong one refused. */
async function scenarioE({ server, track }) {
  const base = server.wsUrl;
  const ann = track(await openUser({ server: `${base}?apiKey=key-two`, user: 'ann', rooms: ['demo'], meta: ANN }));
  const ben = track(await openUser({ server: `${base}?apiKey=key-one`, user: 'ben', rooms: ['demo'], meta: BEN }));
  await waitUntil(ann, 'joined with ?apiKey=key-two and sees Ben (key-one)', (s) => s.rooms.demo.joined && !!s.rooms.demo.members.ben);
  await waitUntil(ben, 'joined with ?apiKey=key-one and sees Ann', (s) => s.rooms.demo.joined && !!s.rooms.demo.members.ann);
  check(sentFrames(ann, 'join').every((m) => !('apiKey' in m)) && sentFrames(ann, 'join').length === 1, 'the key was only in the URL: no apiKey field on the wire');

  // Wrong key: the WebSocket upgrade itself is refused, so the socket never opens.
  const mallory = track(await openUser({ server: `${base}?apiKey=wrong-key`, user: 'mallory', rooms: ['demo'], meta: { name: 'Mallory' } }));
  await waitUntil(mallory, 'two connection attempts refused, none opened', (s) => s.stats.closes.length >= 2 && s.stats.opens === 0);
  const m = await snap(mallory);
  check(m.stats.closes.every((c) => !c.wasOpen && c.code === 1006), `the browser saw abnormal closes before open (codes ${m.stats.closes.map((c) => c.code)})`);
  check(mallory.sockets.every((s) => s.received.length === 0), 'no frame ever reached the wrong-key client');
  const browserErrors = [...new Set(mallory.sockets.flatMap((s) => s.errors))];
  check(browserErrors.length > 0 && browserErrors.every((e) => /authentication/i.test(e)), `Chromium reported the refused upgrade as: ${JSON.stringify(browserErrors)}`);
  const status = await upgradeStatus(server.port, '/?apiKey=wrong-key');
  check(status === 401, `a raw upgrade with the wrong key is answered HTTP ${status}`);
  const okStatus = await upgradeStatus(server.port, '/?apiKey=key-one');
  check(okStatus === 101, `a raw upgrade with a right key is answered HTTP ${okStatus}`);
  const a = await snap(ann);
  check(!a.rooms.demo.members.mallory && !receivedFrames(ann).some((f) => f.userId === 'mallory'), 'Ann never saw Mallory');

  // No key at all: the socket opens, the join is refused with INVALID_API_KEY
  // and closed; the client retries about once a second.
  const nokey = track(await openUser({ server: base, user: 'nokey', rooms: ['demo'], meta: { name: 'No Key' } }));
  await waitUntil(nokey, 'join refused twice (INVALID_API_KEY), retried each time', (s) => s.stats.opens >= 2 && s.stats.closes.length >= 2);
  const n = await snap(nokey);
  const errors = receivedFrames(nokey, 'error');
  check(errors.length >= 2 && errors.every((e) => e.code === 'INVALID_API_KEY'), `each join was answered by error ${errors[0]?.code}${errors[0] && 'roomId' in errors[0] ? ' (with roomId)' : ' (no roomId: dropped by the client)'}`);
  check(n.rooms.demo.acks === 0 && n.stats.closes.every((c) => c.wasOpen), 'never admitted; the server closed each socket after the error');
  checkEqual(n.stats.reconnectDelays.slice(0, 2), [1000, 1000], 'the client retried about once a second (backoff resets after an open)');
  await noAnomalies(ann, ben);
}

/** (f) heartbeat silence: a frozen server (SIGSTOP) is detected by missing acks only. */
async function scenarioF({ server, track }) {
  // Shortened client timings: heartbeat every 200 ms, dead after 3 s without an
  // ack. The timeout is the feature under test, so it stays a real bound, but
  // wide: an ASan-built server on a loaded 2-core machine may take far more
  // than a few hundred ms to answer, and that must not count as a dead server.
  // A frozen server is still found well inside WAIT_MS.
  const options = { heartbeatIntervalMs: 200, heartbeatTimeoutMs: 3000 };
  const ann = track(await openUser({ server: server.wsUrl, user: 'ann', rooms: ['demo'], meta: ANN, options }));
  const ben = track(await openUser({ server: server.wsUrl, user: 'ben', rooms: ['demo'], meta: BEN, options }));
  await waitUntil(ann, 'sees Ben and got 3+ heartbeat acks', (s) => !!s.rooms.demo.members.ben && s.stats.heartbeatAcks >= 3);
  await waitUntil(ben, 'sees Ann and got 3+ heartbeat acks', (s) => !!s.rooms.demo.members.ann && s.stats.heartbeatAcks >= 3);
  let a = await snap(ann);
  check(a.stats.heartbeatTimeouts === 0 && sentFrames(ann, 'heartbeat').every((m) => m.roomId === 'demo'), 'heartbeats carry the roomId and are all acknowledged in time');

  server.proc.kill('SIGSTOP');
  console.log('    ..  flock-server frozen (SIGSTOP): TCP stays up, nothing answers');
  try {
    for (const u of [ann, ben]) {
      await waitUntil(u, 'declared the server dead after missing acks and is reconnecting', (s) =>
        s.stats.heartbeatTimeouts === 1 && s.stats.closes[0]?.cause === 'heartbeat-timeout' && s.stats.connects === 2);
    }
  } finally {
    server.proc.kill('SIGCONT');
  }
  console.log('    ..  flock-server resumed (SIGCONT)');
  for (const u of [ann, ben]) await waitUntil(u, 're-joined on the new socket', (s) => s.state === 'open' && s.stats.opens === 2 && s.rooms.demo.joined);
  await waitUntil(ann, 'sees Ben', (s) => !!s.rooms.demo.members.ben);
  await waitUntil(ben, 'sees Ann', (s) => !!s.rooms.demo.members.ann);
  await act(ben, (c) => c.moveCursor('demo', 0.25, 0.75));
  await waitUntil(ann, "Ben's cursor flows (0.25, 0.75)", (s) => s.rooms.demo.members.ben?.cursor?.x === 0.25);
  await waitUntil(ann, 'acks flow again on the new socket', (s, n) => s.stats.heartbeatAcks >= n + 2, a.stats.heartbeatAcks);
  await noAnomalies(ann, ben);
}

/**
 * (g) open mode (no FLOCK_API_KEYS) must accept any client, including one
 * whose app puts `?apiKey=` in the URL anyway (the reference server in open
 * mode never looks at keys).
 */
async function scenarioG({ server, track }) {
  const ann = track(await openUser({ server: `${server.wsUrl}?apiKey=some-app-key`, user: 'ann', rooms: ['demo'], meta: ANN }));
  const ben = track(await openUser({ server: server.wsUrl, user: 'ben', rooms: ['demo'], meta: BEN }));
  await waitUntil(ben, 'joined "demo" without a key', (s) => s.rooms.demo.joined);
  const status = await upgradeStatus(server.port, '/?apiKey=some-app-key');
  check(status === 101, `open mode: a raw upgrade carrying ?apiKey= is answered HTTP ${status} (101 expected)`);
  await waitUntil(ann, 'joined "demo" with ?apiKey= in the URL and sees Ben', (s) => s.rooms.demo.joined && !!s.rooms.demo.members.ben, null, 3000);
}

/**
 * (h) the admin dashboard: sign in, two rooms with their members, close one;
 * its members get the reference's error and lose their socket, the room
 * leaves the dashboard, and the clients reconnect and re-join by themselves.
 * With E2E_SCREENSHOTS=<dir>, saves admin-login.png and admin-dashboard.png.
 */
async function scenarioH({ server, track }) {
  // A slower first reconnect than the default 1 s, so the dashboard can be
  // seen without the closed room before its members come back.
  const slow = { backoffBaseMs: 3000 };
  const ann = track(await openUser({ server: server.wsUrl, user: 'ann', rooms: ['design-review'], meta: ANN, options: slow }));
  const ben = track(await openUser({ server: server.wsUrl, user: 'ben', rooms: ['design-review'], meta: BEN, options: slow }));
  const cara = track(await openUser({ server: server.wsUrl, user: 'cara', rooms: ['standup'], meta: CARA }));
  await waitUntil(ann, 'sees Ben in "design-review"', (s) => !!s.rooms['design-review'].members.ben);
  await waitUntil(cara, 'joined "standup"', (s) => s.rooms.standup.joined);

  const context = await browser.newContext({ viewport: { width: 1100, height: 640 } });
  const admin = { user: 'admin', context, page: await context.newPage(), console: [] };
  track(admin);
  admin.page.on('console', (m) => admin.console.push(`${m.type()}: ${m.text()}`));
  const origin = `http://${HOST}:${server.port}`;
  const login = await admin.page.goto(`${origin}/admin`);
  check(login.status() === 200 && (await admin.page.locator('input[name="password"]').count()) === 1, 'GET /admin shows the sign-in form');
  check(login.headers()['x-frame-options'] === 'DENY', 'the page forbids framing (X-Frame-Options: DENY)');
  if (process.env.E2E_SCREENSHOTS) await admin.page.screenshot({ path: path.join(process.env.E2E_SCREENSHOTS, 'admin-login.png') });

  await admin.page.fill('input[name="password"]', 'wrong');
  await Promise.all([admin.page.waitForLoadState(), admin.page.click('button[type="submit"]')]);
  check((await admin.page.locator('#message').textContent()) === 'Wrong password.', 'a wrong password is refused with a message');
  await admin.page.fill('input[name="password"]', server.env.FLOCK_ADMIN_PASSWORD);
  await Promise.all([admin.page.waitForSelector('#active-rooms'), admin.page.click('button[type="submit"]')]);
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === 'flock_admin');
  check(!!session && session.httpOnly && session.sameSite === 'Strict', 'signed in: an HttpOnly, SameSite=Strict session cookie');

  const rooms = async () => admin.page.$$eval('tr.room', (rows) => rows.map((r) => ({
    room: r.dataset.room,
    members: [...r.querySelectorAll('li.member')].map((li) => ({
      name: li.querySelector('.name').textContent,
      user: li.querySelector('.user').textContent,
      colour: li.querySelector('rect')?.getAttribute('fill') ?? null,
    })),
  })));
  checkEqual(await rooms(), [
    { room: 'design-review', members: [{ name: 'Ann', user: 'ann', colour: ANN.color }, { name: 'Ben', user: 'ben', colour: BEN.color }] },
    { room: 'standup', members: [{ name: 'Cara', user: 'cara', colour: CARA.color }] },
  ], 'the dashboard lists both rooms with their members, names and colours');
  checkEqual(
    [await admin.page.textContent('#active-rooms'), await admin.page.textContent('#connected-users'), await admin.page.textContent('#average-per-room')],
    ['2', '3', '1.5'],
    'active rooms 2, connected users 3, average 1.5 per room',
  );
  if (process.env.E2E_SCREENSHOTS) await admin.page.screenshot({ path: path.join(process.env.E2E_SCREENSHOTS, 'admin-dashboard.png'), fullPage: true });

  const closesBefore = (await snap(ann)).stats.closes.length;
  await Promise.all([
    admin.page.waitForLoadState(),
    admin.page.click('tr.room[data-room="design-review"] button.close-room'),
  ]);
  await admin.page.waitForSelector('#active-rooms');
  checkEqual((await rooms()).map((r) => r.room), ['standup'], 'after close-room, the dashboard lists only "standup"');
  const expected = { type: 'error', code: 'INTERNAL_ERROR', message: 'room closed by admin' };
  for (const u of [ann, ben]) {
    await waitUntil(u, 'its socket was closed by the server', (s, n) => s.stats.closes.length > n, closesBefore);
    checkEqual(receivedFrames(u, 'error'), [expected], `${u.user} received exactly the reference's error before the close`);
  }
  check(receivedFrames(cara, 'error').length === 0 && (await snap(cara)).stats.closes.length === 0, 'Cara, in "standup", was left alone');

  // The reference client reconnects and joins again; so does the room.
  await waitUntil(ann, 'reconnected and re-joined "design-review" with Ben', (s) => s.rooms['design-review'].joined && !!s.rooms['design-review'].members.ben);
  await admin.page.reload();
  checkEqual((await rooms()).map((r) => r.room), ['design-review', 'standup'], 'after the re-join, the dashboard lists the room again');
  check(!admin.console.some((l) => /Content Security Policy/i.test(l)), 'no Content-Security-Policy violation on the admin pages');
}

const SCENARIOS = [
  { id: 'a', title: 'one room: snapshot, cursor, presence, cursor leave, leave', run: scenarioA },
  { id: 'b', title: 'several rooms on one socket, routed by roomId', run: scenarioB },
  { id: 'c', title: 'page refresh re-joins with the same userId', run: scenarioC },
  { id: 'd', title: 'server restart: reconnect with backoff and re-join', run: scenarioD },
  { id: 'e', title: 'API keys in the WebSocket URL', run: scenarioE, env: { FLOCK_API_KEYS: 'key-one,key-two' } },
  { id: 'f', title: 'frozen server detected by missing heartbeat acks', run: scenarioF },
  { id: 'g', title: 'open mode ignores a ?apiKey= in the URL', run: scenarioG },
  { id: 'h', title: 'admin dashboard: sign in, two rooms, close one', run: scenarioH, env: { FLOCK_ADMIN_PASSWORD: 'e2e-admin-password', FLOCK_THREADS: '2' } },
];

// ---------------------------------------------------------------------------
// runner

async function main() {
  const only = process.argv.slice(2);
  const selected = SCENARIOS.filter((s) => only.length === 0 || only.includes(s.id));
  if (selected.length === 0) throw new Error(`no scenario matches ${only.join(' ')}`);

  const t0 = performance.now();
  const statics = await startStaticServer();
  pageOrigin = statics.origin;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Playwright gives every launch a fresh temporary profile (user-data-dir).
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  console.log(`flock browser e2e: server ${SERVER_BIN}`);
  console.log(`                   browser Chromium ${browser.version()}, pages from ${pageOrigin}`);

  const results = [];
  for (const sc of selected) {
    const port = await freePort();
    const server = new FlockServer(`flock:${sc.id}`, port, sc.env);
    const users = [];
    const track = (u) => (users.push(u), u);
    const started = performance.now();
    console.log(`\n(${sc.id}) ${sc.title}  [flock-server on :${port}${sc.env ? ' ' + JSON.stringify(sc.env) : ''}]`);
    let error = null;
    try {
      await server.start();
      await sc.run({ server, track });
    } catch (e) {
      error = e;
    }
    const secs = ((performance.now() - started) / 1000).toFixed(1);
    if (error) {
      console.log(`FAIL (${sc.id}) ${sc.title} — ${secs} s`);
      console.log(`    ${error.message}`);
      if (error.details) console.log(`    details: ${JSON.stringify(error.details, null, 1).replace(/\n\s*/g, ' ').slice(0, 4000)}`);
      if (!(error instanceof CheckError)) console.log(error.stack);
      for (const u of users) {
        if (u.console.length) console.log(`    ${u.user} console: ${u.console.slice(-10).join(' | ')}`);
      }
      console.log(`    flock-server log (last lines):\n      ${server.tail().join('\n      ')}`);
    } else {
      console.log(`PASS (${sc.id}) ${sc.title} — ${secs} s`);
    }
    results.push({ id: sc.id, ok: !error });
    for (const u of users) await u.context.close().catch(() => {});
    server.kill();
    await server.exited?.catch(() => {});
  }

  await browser.close();
  statics.srv.close();
  const failed = results.filter((r) => !r.ok);
  const total = ((performance.now() - t0) / 1000).toFixed(1);
  console.log(
    `\n${results.length - failed.length}/${results.length} scenarios passed in ${total} s` +
      (failed.length ? ` — FAILED: ${failed.map((r) => r.id).join(', ')}` : ''),
  );
  return failed.length ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error('e2e: fatal:', e);
    process.exit(2);
  },
);
