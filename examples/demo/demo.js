// The flock demo page (served by flock-server with FLOCK_DEMO=1): a shared
// canvas with everyone's cursor, a who-is-online list and the connection
// state, built on clients/js/flock.js (served beside this file).
//
// URL parameters: room (default "lobby"), name (default a random one),
// idleMs (default 60000: "idle" after a minute without input), apiKey (for a
// server with FLOCK_API_KEYS), protocol (binary: flock.binary.v2).
import { FlockClient } from './flock.js';

const params = new URLSearchParams(location.search);
const roomId = params.get('room') || 'lobby';
const idleMs = Number(params.get('idleMs')) > 0 ? Number(params.get('idleMs')) : 60_000;

// One identity per tab (sessionStorage): two tabs are two users, and a reload
// keeps the same user (the server replaces the old socket).
function remembered(key, make) {
  try {
    let v = sessionStorage.getItem(key);
    if (!v) sessionStorage.setItem(key, (v = make()));
    return v;
  } catch {
    return make(); // storage disabled
  }
}
const NAMES = ['Ada', 'Alan', 'Barbara', 'Dennis', 'Edsger', 'Frances', 'Grace', 'Ken', 'Linus', 'Margaret', 'Niklaus', 'Radia'];
const userId = remembered('flock-demo-user', () => `u-${Math.random().toString(36).slice(2, 10)}`);
const name = (params.get('name') || remembered('flock-demo-name', () => NAMES[Math.floor(Math.random() * NAMES.length)])).slice(0, 40);
const PALETTE = ['#e4572e', '#17bebb', '#ffb400', '#7a5cfa', '#2e86de', '#e84393', '#27ae60', '#d35400', '#8e44ad', '#16a085'];
const colorOf = (id) => PALETTE[[...id].reduce((h, c) => (h * 31 + c.charCodeAt(0)) >>> 0, 7) % PALETTE.length];
const color = colorOf(userId);

const $ = (id) => document.getElementById(id);
const board = $('board');
const cursorsEl = $('cursors');
$('room').textContent = roomId;
$('me').textContent = name;
$('me').style.color = color;
$('share').href = `${location.pathname}?room=${encodeURIComponent(roomId)}`;
$('idle-after').textContent = idleMs === 60_000 ? 'a minute' : `${idleMs / 1000} s`;
document.title = `flock demo · ${roomId}`;

// The server of this page, on the same origin (ws: or wss:).
const wsUrl = new URL('.', location.href);
wsUrl.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
wsUrl.search = wsUrl.hash = '';
// A server with FLOCK_API_KEYS: /?apiKey=... hands the key to the upgrade.
if (params.get('apiKey')) wsUrl.searchParams.set('apiKey', params.get('apiKey'));

// ?protocol=binary speaks flock.binary.v2 (docs/binary-codec.md) instead of JSON.
const protocol = params.get('protocol') === 'binary' ? 'binary' : 'json';
const client = new FlockClient({ url: wsUrl.href, protocol, backoffMaxMs: 10_000 });
let myStatus = 'active';
let room = client.join(roomId, { userId, metadata: { name, color, status: myStatus } });
window.flockDemo = { client, room, userId, name };

// ---- connection state -----------------------------------------------------------

const statusEl = $('status');
let countdown = null;
client.on('status', (e) => {
  clearInterval(countdown);
  statusEl.dataset.state = e.status;
  if (e.status === 'reconnecting') {
    const at = Date.now() + e.delayMs;
    const show = () => {
      const s = Math.max(0, Math.ceil((at - Date.now()) / 1000));
      statusEl.textContent = s > 0 ? `reconnecting in ${s} s…` : 'reconnecting…';
    };
    show();
    countdown = setInterval(show, 250);
  } else {
    statusEl.textContent = { idle: 'starting…', connecting: 'connecting…', open: 'connected', closed: 'disconnected' }[e.status];
  }
  if (e.status !== 'open') renderPeople();
});
client.on('error', (e) => console.warn(`flock: ${e.code}: ${e.message}`));

// ---- who is online --------------------------------------------------------------

const people = $('people');
function renderPeople() {
  const online = room.joined ? room.list() : [];
  const rows = [{ userId, metadata: { name, color, status: myStatus }, me: true }, ...online];
  people.replaceChildren(
    ...rows.map((m) => {
      const li = document.createElement('li');
      const status = m.metadata.status === 'idle' ? 'idle' : 'active';
      li.dataset.user = m.userId;
      li.dataset.status = status;
      const dot = document.createElement('span');
      dot.className = 'dot';
      dot.style.background = safeColor(m.metadata.color, m.userId);
      const label = document.createElement('span');
      label.className = 'name';
      label.textContent = `${displayName(m)}${m.me ? ' (you)' : ''}`;
      const state = document.createElement('span');
      state.className = 'state';
      state.textContent = status;
      li.append(dot, label, state);
      return li;
    }),
  );
  $('count').textContent = `(${rows.length})`;
  for (const [id, c] of cursors) c.el.classList.toggle('idle', room.members.get(id)?.metadata.status === 'idle');
}
client.on('members', renderPeople);

function displayName(m) {
  return typeof m.metadata.name === 'string' && m.metadata.name ? m.metadata.name.slice(0, 40) : m.userId;
}
function safeColor(c, id) {
  return typeof c === 'string' && /^#[0-9a-f]{3,8}$/i.test(c) ? c : colorOf(id);
}

// ---- cursors: smooth interpolation toward the last position received ---------------

/** userId -> {el, x, y, tx, ty} (x, y shown; tx, ty target; normalised 0..1) */
const cursors = new Map();

function cursorEl(m) {
  const el = document.createElement('div');
  el.className = 'cursor';
  el.dataset.user = m.userId;
  const c = safeColor(m.metadata.color, m.userId);
  el.innerHTML = `<svg width="18" height="22" viewBox="0 0 18 22"><path d="M1 1 L1 18 L5.5 14 L8.5 21 L11.5 19.8 L8.6 13 L15 13 Z" fill="${c}" stroke="#fff" stroke-width="1.5" stroke-linejoin="round"/></svg><span class="label"></span>`;
  const label = el.querySelector('.label');
  label.textContent = displayName(m);
  label.style.background = c;
  cursorsEl.append(el);
  return el;
}

function setCursor(id, position) {
  let c = cursors.get(id);
  if (!position) {
    if (c) c.el.remove();
    cursors.delete(id);
    return;
  }
  const m = room.members.get(id);
  if (!m) return;
  if (!c) {
    c = { el: cursorEl(m), x: position.x, y: position.y, tx: position.x, ty: position.y };
    cursors.set(id, c);
    place(c);
  }
  c.tx = position.x;
  c.ty = position.y;
  wake();
}

client.on('cursor', (e) => e.roomId === roomId && setCursor(e.userId, e.position));
client.on('joined', () => {
  // The view was rebuilt from the snapshot: show exactly its cursors.
  for (const id of [...cursors.keys()]) if (!room.members.get(id)?.cursor) setCursor(id, null);
  for (const m of room.list()) if (m.cursor) setCursor(m.userId, m.cursor);
});
client.on('member:left', (e) => setCursor(e.member.userId, null));
client.on('member:joined', (e) => setCursor(e.member.userId, null)); // a re-join starts without a cursor
client.on('presence', (e) => {
  const c = cursors.get(e.userId);
  if (c) c.el.querySelector('.label').textContent = displayName(room.members.get(e.userId));
});
client.on('status', (e) => {
  if (e.status !== 'open') for (const id of [...cursors.keys()]) setCursor(id, null);
});

function place(c) {
  c.el.style.transform = `translate(${c.x * board.clientWidth}px, ${c.y * board.clientHeight}px)`;
}

let last = 0;
let frame = 0;
function wake() {
  if (!frame) {
    last = performance.now();
    frame = requestAnimationFrame(tick);
  }
}
function tick(t) {
  frame = 0;
  const k = 1 - Math.exp(-(t - last) / 60); // closes ~63% of the gap every 60 ms
  last = t;
  let moving = false;
  for (const c of cursors.values()) {
    c.x += (c.tx - c.x) * k;
    c.y += (c.ty - c.y) * k;
    if (Math.abs(c.tx - c.x) * board.clientWidth < 0.3 && Math.abs(c.ty - c.y) * board.clientHeight < 0.3) {
      c.x = c.tx;
      c.y = c.ty;
    } else moving = true;
    place(c);
  }
  if (moving) frame = requestAnimationFrame(tick);
}
window.addEventListener('resize', () => cursors.forEach(place));

// ---- our pointer and activity ------------------------------------------------------

let lastInput = Date.now();
function active() {
  lastInput = Date.now();
  if (myStatus !== 'active') {
    myStatus = 'active';
    room.updatePresence({ status: myStatus });
    renderPeople();
  }
}
setInterval(() => {
  if (myStatus === 'active' && Date.now() - lastInput >= idleMs) {
    myStatus = 'idle';
    room.updatePresence({ status: myStatus });
    renderPeople();
  }
}, Math.min(5000, Math.max(100, idleMs / 4)));

board.addEventListener('pointermove', (e) => {
  const r = board.getBoundingClientRect();
  room.moveCursor((e.clientX - r.left) / r.width, (e.clientY - r.top) / r.height);
  $('hint').hidden = true;
  active();
});
board.addEventListener('pointerleave', () => room.leaveCursor());
for (const type of ['keydown', 'pointerdown', 'wheel']) window.addEventListener(type, active, { passive: true });
window.addEventListener('pagehide', () => client.close());
window.addEventListener('pageshow', (e) => {
  // Back from the back/forward cache: join again (close() left the room).
  if (e.persisted) window.flockDemo.room = room = client.join(roomId, { userId, metadata: { ...room.metadata } });
});
renderPeople();
