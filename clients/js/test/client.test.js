// clients/js/flock.js against a real flock-server (FLOCK_SERVER).
//   cd clients/js && npm ci && npm test
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { BinarySession, FlockClient, backoffDelay, encodeClient } from '../flock.js';
import { Server, WebSocketImpl, cursor, gone, joined, makeClient, member, next } from './harness.js';

const ANN = { name: 'Ann', color: '#e4572e' };
const BEN = { name: 'Ben', color: '#17bebb' };

for (const protocol of ['json', 'binary']) {
  describe(`${protocol}: one server`, () => {
    const server = new Server();
    const clients = [];
    const client = (o = {}) => {
      const c = makeClient(server, { protocol, ...o });
      clients.push(c);
      return c;
    };
    before(() => server.start());
    after(async () => {
      for (const c of clients) c.close();
      await server.stop('SIGTERM');
    });

    test('speaks the wire it asked for', async () => {
      const a = client();
      const wires = [];
      a.on('status', (e) => e.status === 'open' && wires.push(e.wire));
      await joined(a, 'wire', 'ann');
      assert.deepEqual(wires, [protocol]);
      assert.equal(a.wire, protocol);
    });

    test('members: snapshot, joined, left; never ourselves', async () => {
      const a = client();
      const b = client();
      const ra = await joined(a, 'm', 'ann', ANN);
      assert.equal(ra.members.size, 0);
      const seen = next(a, 'member:joined', (e) => e.member.userId === 'ben');
      const rb = await joined(b, 'm', 'ben', BEN);
      assert.deepEqual(rb.list(), [{ userId: 'ann', metadata: ANN, cursor: null }], "Ben's join:ack lists Ann");
      const ev = await seen;
      assert.deepEqual(ev.member, { userId: 'ben', metadata: BEN, cursor: null });
      assert.deepEqual([...ra.members.keys()], ['ben']);
      const left = next(a, 'member:left', (e) => e.member.userId === 'ben');
      rb.leave();
      await left;
      assert.equal(ra.members.size, 0);
      assert.equal(b.status, 'open', 'leaving a room keeps the socket');
    });

    test('several rooms on one socket, routed by roomId', async () => {
      const a = client();
      const b = client();
      const c = client();
      const [r1, r2] = await Promise.all([joined(a, 'r1', 'ann', ANN), joined(a, 'r2', 'ann', ANN)]);
      const b2 = await joined(b, 'r2', 'ben', BEN);
      const c1 = await joined(c, 'r1', 'cara', {});
      await member(a, r1, 'cara');
      await member(a, r2, 'ben');
      assert.deepEqual([...r1.members.keys()], ['cara']);
      assert.deepEqual([...r2.members.keys()], ['ben']);
      r2.moveCursor(0.25, 0.5);
      r1.moveCursor(0.75, 0.5);
      await cursor(b, b2, 'ann', (p) => p?.x === 0.25);
      await cursor(c, c1, 'ann', (p) => p?.x === 0.75);
      assert.equal(b2.members.get('ann').cursor.x, 0.25, 'r1 traffic never reached r2');
    });

    test('cursors: exact position, throttled burst, trailing update, leave', async () => {
      const a = client({ cursorThrottleMs: 50 });
      const b = client();
      const ra = await joined(a, 'c', 'ann', ANN);
      const rb = await joined(b, 'c', 'ben', BEN);
      await member(a, ra, 'ben');
      const moves = [];
      const origSend = a._send.bind(a);
      a._send = (m) => (m.type === 'cursor:move' && moves.push(m.position), origSend(m));
      const received = [];
      b.on('cursor', (e) => e.userId === 'ann' && e.position && received.push(e.position));
      const x = 0.3141592653589793;
      ra.moveCursor(x, 0.2718281828459045);
      await cursor(b, rb, 'ann', (p) => p?.x === x);
      assert.equal(rb.members.get('ann').cursor.y, 0.2718281828459045, 'relayed as given');
      assert.ok(Math.abs(rb.members.get('ann').cursor.timestamp - Date.now()) < 60_000, 'epoch-ms timestamp');
      for (let i = 1; i <= 40; i++) ra.moveCursor(i / 40, 0.125);
      await cursor(b, rb, 'ann', (p) => p?.x === 1 && p?.y === 0.125);
      assert.ok(moves.length >= 2 && moves.length <= 3, `40 moves went out as ${moves.length} messages (leading + trailing)`);
      assert.deepEqual(moves.at(-1), { x: 1, y: 0.125 }, 'the trailing update carries the last position');
      assert.deepEqual(received.at(-1), { x: 1, y: 0.125 });
      const removed = next(b, 'cursor', (e) => e.userId === 'ann' && e.position === null);
      ra.leaveCursor();
      await removed;
      assert.equal(rb.members.get('ann').cursor, null);
    });

    test('presence: patches merge; a late joiner gets the merged object and last cursor', async () => {
      const a = client();
      const b = client();
      const ra = await joined(a, 'p', 'ann', ANN);
      const rb = await joined(b, 'p', 'ben', BEN);
      await member(a, ra, 'ben');
      const ev = next(a, 'presence', (e) => e.userId === 'ben');
      rb.updatePresence({ status: 'idle' });
      const e = await ev;
      assert.deepEqual(e.patch, { status: 'idle' });
      assert.deepEqual(e.metadata, { ...BEN, status: 'idle' });
      assert.deepEqual(ra.members.get('ben').metadata, { ...BEN, status: 'idle' });
      assert.deepEqual(rb.metadata, { ...BEN, status: 'idle' }, 'our own metadata is merged too');
      rb.moveCursor(0.5, 0.5);
      await cursor(a, ra, 'ben', (p) => p?.x === 0.5);
      const c = client();
      const rc = await joined(c, 'p', 'cara', {});
      assert.deepEqual(rc.members.get('ben'), { userId: 'ben', metadata: { ...BEN, status: 'idle' }, cursor: { x: 0.5, y: 0.5 } });
    });

    test('errors from the server are events, and the client carries on', async () => {
      const a = client();
      const ra = await joined(a, 'e', 'ann', ANN);
      const err = next(a, 'error', (e) => e.code === 'INVALID_MESSAGE');
      a._send({ type: 'presence:update', roomId: 'e', metadata: 'not an object' });
      const e = await err;
      assert.equal(e.roomId, 'e');
      assert.equal(a.status, 'open');
      assert.ok(ra.joined);
    });
  });
}

describe('room full: error event, then reconnect with backoff', () => {
  const server = new Server({ FLOCK_MAX_ROOM_SIZE: '1' });
  before(() => server.start());
  after(() => server.stop('SIGTERM'));

  test('ROOM_FULL reaches the app and the client retries with growing, jittered delays', async () => {
    const a = makeClient(server);
    const b = makeClient(server, { backoffBaseMs: 20, backoffMaxMs: 80, jitter: 0.5 });
    try {
      await joined(a, 'small', 'ann');
      const full = next(b, 'error', (e) => e.code === 'ROOM_FULL');
      b.join('small', { userId: 'ben' });
      assert.equal((await full).code, 'ROOM_FULL');
      const delays = [];
      await next(b, 'status', (e) => e.status === 'reconnecting' && delays.push(e.delayMs) >= 4, 'four reconnects');
      assert.ok(delays[0] >= 10 && delays[0] <= 20, `first delay ${delays[0]} in [10, 20]`);
      assert.ok(delays[3] >= 40 && delays[3] <= 80, `fourth delay ${delays[3]} capped in [40, 80]`);
      // Room again: the next retry gets in.
      a.close();
      await next(b, 'joined', (e) => e.roomId === 'small');
    } finally {
      a.close();
      b.close();
    }
  });
});

describe('liveness and reconnect', () => {
  test('a frozen server is detected from missing acks; the rooms come back from join:ack', async () => {
    const server = await new Server().start();
    const opts = { heartbeatIntervalMs: 100, heartbeatTimeoutMs: 300, backoffBaseMs: 50, backoffMaxMs: 200 };
    const a = makeClient(server, opts);
    const b = makeClient(server, opts);
    try {
      const ra = await joined(a, 'hb', 'ann', ANN);
      const rb = await joined(b, 'hb', 'ben', BEN);
      await member(a, ra, 'ben');
      let acks = 0;
      a.on('message', (m) => m.type === 'heartbeat:ack' && acks++);
      await next(a, 'message', () => acks >= 3, 'three heartbeat acks');
      server.proc.kill('SIGSTOP');
      const timeout = next(a, 'error', (e) => e.code === 'HEARTBEAT_TIMEOUT');
      await next(a, 'status', (e) => e.status === 'reconnecting', 'ann reconnecting');
      await timeout;
      server.proc.kill('SIGCONT');
      await next(a, 'joined', (e) => e.roomId === 'hb', 'ann re-joined');
      await member(a, ra, 'ben');
      await member(b, rb, 'ann');
      rb.moveCursor(0.5, 0.25);
      await cursor(a, ra, 'ben', (p) => p?.y === 0.25);
    } finally {
      a.close();
      b.close();
      await server.stop();
    }
  });

  test('server killed and restarted: reconnect, re-join every room, views rebuilt from the snapshot', async () => {
    const server = await new Server().start();
    const opts = { backoffBaseMs: 50, backoffMaxMs: 400 };
    const a = makeClient(server, opts);
    const b = makeClient(server, opts);
    try {
      const [a1, a2] = await Promise.all([joined(a, 'one', 'ann', ANN), joined(a, 'two', 'ann', ANN)]);
      const b1 = await joined(b, 'one', 'ben', BEN);
      const b2 = await joined(b, 'two', 'ben', BEN);
      await member(a, a1, 'ben');
      await member(a, a2, 'ben');
      b1.moveCursor(0.5, 0.5);
      await cursor(a, a1, 'ben', (p) => p?.x === 0.5);
      b2.updatePresence({ status: 'idle' });
      await member(a, a2, 'ben', (m) => m.metadata.status === 'idle');

      const down = Promise.all([a, b].map((c) => next(c, 'status', (e) => e.status === 'reconnecting')));
      await server.stop('SIGKILL');
      await down;
      assert.equal(a1.joined, false);
      await server.start(); // same port
      await Promise.all([
        next(a, 'joined', () => a1.joined && a2.joined, 'ann back in both rooms', () => a1.joined && a2.joined),
        next(b, 'joined', () => b1.joined && b2.joined, 'ben back in both rooms', () => b1.joined && b2.joined),
      ]);
      const ben = await member(a, a2, 'ben');
      assert.deepEqual(ben.metadata, { ...BEN, status: 'idle' }, 'the re-join carried the merged metadata');
      await member(a, a1, 'ben', (m) => m.cursor?.x === 0.5);
      assert.equal(a.attempt, 0, 'backoff reset by the join:ack');
    } finally {
      a.close();
      b.close();
      await server.stop();
    }
  });
});

describe('never throws on what a server sends', () => {
  const junk = ['', 'not json', 'null', '[]', '42', '{"type":7}', '{"type":"nope","roomId":"x"}', '{"type":"join:ack","roomId":"x","users":7}',
    '{"type":"join:ack","roomId":"x","users":[null,1,{"userId":5}]}', '{"type":"cursor:updated","roomId":"x","userId":"u","position":null}',
    '{"type":"presence:updated","roomId":"x","userId":"u","metadata":[]}', '{"type":"error"}', '{"type":"user:left","roomId":{}}'];

  test('JSON: unknown types and mistyped fields are ignored', () => {
    const c = new FlockClient({ url: 'ws://127.0.0.1:9/', WebSocket: class {} });
    const room = c.join('x', { userId: 'me' });
    for (const j of junk) assert.doesNotThrow(() => c._receive(j), j);
    c._receive('{"type":"join:ack","roomId":"x","users":[{"userId":"u","metadata":{}}]}');
    assert.deepEqual([...room.members.keys()], ['u']);
    for (const j of junk.filter((j) => !j.includes('join:ack'))) c._receive(j);
    assert.deepEqual([...room.members.keys()], ['u'], 'junk changed nothing');
  });

  test('binary: unknown tags, cut frames and unknown handles are ignored', () => {
    const c = new FlockClient({ url: 'ws://127.0.0.1:9/', WebSocket: class {} });
    c._session = new BinarySession();
    const frames = [[], [0x7b], [0xff], [0x94, 1, 1], [0x81], [0x81, 1, 0x78, 1, 0x7f], [0x87, 0], [0x88, 9], [0x96, 0, 0]];
    for (const f of frames) assert.doesNotThrow(() => c._receive(new Uint8Array(f).buffer), String(f));
    assert.doesNotThrow(() => c._receive({ weird: true }));
  });

  test('binary: encodes client messages as docs/binary-codec.md spells them', () => {
    assert.deepEqual([...encodeClient({ type: 'heartbeat', roomId: 'ab' })], [0x02, 2, 0x61, 0x62]);
    const move = encodeClient({ type: 'cursor:move', roomId: 'r', position: { x: 0.5, y: 0.25 } });
    assert.deepEqual([...move], [0x03, 1, 0x72, 0, 0, 0, 0, 0, 0, 0xe0, 0x3f, 0, 0, 0, 0, 0, 0, 0xd0, 0x3f]);
    const s = new BinarySession();
    // the 25-byte example of the doc, after a join:ack that gave the handles
    s.decode(new Uint8Array([0x81, 1, 0x72, 1, 1, 1, 0x75, 5, 2, 0x7b, 0x7d, 0]));
    const m = s.decode(new Uint8Array([0x94, 1, 5, 0, 0, 0, 0, 0, 0, 0xe0, 0x3f, 0, 0, 0, 0, 0, 0, 0xd0, 0x3f, 0xf6, 0xa1, 0xab, 0xfe, 0xf9, 0x62]));
    assert.deepEqual(m, { type: 'cursor:updated', roomId: 'r', userId: 'u', position: { x: 0.5, y: 0.25 }, timestamp: 1700000000123 });
  });

  test('backoff: exponential, capped, jittered down by at most the jitter fraction', () => {
    const o = { backoffBaseMs: 1000, backoffMaxMs: 30000, jitter: 0.5 };
    assert.deepEqual([0, 1, 2, 5, 40].map((n) => backoffDelay(n, o, () => 0)), [1000, 2000, 4000, 30000, 30000]);
    assert.deepEqual([0, 1, 2].map((n) => backoffDelay(n, o, () => 0.999999)), [500, 1000, 2000]);
    assert.equal(backoffDelay(3, { ...o, jitter: 0 }, () => 0.7), 8000);
  });

  test('uses globalThis.WebSocket when none is given', () => {
    const had = globalThis.WebSocket;
    globalThis.WebSocket = WebSocketImpl;
    try {
      assert.equal(new FlockClient({ url: 'ws://x/' }).WebSocket, WebSocketImpl);
    } finally {
      globalThis.WebSocket = had;
    }
  });
});
