// Test harness: a real flock-server process per test file (no server mocks),
// started on a free loopback port, and a few awaiting helpers.
//
// FLOCK_SERVER names the binary (default: the CMake build's
// build/release/examples/flock-server, then build/h11 ..., see below).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { once } from 'node:events';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FlockClient } from '../flock.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../../..');
const HOST = '127.0.0.1';
export const WAIT_MS = 10_000;

function serverBinary() {
  if (process.env.FLOCK_SERVER) return process.env.FLOCK_SERVER;
  for (const dir of ['build/release', 'build/asan', 'build/meson']) {
    const p = path.join(ROOT, dir, 'examples/flock-server');
    if (existsSync(p)) return p;
  }
  throw new Error('no flock-server binary: build one or set FLOCK_SERVER');
}

/** The WebSocket constructor: Node's own (22+), else the `ws` package. */
export const WebSocketImpl = globalThis.WebSocket ?? (await import('ws')).default;

export async function freePort() {
  const srv = net.createServer();
  srv.listen(0, HOST);
  await once(srv, 'listening');
  const { port } = srv.address();
  srv.close();
  await once(srv, 'close');
  return port;
}

const live = new Set();
process.on('exit', () => {
  for (const s of live) s.kill('SIGKILL');
});

/** A flock-server process; `start()` resolves once it listens. */
export class Server {
  constructor(env = {}) {
    this.env = env;
    this.port = 0;
    this.proc = null;
    this.log = [];
  }

  get url() {
    return `ws://${HOST}:${this.port}/`;
  }

  async start() {
    if (!this.port) this.port = await freePort();
    const proc = spawn(serverBinary(), [], {
      env: { ...process.env, FLOCK_HOST: HOST, FLOCK_PORT: String(this.port), FLOCK_THREADS: '1', ...this.env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    this.proc = proc;
    live.add(proc);
    this.exited = once(proc, 'exit');
    this.exited.then(() => live.delete(proc));
    let buf = '';
    proc.stderr.setEncoding('utf8');
    await within(WAIT_MS, 'flock-server start-up', new Promise((resolve, reject) => {
      proc.stderr.on('data', (chunk) => {
        buf += chunk;
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          if (this.log.length > 5000) this.log.splice(0, 1000);
          this.log.push(line);
          if (line.includes('msg="flock-server started"')) resolve();
        }
      });
      proc.on('exit', (code, signal) => reject(new Error(`flock-server exited at start (${code ?? signal}): ${this.log.join('\n')}`)));
    }));
    return this;
  }

  kill(signal = 'SIGKILL') {
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill(signal);
  }

  async stop(signal = 'SIGKILL') {
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill('SIGCONT');
      this.proc.kill(signal);
      await this.exited;
    }
    // A sanitizer build reports what it found on stderr: that fails the test.
    const report = this.log.find((l) => /ERROR: \w+Sanitizer|runtime error:/.test(l));
    if (report) throw new Error(`flock-server: ${report}\n${this.log.slice(-30).join('\n')}`);
  }
}

/** Resolves with `promise`, or rejects after `ms` naming `what`. */
export async function within(ms, what, promise) {
  let timer;
  try {
    return await Promise.race([
      promise,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Resolves with the first `type` event of `client` for which `pred(event)`
 * holds, or at once when `ready()` already holds (state checked first, so an
 * event that came before the call is not missed).
 */
export function next(client, type, pred = () => true, what = type, ready = null) {
  let off;
  const p = new Promise((resolve) => {
    if (ready && ready()) return resolve(null);
    off = client.on(type, (e) => {
      if (pred(e)) resolve(e);
    });
  });
  return within(WAIT_MS, what, p).finally(() => off && off());
}

/** A client with the WebSocket of this Node; close it with `client.close()`. */
export function makeClient(server, options = {}) {
  return new FlockClient({ url: server.url, WebSocket: WebSocketImpl, ...options });
}

/** Joins and waits for the join:ack. */
export async function joined(client, roomId, userId, metadata = {}) {
  const room = client.join(roomId, { userId, metadata });
  await next(client, 'joined', (e) => e.roomId === roomId, `${userId} joined ${roomId}`, () => room.joined);
  return room;
}

/** Waits until `room` lists `userId` (optionally with `pred(member)`). */
export function member(client, room, userId, pred = () => true) {
  const ok = () => room.members.has(userId) && pred(room.members.get(userId));
  return next(client, 'members', () => ok(), `${room.userId} sees ${userId} in ${room.roomId}`, ok)
    .then(() => room.members.get(userId));
}

/** Waits until `room` no longer lists `userId`. */
export function gone(client, room, userId) {
  const ok = () => !room.members.has(userId);
  return next(client, 'members', ok, `${userId} gone from ${room.userId}'s ${room.roomId}`, ok);
}

/** Waits until the cursor of `userId` in `room` satisfies `pred(cursor)`. */
export function cursor(client, room, userId, pred) {
  const ok = () => pred(room.members.get(userId)?.cursor ?? null);
  return next(client, 'cursor', ok, `${room.userId} sees ${userId}'s cursor`, ok);
}
