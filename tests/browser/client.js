// A small, faithful re-implementation of the existing Flock browser client,
// written from /work/shared/PROTOCOL.md ("What the existing browser client
// does"). It is a plain ES module with no dependencies, loaded by page.html.
//
// What it deliberately mirrors (so the e2e test exercises the server the way
// real clients will):
//   * ONE WebSocket for every room; every message carries `roomId` and replies
//     are routed by the `roomId` they carry.
//   * `heartbeat` per joined room every 10 s; if no `heartbeat:ack` arrives for
//     20 s the socket is considered dead, closed, and reopened. Other traffic
//     does not count as liveness.
//   * Reconnect forever with backoff 1 s, 2 s, 4 s ... capped at 30 s; the
//     backoff restarts after a socket opens (so a refused join is retried about
//     once a second).
//   * On reconnect: forget the view of each room, re-send `join` with the same
//     userId and metadata, and rebuild the room from the `join:ack` snapshot
//     alone.
//   * `error` messages without `roomId` are dropped.
//   * The `apiKey` option is never put on the wire; an app that needs a key
//     puts `?apiKey=...` in the URL itself.
//   * Cursor moves are throttled to ~20/s (the last position always goes out)
//     and sent as given, without clamping.
//
// All intervals are constructor options so tests can shorten them.

const DEFAULTS = {
  heartbeatIntervalMs: 10_000, // reference: heartbeat every 10 s per room
  heartbeatTimeoutMs: 20_000, // reference: 2 missed intervals = dead server
  backoffBaseMs: 1_000, // reference: 1 s, 2 s, 4 s ...
  backoffMaxMs: 30_000, // ... capped at 30 s
  maxReconnectAttempts: Infinity, // reference: forever by default
  cursorThrottleMs: 50, // reference: ~20 cursor messages per second
  logLimit: 500, // how many view events each room keeps for inspection
};

/**
 * One room as this client sees it. `members` holds everyone *else* in the
 * room: userId -> { metadata, cursor: {x, y, timestamp} | null }.
 */
class RoomView {
  constructor(roomId, userId, metadata) {
    this.roomId = roomId;
    this.userId = userId;
    this.metadata = { ...metadata }; // our own metadata, re-sent on re-join
    this.members = new Map();
    this.joinSent = false; // `join` went out on the current socket
    this.joined = false; // `join:ack` received on the current socket
    this.acks = 0; // join:acks received over the client's lifetime
    this.log = []; // view events, oldest first (for tests and debugging)
    this.anomalies = []; // things a consistent server never causes
    // cursor throttling state
    this.cursorPending = null;
    this.cursorTimer = null;
    this.cursorLastSentAt = -Infinity;
  }

  /** A plain, JSON-friendly copy of the view. */
  toJSON() {
    const members = {};
    for (const [id, m] of this.members) members[id] = { metadata: m.metadata, cursor: m.cursor };
    return {
      roomId: this.roomId,
      userId: this.userId,
      joined: this.joined,
      acks: this.acks,
      members,
      log: this.log,
      anomalies: this.anomalies,
    };
  }
}

export class FlockClient extends EventTarget {
  /**
   * @param {object} options
   * @param {string} options.url  ws:// or wss:// URL; put `?apiKey=` here if the server needs one
   * @param {string} [options.apiKey]  accepted for API compatibility, never sent (like the reference)
   */
  constructor(options) {
    super();
    if (!options || !options.url) throw new Error('FlockClient: url is required');
    this.url = options.url;
    this.apiKey = options.apiKey; // mirrors the reference: kept, never on the wire
    this.opts = { ...DEFAULTS };
    for (const k of Object.keys(DEFAULTS)) if (options[k] !== undefined) this.opts[k] = options[k];

    this.rooms = new Map(); // roomId -> RoomView (the rooms the app wants to be in)
    this.ws = null;
    this.state = 'idle'; // idle | connecting | open | waiting (backoff) | closed (by the app)
    this.attempt = 0; // consecutive reconnects since the last open
    this.reconnectTimer = null;
    this.heartbeatTimer = null;
    this.ackWatchdog = null;

    // Counters for tests and debugging.
    this.stats = {
      connects: 0, // sockets created
      opens: 0, // sockets that reached OPEN
      closes: [], // {code, reason, wasOpen, cause, at}
      reconnectDelays: [], // backoff delays scheduled, in ms
      heartbeatsSent: 0,
      heartbeatAcks: 0,
      heartbeatTimeouts: 0,
      droppedErrors: [], // `error` messages without roomId (dropped, like the reference)
      roomErrors: [], // `error` messages that did carry a roomId
      unrouted: 0, // messages for rooms we are not in
      sent: {}, // type -> count
      received: {}, // type -> count
    };
  }

  // ---- public API -----------------------------------------------------------

  /** Joins `roomId` as `userId`. Opens the (single) socket on first use. */
  join(roomId, userId, metadata = {}) {
    if (this.state === 'closed') throw new Error('FlockClient: closed');
    let room = this.rooms.get(roomId);
    if (!room) {
      room = new RoomView(roomId, userId, metadata);
      this.rooms.set(roomId, room);
    } else {
      room.userId = userId;
      room.metadata = { ...metadata };
    }
    if (this.isOpen()) this.sendJoin(room);
    else this.connect();
    return room;
  }

  /** Sends our pointer position (normalised 0..1 by the app), throttled. */
  moveCursor(roomId, x, y) {
    const room = this.rooms.get(roomId);
    if (!room || !this.isOpen()) return; // nothing to tell while offline
    room.cursorPending = { x, y };
    const wait = room.cursorLastSentAt + this.opts.cursorThrottleMs - performance.now();
    if (wait <= 0) this.flushCursor(room);
    else if (!room.cursorTimer) room.cursorTimer = setTimeout(() => this.flushCursor(room), wait);
  }

  /** The pointer left the viewport. */
  leaveCursor(roomId) {
    const room = this.rooms.get(roomId);
    if (!room) return;
    this.cancelCursor(room);
    this.send({ type: 'cursor:leave', roomId });
  }

  /** Merges `patch` into our metadata (the server broadcasts the patch). */
  updatePresence(roomId, patch) {
    const room = this.rooms.get(roomId);
    if (!room) return;
    // Kept locally too, so a re-join after a reconnect carries the current metadata.
    Object.assign(room.metadata, patch);
    this.send({ type: 'presence:update', roomId, metadata: patch });
  }

  /** Clean leave of one room; the socket stays open for the other rooms. */
  leave(roomId) {
    const room = this.rooms.get(roomId);
    if (!room) return;
    this.cancelCursor(room);
    if (room.joinSent) this.send({ type: 'leave', roomId });
    this.rooms.delete(roomId);
    this.emit(roomId, 'left-room');
  }

  /** The view of one room (or undefined). */
  room(roomId) {
    return this.rooms.get(roomId);
  }

  /** Stops for good: no reconnects. */
  close() {
    this.state = 'closed';
    clearTimeout(this.reconnectTimer);
    this.stopHeartbeats();
    for (const room of this.rooms.values()) this.cancelCursor(room);
    if (this.ws) {
      const ws = this.ws;
      this.detach(ws);
      this.ws = null;
      ws.close(1000, 'client closed');
    }
  }

  isOpen() {
    return this.state === 'open' && this.ws && this.ws.readyState === WebSocket.OPEN;
  }

  /** Everything a test wants to look at, as plain data. */
  snapshot() {
    const rooms = {};
    for (const [id, r] of this.rooms) rooms[id] = r.toJSON();
    return { state: this.state, attempt: this.attempt, rooms, stats: this.stats };
  }

  // ---- connection -------------------------------------------------------------

  connect() {
    if (this.state === 'connecting' || this.state === 'open' || this.state === 'closed') return;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.state = 'connecting';
    this.stats.connects++;
    const ws = new WebSocket(this.url);
    this.ws = ws;
    let wasOpen = false;
    ws.onopen = () => {
      wasOpen = true;
      this.onOpen();
    };
    ws.onmessage = (ev) => this.onMessage(ev.data);
    ws.onerror = () => {}; // a close event always follows
    ws.onclose = (ev) => this.onSocketGone({ code: ev.code, reason: ev.reason, wasOpen, cause: 'close' });
  }

  detach(ws) {
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
  }

  onOpen() {
    this.state = 'open';
    this.stats.opens++;
    this.attempt = 0; // backoff restarts once a socket is up
    // Reference behaviour: forget every room's view and re-join with the same
    // userId and metadata; the view is rebuilt from the join:ack snapshot alone.
    for (const room of this.rooms.values()) {
      room.members.clear();
      room.joined = false;
      room.joinSent = false;
      room.log.push({ t: 'reset' });
      this.sendJoin(room);
      this.emit(room.roomId, 'reset');
    }
    this.startHeartbeats();
    this.dispatchEvent(new CustomEvent('open'));
  }

  /** The socket closed (or we declared it dead): schedule a reconnect. */
  onSocketGone(info) {
    this.stats.closes.push({ ...info, at: Date.now() });
    if (this.ws) this.detach(this.ws);
    this.ws = null;
    this.stopHeartbeats();
    for (const room of this.rooms.values()) {
      room.joined = false;
      room.joinSent = false;
      this.cancelCursor(room);
    }
    this.dispatchEvent(new CustomEvent('close', { detail: info }));
    if (this.state === 'closed') return;
    if (this.attempt >= this.opts.maxReconnectAttempts) {
      this.state = 'idle';
      return;
    }
    // Backoff: base * 2^attempt, capped (1 s, 2 s, 4 s ... 30 s by default).
    const delay = Math.min(this.opts.backoffBaseMs * 2 ** this.attempt, this.opts.backoffMaxMs);
    this.attempt++;
    this.stats.reconnectDelays.push(delay);
    this.state = 'waiting';
    this.reconnectTimer = setTimeout(() => {
      this.state = 'idle';
      this.connect();
    }, delay);
  }

  // ---- heartbeats -------------------------------------------------------------

  startHeartbeats() {
    this.stopHeartbeats();
    this.heartbeatTimer = setInterval(() => this.sendHeartbeats(), this.opts.heartbeatIntervalMs);
  }

  stopHeartbeats() {
    clearInterval(this.heartbeatTimer);
    clearTimeout(this.ackWatchdog);
    this.heartbeatTimer = null;
    this.ackWatchdog = null;
  }

  sendHeartbeats() {
    if (!this.isOpen()) return;
    let sent = 0;
    for (const room of this.rooms.values()) {
      if (!room.joinSent) continue;
      this.send({ type: 'heartbeat', roomId: room.roomId });
      this.stats.heartbeatsSent++;
      sent++;
    }
    // Liveness: only a heartbeat:ack proves the server is alive. The watchdog
    // is armed by the first unanswered heartbeat and disarmed by any ack.
    if (sent && !this.ackWatchdog) {
      this.ackWatchdog = setTimeout(() => this.onHeartbeatTimeout(), this.opts.heartbeatTimeoutMs);
    }
  }

  onHeartbeatTimeout() {
    this.ackWatchdog = null;
    this.stats.heartbeatTimeouts++;
    const ws = this.ws;
    if (!ws) return;
    // Dead server: drop the socket without waiting for a close handshake that
    // may never come, and go through the normal reconnect path.
    this.detach(ws);
    try {
      ws.close(4000, 'heartbeat timeout');
    } catch {
      /* already closing */
    }
    this.onSocketGone({ code: 4000, reason: 'heartbeat timeout', wasOpen: true, cause: 'heartbeat-timeout' });
  }

  // ---- sending ----------------------------------------------------------------

  send(msg) {
    if (!this.isOpen()) return false;
    this.ws.send(JSON.stringify(msg));
    this.stats.sent[msg.type] = (this.stats.sent[msg.type] || 0) + 1;
    return true;
  }

  sendJoin(room) {
    // No apiKey field: the reference never puts its apiKey option on the wire.
    room.joinSent = this.send({ type: 'join', roomId: room.roomId, userId: room.userId, metadata: room.metadata });
  }

  flushCursor(room) {
    clearTimeout(room.cursorTimer);
    room.cursorTimer = null;
    if (!room.cursorPending) return;
    const position = room.cursorPending;
    room.cursorPending = null;
    room.cursorLastSentAt = performance.now();
    this.send({ type: 'cursor:move', roomId: room.roomId, position });
  }

  cancelCursor(room) {
    clearTimeout(room.cursorTimer);
    room.cursorTimer = null;
    room.cursorPending = null;
  }

  // ---- receiving --------------------------------------------------------------

  onMessage(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return; // not JSON: ignore
    }
    if (!msg || typeof msg !== 'object' || typeof msg.type !== 'string') return;
    this.stats.received[msg.type] = (this.stats.received[msg.type] || 0) + 1;

    if (msg.type === 'heartbeat:ack') {
      // heartbeat:ack carries no roomId; it is connection liveness only.
      this.stats.heartbeatAcks++;
      clearTimeout(this.ackWatchdog);
      this.ackWatchdog = null;
      return;
    }
    if (msg.type === 'error') {
      // The reference routes everything by roomId; errors without one are dropped.
      if (typeof msg.roomId !== 'string') {
        this.stats.droppedErrors.push({ code: msg.code, message: msg.message, at: Date.now() });
        return;
      }
      this.stats.roomErrors.push({ roomId: msg.roomId, code: msg.code, message: msg.message });
    }

    const room = typeof msg.roomId === 'string' ? this.rooms.get(msg.roomId) : undefined;
    if (!room) {
      this.stats.unrouted++;
      return;
    }
    this.apply(room, msg);
  }

  /** Applies one server message to a room's view. */
  apply(room, msg) {
    const members = room.members;
    const note = (entry) => {
      room.log.push(entry);
      if (room.log.length > this.opts.logLimit) room.log.splice(0, room.log.length - this.opts.logLimit);
    };
    switch (msg.type) {
      case 'join:ack': {
        // Rebuild the room from the snapshot alone.
        members.clear();
        const ids = [];
        for (const u of Array.isArray(msg.users) ? msg.users : []) {
          if (members.has(u.userId)) room.anomalies.push({ what: 'duplicate userId in join:ack', userId: u.userId });
          ids.push(u.userId);
          members.set(u.userId, { metadata: u.metadata ?? {}, cursor: u.cursor ? { ...u.cursor } : null });
        }
        room.joined = true;
        room.acks++;
        note({ t: 'join:ack', users: ids });
        break;
      }
      case 'user:joined':
        if (msg.userId === room.userId) break; // ourselves (e.g. another tab evicted us)
        if (members.has(msg.userId)) room.anomalies.push({ what: 'user:joined for a present member', userId: msg.userId });
        members.set(msg.userId, { metadata: msg.metadata ?? {}, cursor: null });
        note({ t: 'user:joined', userId: msg.userId });
        break;
      case 'user:left':
        if (!members.delete(msg.userId)) room.anomalies.push({ what: 'user:left for an absent member', userId: msg.userId });
        note({ t: 'user:left', userId: msg.userId });
        break;
      case 'cursor:updated': {
        const m = members.get(msg.userId);
        if (!m) {
          room.anomalies.push({ what: 'cursor:updated for an absent member', userId: msg.userId });
          break;
        }
        m.cursor = { x: msg.position?.x, y: msg.position?.y, timestamp: msg.timestamp };
        note({ t: 'cursor:updated', userId: msg.userId, x: m.cursor.x, y: m.cursor.y });
        break;
      }
      case 'cursor:removed': {
        const m = members.get(msg.userId);
        if (m) m.cursor = null;
        note({ t: 'cursor:removed', userId: msg.userId });
        break;
      }
      case 'presence:updated': {
        const m = members.get(msg.userId);
        if (!m) {
          room.anomalies.push({ what: 'presence:updated for an absent member', userId: msg.userId });
          break;
        }
        m.metadata = { ...m.metadata, ...msg.metadata }; // the broadcast carries only the patch
        note({ t: 'presence:updated', userId: msg.userId, patch: msg.metadata });
        break;
      }
      case 'error':
        note({ t: 'error', code: msg.code });
        break;
      default:
        return; // unknown types are ignored
    }
    this.emit(room.roomId, msg.type);
  }

  emit(roomId, type) {
    this.dispatchEvent(new CustomEvent('change', { detail: { roomId, type } }));
  }
}
