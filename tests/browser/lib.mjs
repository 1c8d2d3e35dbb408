// What the browser tests share: failing loudly, a free loopback port, and waiting
// for the daemon they start to answer its health page.
import { createServer } from 'node:http';

export function fail(msg) {
  throw new Error(msg);
}

// A TCP port on 127.0.0.1 that nothing listens on now.
export function freePort() {
  return new Promise((resolvePort) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolvePort(port));
    });
  });
}

// Waits (15 s at most) until the daemon answers GET /healthz on `port`.
export async function waitForPort(port) {
  for (let i = 0; i < 150; i++) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/healthz`);
      if (r.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  fail(`the daemon did not answer on ${port}`);
}
