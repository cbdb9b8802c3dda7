// Two flock-server processes on one Redis, seen by a client on each: the
// cursor and presence cross once; SIGKILL one server and the other side sees
// its user leave once, after the presence TTL. See docs/scaling.md.
//   node --experimental-websocket examples/cluster-check.mjs PORT_A PORT_B PID_OF_A
const [portA, portB, pidA] = process.argv.slice(2);
const t0 = Date.now();
const log = (...a) => console.log(`[${((Date.now() - t0) / 1000).toFixed(2)}s]`, ...a);
function client(port, name) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
  const inbox = [];
  ws.onmessage = (e) => { const m = JSON.parse(e.data); inbox.push(m); if (m.type !== 'heartbeat:ack') log(`${name} <-`, e.data); };
  return new Promise((res) => ws.onopen = () => res({ ws, inbox, send: (o) => ws.send(JSON.stringify(o)) }));
}
const wait = (pred, ms = 15000) => new Promise((res, rej) => {
  const start = Date.now();
  const tick = () => pred() ? res() : Date.now() - start > ms ? rej(new Error('timeout')) : setTimeout(tick, 20);
  tick();
});
const a = await client(portA, 'ann@A'), b = await client(portB, 'ben@B');
a.send({ type: 'join', roomId: 'demo', userId: 'ann', metadata: { name: 'Ann' } });
await wait(() => a.inbox.some((m) => m.type === 'join:ack'));
b.send({ type: 'join', roomId: 'demo', userId: 'ben', metadata: { name: 'Ben' } });
await wait(() => b.inbox.some((m) => m.type === 'join:ack'));
await wait(() => a.inbox.some((m) => m.type === 'user:joined'));
a.send({ type: 'cursor:move', roomId: 'demo', position: { x: 0.25, y: 0.75 } });
a.send({ type: 'presence:update', roomId: 'demo', metadata: { status: 'away' } });
await wait(() => b.inbox.some((m) => m.type === 'presence:updated'));
const hb = setInterval(() => b.send({ type: 'heartbeat', roomId: 'demo' }), 1000);
log(`killing server A (pid ${pidA}) with SIGKILL`);
process.kill(Number(pidA), 'SIGKILL');
const killedAt = Date.now();
await wait(() => b.inbox.some((m) => m.type === 'user:left'), 30000);
log(`ben saw ann leave ${((Date.now() - killedAt) / 1000).toFixed(1)} s after the kill`);
await new Promise((r) => setTimeout(r, 3000));  // would a duplicate arrive?
const count = (t) => b.inbox.filter((m) => m.type === t).length;
log(`ben received: cursor:updated x${count('cursor:updated')}, presence:updated x${count('presence:updated')}, user:left x${count('user:left')}`);
clearInterval(hb);
process.exit(0);
