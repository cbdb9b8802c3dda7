// What the browser test scripts (e2e.mjs, demo.mjs) share: checks that
// print as they pass, and waiting with a bound.
import { once } from 'node:events';
import net from 'node:net';
import { isDeepStrictEqual } from 'node:util';

export const HOST = '127.0.0.1';

/** A check that failed: the scripts report it as a failure, not a crash. */
export class CheckError extends Error {}

export function check(cond, message, details) {
  if (!cond) {
    const err = new CheckError(message);
    err.details = details;
    throw err;
  }
  console.log(`    ok  ${message}`);
}

export function checkEqual(actual, expected, message) {
  check(isDeepStrictEqual(actual, expected), message, { actual, expected });
}

/** A loopback port nobody listens on now. */
export async function freePort() {
  const srv = net.createServer();
  srv.listen(0, HOST);
  await once(srv, 'listening');
  const { port } = srv.address();
  srv.close();
  await once(srv, 'close');
  return port;
}

/** Calls `onLine` with each line a child process writes to stdout or stderr. */
export function onLines(proc, onLine) {
  for (const stream of [proc.stdout, proc.stderr]) {
    if (!stream) continue;
    let buf = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk) => {
      buf += chunk;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        onLine(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    });
  }
}

/** Resolves when `promise` does, or rejects after `ms` with `what`. */
export async function within(ms, what, promise) {
  let timer;
  try {
    return await Promise.race([
      promise,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new CheckError(`timed out after ${ms} ms: ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
