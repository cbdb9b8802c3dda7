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
