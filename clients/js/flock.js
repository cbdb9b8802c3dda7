// flock.js: a dependency-free browser (and Node) client for the Flock
// protocol (docs/protocol.md), as one ES module with no build step.
//
//   import { FlockClient } from './flock.js';
//   const client = new FlockClient({ url: 'ws://localhost:8787/' });
//   const room = client.join('lobby', { userId: 'ann', metadata: { name: 'Ann' } });
//   client.on('cursor', (e) => console.log(e.roomId, e.userId, e.position));
//   room.moveCursor(0.5, 0.25);
//
// One WebSocket carries every room. Cursor moves are throttled (leading and
// trailing edge), presence patches are merged, a heartbeat per room proves the
// server alive, and a lost or silent socket is reopened with jittered
// exponential backoff; every room is then re-joined and its view rebuilt from
// the `join:ack` snapshot alone. JSON by default; `protocol: 'binary'` asks for
// `flock.binary.v2` (docs/binary-codec.md). Nothing a server sends can make it
// throw: unknown or malformed messages are ignored.
//
// Types: flock.d.ts beside this file. API: docs/clients.md.

/** @typedef {{x: number, y: number}} Position */
/** @typedef {{userId: string, metadata: Record<string, unknown>, cursor: (Position & {timestamp?: number}) | null}} Member */
/** @typedef {'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed'} Status */

export const BINARY_SUBPROTOCOL = 'flock.binary.v2';

/** The defaults of every tunable option (the reference client's timings). */
export const DEFAULTS = Object.freeze({
  protocol: /** @type {'json' | 'binary'} */ ('json'),
  heartbeatIntervalMs: 10_000, // one heartbeat per joined room this often
  heartbeatTimeoutMs: 20_000, // no heartbeat:ack this long after one went out: the server is dead
  backoffBaseMs: 1_000, // reconnect after ~1 s, 2 s, 4 s ...
  backoffMaxMs: 30_000, // ... capped here
  jitter: 0.5, // each delay is scaled by a random factor in [1 - jitter, 1]
  cursorThrottleMs: 50, // at most one cursor:move per room this often (~20/s)
  reconnect: true, // reopen a lost socket (false: status 'closed' instead)
});

/**
 * The delay before reconnect attempt `attempt` (0 for the first):
 * `min(backoffMaxMs, backoffBaseMs * 2^attempt)`, scaled by a random factor in
 * `[1 - jitter, 1]`, so clients dropped together do not come back together.
 * @param {number} attempt
 * @param {{backoffBaseMs: number, backoffMaxMs: number, jitter: number}} opts
 * @param {() => number} [random] returns [0, 1)
 * @returns {number} milliseconds
 */
export function backoffDelay(attempt, opts, random = Math.random) {
  const full = Math.min(opts.backoffMaxMs, opts.backoffBaseMs * 2 ** Math.min(attempt, 30));
  const jitter = Math.min(Math.max(opts.jitter, 0), 1);
  return Math.round(full * (1 - jitter * random()));
}

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const isFiniteNumber = (v) => typeof v === 'number' && Number.isFinite(v);

/** One room this client is in, as it sees it. Made by `FlockClient.join`. */
export class FlockRoom {
  /** @param {FlockClient} client @param {string} roomId @param {string} userId @param {Record<string, unknown>} metadata */
  constructor(client, roomId, userId, metadata) {
    this.client = client;
    this.roomId = roomId;
    this.userId = userId;
    /** Our own metadata, merged with every `updatePresence`; re-sent on re-join. */
    this.metadata = { ...metadata };
    /** Everyone else in the room: userId -> Member. @type {Map<string, Member>} */
    this.members = new Map();
    /** True once the `join:ack` of the current socket has arrived. */
    this.joined = false;
    this.joinSent = false;
    this.left = false;
    this._cursorPending = null;
    this._cursorTimer = null;
    this._cursorLastSent = -Infinity;
    this._cursorShown = null; // the last position sent, re-sent after a re-join
  }

  /** Sends our pointer position (normalised 0..1 by the app), throttled; the last position always goes out. */
  moveCursor(x, y) {
    if (this.left || !isFiniteNumber(x) || !isFiniteNumber(y)) return;
    this._cursorPending = { x, y };
    if (!this.joinSent) return; // sent once the join is out (the server holds early moves briefly anyway)
    const wait = this._cursorLastSent + this.client.options.cursorThrottleMs - now();
    if (wait <= 0) this._flushCursor();
    else if (!this._cursorTimer) this._cursorTimer = setTimeout(() => this._flushCursor(), wait);
  }

  /** The pointer left the view: the others remove our cursor. */
  leaveCursor() {
    if (this.left) return;
    this._cancelCursor();
    this._cursorShown = null;
    this.client._send({ type: 'cursor:leave', roomId: this.roomId });
  }

  /** Merges `patch` into our metadata; the others get the patch (`presence` event). */
  updatePresence(patch) {
    if (this.left || !isObject(patch)) return;
    Object.assign(this.metadata, patch); // kept, so a re-join carries it
    if (this.joinSent) this.client._send({ type: 'presence:update', roomId: this.roomId, metadata: patch });
  }

  /** Leaves the room cleanly; the socket stays open for the other rooms. */
  leave() {
    this.client.leave(this.roomId);
  }

  /** Everyone else in the room, in join order. @returns {Member[]} */
  list() {
    return [...this.members.values()];
  }

  _flushCursor() {
    clearTimeout(this._cursorTimer);
    this._cursorTimer = null;
    if (!this._cursorPending || !this.joinSent) return;
    const position = this._cursorPending;
    this._cursorPending = null;
    this._cursorLastSent = now();
    this._cursorShown = position;
    this.client._send({ type: 'cursor:move', roomId: this.roomId, position });
  }

  _cancelCursor() {
    clearTimeout(this._cursorTimer);
    this._cursorTimer = null;
    this._cursorPending = null;
  }
}

/**
 * A connection to a flock server, carrying any number of rooms.
 * Events (`on(type, listener)`): `status`, `joined`, `members`, `member:joined`,
 * `member:left`, `cursor`, `presence`, `error`, `message` (see flock.d.ts).
 */
export class FlockClient {
  /**
   * @param {object} options
   * @param {string} options.url  ws:// or wss:// address of the server
   * @param {string} [options.apiKey]  sent in every `join`
   * @param {'json' | 'binary'} [options.protocol]  'binary' asks for flock.binary.v2; JSON if the server declines
   * @param {any} [options.WebSocket]  a WebSocket constructor (default globalThis.WebSocket; in Node < 22 pass the `ws` package's)
   * @param {number} [options.heartbeatIntervalMs]
   * @param {number} [options.heartbeatTimeoutMs]
   * @param {number} [options.backoffBaseMs]
   * @param {number} [options.backoffMaxMs]
   * @param {number} [options.jitter]
   * @param {number} [options.cursorThrottleMs]
   * @param {boolean} [options.reconnect]
   */
  constructor(options) {
    if (!options || typeof options.url !== 'string') throw new TypeError('FlockClient: options.url is required');
    this.url = options.url;
    this.apiKey = options.apiKey;
    /** @type {typeof DEFAULTS} */
    this.options = { ...DEFAULTS };
    for (const k of Object.keys(DEFAULTS)) if (options[k] !== undefined) this.options[k] = options[k];
    this.WebSocket = options.WebSocket || globalThis.WebSocket;
    if (typeof this.WebSocket !== 'function') throw new TypeError('FlockClient: no WebSocket; pass options.WebSocket');
    /** @type {Map<string, FlockRoom>} */
    this.rooms = new Map();
    /** @type {Status} */
    this.status = 'idle';
    /** 'json' or 'binary': what the current socket speaks. */
    this.wire = 'json';
    /** Consecutive failed attempts since the last healthy socket. */
    this.attempt = 0;
    this._ws = null;
    this._listeners = new Map();
    this._reconnectTimer = null;
    this._heartbeatTimer = null;
    this._ackDeadline = null;
    this._session = null; // binary handles, per socket
  }

  // ---- events ------------------------------------------------------------------

  /** Calls `listener(event)` for every event of `type`; returns a function that removes it. */
  on(type, listener) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(listener);
    return () => this.off(type, listener);
  }

  off(type, listener) {
    this._listeners.get(type)?.delete(listener);
  }

  _emit(type, event) {
    for (const fn of [...(this._listeners.get(type) ?? [])]) {
      try {
        fn(event);
      } catch (e) {
        // A throwing listener must not break the client; report it asynchronously.
        setTimeout(() => {
          throw e;
        });
      }
    }
  }

  _setStatus(status, extra = {}) {
    this.status = status;
    this._emit('status', { status, attempt: this.attempt, ...extra });
  }

  // ---- rooms ---------------------------------------------------------------------

  /**
   * Joins `roomId` (opening the socket if needed) and returns its view. Joining
   * a room again replaces the identity and metadata used for it.
   * @param {string} roomId
   * @param {{userId: string, metadata?: Record<string, unknown>}} who
   * @returns {FlockRoom}
   */
  join(roomId, who) {
    if (typeof roomId !== 'string' || !roomId) throw new TypeError('FlockClient.join: roomId must be a non-empty string');
    if (!who || typeof who.userId !== 'string' || !who.userId) throw new TypeError('FlockClient.join: userId must be a non-empty string');
    if (this.status === 'closed') this.status = 'idle';
    let room = this.rooms.get(roomId);
    if (room) {
      room.userId = who.userId;
      room.metadata = { ...(who.metadata ?? {}) };
    } else {
      room = new FlockRoom(this, roomId, who.userId, who.metadata ?? {});
      this.rooms.set(roomId, room);
    }
    if (this._isOpen()) this._sendJoin(room);
    else this.connect();
    return room;
  }

  /** Leaves one room; the others stay. */
  leave(roomId) {
    const room = this.rooms.get(roomId);
    if (!room) return;
    room._cancelCursor();
    if (room.joinSent) this._send({ type: 'leave', roomId });
    room.left = true;
    room.joined = room.joinSent = false;
    room.members.clear();
    this.rooms.delete(roomId);
    this._session?.forget(roomId);
  }

  /** @returns {FlockRoom | undefined} */
  room(roomId) {
    return this.rooms.get(roomId);
  }

  // ---- connection -----------------------------------------------------------------

  /** Opens the socket now (join() does it for you). */
  connect() {
    if (this.status === 'connecting' || this.status === 'open') return;
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    this._setStatus('connecting');
    let ws;
    try {
      ws = this.options.protocol === 'binary' ? new this.WebSocket(this.url, BINARY_SUBPROTOCOL) : new this.WebSocket(this.url);
    } catch (e) {
      this._emit('error', { code: 'CONNECT_FAILED', message: String(e && e.message ? e.message : e) });
      this._socketGone({ code: 1006, reason: 'cannot connect' });
      return;
    }
    this._ws = ws;
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => this._opened();
    ws.onmessage = (ev) => this._receive(ev.data);
    ws.onerror = () => {}; // a close event follows
    ws.onclose = (ev) => this._socketGone({ code: ev.code, reason: ev.reason });
  }

  /** Leaves every room and closes for good (no reconnect until the next join). */
  close() {
    for (const id of [...this.rooms.keys()]) this.leave(id);
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    this._stopHeartbeats();
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      detach(ws);
      try {
        ws.close(1000, 'client closed');
      } catch {
        /* already closing */
      }
    }
    this._setStatus('closed', { code: 1000, reason: 'client closed' });
  }

  _isOpen() {
    return this.status === 'open' && this._ws !== null && this._ws.readyState === 1;
  }

  _opened() {
    const ws = this._ws;
    this.wire = this.options.protocol === 'binary' && ws.protocol === BINARY_SUBPROTOCOL ? 'binary' : 'json';
    this._session = this.wire === 'binary' ? new BinarySession() : null;
    this._setStatus('open', { wire: this.wire });
    // Re-join every room; each view is rebuilt from its join:ack alone.
    for (const room of this.rooms.values()) this._sendJoin(room);
    this._startHeartbeats();
  }

  _socketGone({ code, reason }) {
    if (this._ws) detach(this._ws);
    this._ws = null;
    this._stopHeartbeats();
    this._session = null;
    for (const room of this.rooms.values()) {
      room.joined = room.joinSent = false;
      clearTimeout(room._cursorTimer); // the position waits for the re-join
      room._cursorTimer = null;
      room._cursorLastSent = -Infinity;
    }
    if (this.status === 'closed') return;
    // 4000: the same user joined on a newer socket (another tab); coming back
    // would evict that one in turn, so stop.
    if (!this.options.reconnect || code === 4000) {
      this._setStatus('closed', { code, reason });
      return;
    }
    const delayMs = backoffDelay(this.attempt, this.options);
    this.attempt++;
    this._setStatus('reconnecting', { code, reason, delayMs });
    this._reconnectTimer = setTimeout(() => {
      this._reconnectTimer = null;
      this.status = 'idle';
      this.connect();
    }, delayMs);
  }

  // ---- heartbeats -------------------------------------------------------------------

  _startHeartbeats() {
    this._stopHeartbeats();
    this._heartbeatTimer = setInterval(() => this._heartbeat(), this.options.heartbeatIntervalMs);
  }

  _stopHeartbeats() {
    clearInterval(this._heartbeatTimer);
    clearTimeout(this._ackDeadline);
    this._heartbeatTimer = this._ackDeadline = null;
  }

  _heartbeat() {
    let sent = false;
    for (const room of this.rooms.values()) if (room.joinSent) sent = this._send({ type: 'heartbeat', roomId: room.roomId }) || sent;
    // Only a heartbeat:ack proves the server alive; the deadline runs from the
    // first unanswered heartbeat and any ack clears it.
    if (sent && !this._ackDeadline) this._ackDeadline = setTimeout(() => this._stale(), this.options.heartbeatTimeoutMs);
  }

  _stale() {
    this._ackDeadline = null;
    const ws = this._ws;
    if (!ws) return;
    detach(ws);
    try {
      ws.close(4000, 'no heartbeat ack');
    } catch {
      /* already closing */
    }
    this._emit('error', { code: 'HEARTBEAT_TIMEOUT', message: `no heartbeat:ack for ${this.options.heartbeatTimeoutMs} ms` });
    this._socketGone({ code: 1006, reason: 'no heartbeat ack' });
  }

  // ---- sending ------------------------------------------------------------------------

  _send(msg) {
    if (!this._isOpen()) return false;
    try {
      this._ws.send(this.wire === 'binary' ? encodeClient(msg) : JSON.stringify(msg));
      return true;
    } catch {
      return false;
    }
  }

  _sendJoin(room) {
    const msg = { type: 'join', roomId: room.roomId, userId: room.userId, metadata: room.metadata };
    if (this.apiKey !== undefined) msg.apiKey = this.apiKey;
    room.joined = false;
    room.joinSent = this._send(msg);
    // Our cursor comes back with us: the newest position, pending or last sent.
    if (room.joinSent && !room._cursorPending && room._cursorShown) room._cursorPending = room._cursorShown;
    if (room.joinSent && room._cursorPending) room._flushCursor();
  }

  // ---- receiving ------------------------------------------------------------------------

  /** Handles one frame's data (string or ArrayBuffer). Never throws. */
  _receive(data) {
    let msg = null;
    try {
      if (typeof data === 'string') msg = JSON.parse(data);
      else if (this._session) msg = this._session.decode(toBytes(data));
    } catch {
      return;
    }
    if (!isObject(msg) || typeof msg.type !== 'string') return;
    try {
      this._apply(msg);
    } catch {
      /* a message with fields of unexpected types: ignored */
    }
  }

  _apply(msg) {
    this._emit('message', msg);
    if (msg.type === 'heartbeat:ack') {
      clearTimeout(this._ackDeadline);
      this._ackDeadline = null;
      return;
    }
    if (msg.type === 'error') {
      this._emit('error', { code: String(msg.code), message: String(msg.message ?? ''), roomId: typeof msg.roomId === 'string' ? msg.roomId : undefined });
      return;
    }
    const room = typeof msg.roomId === 'string' ? this.rooms.get(msg.roomId) : undefined;
    if (!room) return;
    const roomId = room.roomId;
    const members = room.members;
    switch (msg.type) {
      case 'join:ack': {
        members.clear();
        for (const u of Array.isArray(msg.users) ? msg.users : []) {
          if (!isObject(u) || typeof u.userId !== 'string' || u.userId === room.userId) continue;
          const c = u.cursor;
          members.set(u.userId, {
            userId: u.userId,
            metadata: isObject(u.metadata) ? u.metadata : {},
            cursor: isObject(c) && isFiniteNumber(c.x) && isFiniteNumber(c.y) ? { x: c.x, y: c.y } : null,
          });
        }
        room.joined = true;
        this.attempt = 0; // a healthy socket: the backoff starts over
        this._emit('joined', { roomId, members: room.list() });
        this._emit('members', { roomId, members: room.list() });
        break;
      }
      case 'user:joined': {
        if (typeof msg.userId !== 'string' || msg.userId === room.userId) return;
        const member = { userId: msg.userId, metadata: isObject(msg.metadata) ? msg.metadata : {}, cursor: null };
        members.set(msg.userId, member);
        this._emit('member:joined', { roomId, member });
        this._emit('members', { roomId, members: room.list() });
        break;
      }
      case 'user:left': {
        const member = members.get(msg.userId);
        if (!member) return;
        members.delete(msg.userId);
        if (member.cursor) this._emit('cursor', { roomId, userId: msg.userId, position: null });
        this._emit('member:left', { roomId, member });
        this._emit('members', { roomId, members: room.list() });
        break;
      }
      case 'cursor:updated': {
        const member = members.get(msg.userId);
        const p = msg.position;
        if (!member || !isObject(p) || !isFiniteNumber(p.x) || !isFiniteNumber(p.y)) return;
        member.cursor = { x: p.x, y: p.y, timestamp: isFiniteNumber(msg.timestamp) ? msg.timestamp : Date.now() };
        this._emit('cursor', { roomId, userId: msg.userId, position: { x: p.x, y: p.y }, timestamp: member.cursor.timestamp });
        break;
      }
      case 'cursor:removed': {
        const member = members.get(msg.userId);
        if (!member) return;
        member.cursor = null;
        this._emit('cursor', { roomId, userId: msg.userId, position: null });
        break;
      }
      case 'presence:updated': {
        const member = members.get(msg.userId);
        if (!member || !isObject(msg.metadata)) return;
        member.metadata = { ...member.metadata, ...msg.metadata }; // the broadcast carries the patch only
        this._emit('presence', { roomId, userId: msg.userId, metadata: member.metadata, patch: msg.metadata });
        this._emit('members', { roomId, members: room.list() });
        break;
      }
      default:
        return; // a type this client does not know
    }
  }
}

function detach(ws) {
  ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
}

function now() {
  return typeof performance !== 'undefined' ? performance.now() : Date.now();
}

function toBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (Array.isArray(data)) return toBytes(concat(data)); // the ws package's fragments
  throw new TypeError('unsupported frame data');
}

function concat(parts) {
  const total = parts.reduce((n, p) => n + p.byteLength, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(new Uint8Array(p.buffer ?? p, p.byteOffset ?? 0, p.byteLength), at);
    at += p.byteLength;
  }
  return out;
}

// ==== flock.binary.v2 (docs/binary-codec.md) ==================================

const TAG = { join: 0x01, heartbeat: 0x02, 'cursor:move': 0x03, 'cursor:leave': 0x04, 'presence:update': 0x05, leave: 0x06 };
const ERROR_CODES = ['INVALID_API_KEY', 'ROOM_FULL', 'RATE_LIMITED', 'INTERNAL_ERROR', 'INVALID_MESSAGE', 'TOO_MANY_ROOMS'];
const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder('utf-8', { fatal: true });

class Writer {
  constructor() {
    this.bytes = [];
  }
  u8(v) {
    this.bytes.push(v);
  }
  varint(v) {
    while (v >= 0x80) {
      this.bytes.push((v % 0x80) | 0x80);
      v = Math.floor(v / 0x80);
    }
    this.bytes.push(v);
  }
  raw(b) {
    this.varint(b.length);
    for (const x of b) this.bytes.push(x);
  }
  string(s) {
    this.raw(utf8.encode(s));
  }
  json(v) {
    this.string(JSON.stringify(v));
  }
  f64(v) {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, v, true);
    for (const x of b) this.bytes.push(x);
  }
  done() {
    return new Uint8Array(this.bytes);
  }
}

/** A client message as a flock.binary.v2 frame. */
export function encodeClient(msg) {
  const w = new Writer();
  const tag = TAG[msg.type];
  if (!tag) throw new TypeError(`no binary form for ${msg.type}`);
  w.u8(tag);
  w.string(msg.roomId);
  switch (msg.type) {
    case 'join':
      w.string(msg.userId);
      w.json(msg.metadata ?? {});
      if (typeof msg.apiKey === 'string') {
        w.u8(1);
        w.string(msg.apiKey);
      } else w.u8(0);
      break;
    case 'cursor:move':
      w.f64(msg.position.x);
      w.f64(msg.position.y);
      break;
    case 'presence:update':
      w.json(msg.metadata);
      break;
  }
  return w.done();
}

class Reader {
  constructor(bytes) {
    this.b = bytes;
    this.at = 0;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  need(n) {
    if (this.at + n > this.b.length) throw new RangeError('frame cut short');
  }
  u8() {
    this.need(1);
    return this.b[this.at++];
  }
  varint() {
    let v = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      const byte = this.u8();
      v += (byte & 0x7f) * scale;
      if (!(byte & 0x80)) return v;
      scale *= 0x80;
    }
    throw new RangeError('varint too long');
  }
  zigzag() {
    const n = this.varint();
    return n % 2 === 0 ? n / 2 : -(n + 1) / 2;
  }
  string() {
    const n = this.varint();
    this.need(n);
    const s = utf8Strict.decode(this.b.subarray(this.at, this.at + n));
    this.at += n;
    return s;
  }
  json() {
    const v = JSON.parse(this.string());
    if (!isObject(v)) throw new TypeError('metadata is not an object');
    return v;
  }
  f64() {
    this.need(8);
    const v = this.view.getFloat64(this.at, true);
    this.at += 8;
    return v;
  }
  flag() {
    const f = this.u8();
    if (f > 1) throw new RangeError('bad presence byte');
    return f === 1;
  }
  end() {
    if (this.at !== this.b.length) throw new RangeError('trailing bytes');
  }
}

/**
 * The handles of one binary connection: learns them from `join:ack` and
 * `user:joined`, forgets them on `user:left`, and turns every server frame
 * into the message a JSON client would have received (ids filled in). Throws
 * on a frame it cannot read; returns null for an unknown tag.
 */
export class BinarySession {
  constructor() {
    /** room handle -> {roomId, users: Map<user handle, userId>} */
    this.byHandle = new Map();
    /** roomId -> room handle */
    this.byName = new Map();
  }

  forget(roomId) {
    const h = this.byName.get(roomId);
    if (h !== undefined) this.byHandle.delete(h);
    this.byName.delete(roomId);
  }

  /** @param {Uint8Array} bytes */
  decode(bytes) {
    const r = new Reader(bytes);
    const tag = r.u8();
    let msg;
    if (tag >= 0x92 && tag <= 0x96) {
      const room = this.byHandle.get(r.varint());
      const userHandle = r.varint();
      if (!room) throw new RangeError('unknown room handle');
      if (tag === 0x92) {
        const userId = r.string();
        const metadata = r.json();
        r.end();
        for (const [h, id] of room.users) if (id === userId) room.users.delete(h);
        room.users.set(userHandle, userId);
        return { type: 'user:joined', roomId: room.roomId, userId, metadata };
      }
      const userId = room.users.get(userHandle);
      if (userId === undefined) throw new RangeError('unknown user handle');
      msg = this.body(tag - 0x10, r, room.roomId, userId);
      if (tag === 0x93) room.users.delete(userHandle);
      return msg;
    }
    switch (tag) {
      case 0x81: {
        const roomId = r.string();
        const roomHandle = r.varint();
        const count = r.varint();
        if (count * 6 > bytes.length) throw new RangeError('count beyond the frame');
        const users = [];
        const handles = new Map();
        for (let i = 0; i < count; i++) {
          const userId = r.string();
          const h = r.varint();
          const metadata = r.json();
          const cursor = r.flag() ? { x: r.f64(), y: r.f64() } : undefined;
          if (h !== 0) handles.set(h, userId);
          users.push(cursor ? { userId, metadata, cursor } : { userId, metadata });
        }
        r.end();
        this.forget(roomId);
        if (roomHandle !== 0) {
          this.byHandle.set(roomHandle, { roomId, users: handles });
          this.byName.set(roomId, roomHandle);
        }
        return { type: 'join:ack', roomId, users };
      }
      case 0x82:
      case 0x83:
      case 0x84:
      case 0x85:
      case 0x86: {
        const roomId = r.string();
        const userId = r.string();
        msg = this.body(tag, r, roomId, userId);
        // A user by name has no handle (any it had is retired).
        const room = this.byHandle.get(this.byName.get(roomId));
        if (room && (tag === 0x82 || tag === 0x83)) for (const [h, id] of room.users) if (id === userId) room.users.delete(h);
        return msg;
      }
      case 0x87:
        r.end();
        return { type: 'heartbeat:ack' };
      case 0x88: {
        const code = ERROR_CODES[r.u8()] ?? 'INTERNAL_ERROR';
        const message = r.string();
        const roomId = r.flag() ? r.string() : undefined;
        r.end();
        return roomId === undefined ? { type: 'error', code, message } : { type: 'error', code, message, roomId };
      }
      default:
        return null; // unknown tag: dropped, as an unknown JSON type
    }
  }

  /** The fields after the subject of a message by name (tag 0x82..0x86). */
  body(tag, r, roomId, userId) {
    let msg;
    switch (tag) {
      case 0x82:
        msg = { type: 'user:joined', roomId, userId, metadata: r.json() };
        break;
      case 0x83:
        msg = { type: 'user:left', roomId, userId };
        break;
      case 0x84: {
        const x = r.f64();
        const y = r.f64();
        msg = { type: 'cursor:updated', roomId, userId, position: { x, y }, timestamp: r.zigzag() };
        break;
      }
      case 0x85:
        msg = { type: 'cursor:removed', roomId, userId };
        break;
      case 0x86:
        msg = { type: 'presence:updated', roomId, userId, metadata: r.json() };
        break;
    }
    r.end();
    return msg;
  }
}
