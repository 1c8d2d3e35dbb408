// What the browser tests share: failing loudly, a free loopback port, waiting for the
// daemon they start to answer its health page, its config's head, console password
// hashes, a host page server and a PNG to upload.
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { deflateSync, crc32 } from 'node:zlib';

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

// An argon2id hash of `pw` for [[console.users]], from `switchboard passwd --stdin`.
export function passwd(bin, pw) {
  return execFileSync(bin, ['passwd', '--stdin'], { input: pw + '\n' }).toString().trim();
}

// The head every test's daemon config starts with: its state directory, the client
// listener on 127.0.0.1:`port` (with `listener` lines under it, e.g. TLS), no admin
// listener, and the HS256 key `secret` its tokens are signed with.
export function configHead({ dir, port, secret, listener = '' }) {
  return `state_dir = "${join(dir, 'state')}"
[listeners.client]
addr = "127.0.0.1:${port}"
${listener}[admin]
enabled = false
[[auth.keys]]
kid = "test"
secret = "${secret}"
`;
}

// An HTTP server on a free loopback port answering every request with the HTML that
// `page(req)` returns (a host page of another origin than the daemon's).
export function serveHtml(page) {
  return new Promise((resolveServe) => {
    const s = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(page(req));
    });
    s.listen(0, '127.0.0.1', () => resolveServe(s));
  });
}

// A small PNG (a coloured square of `size` pixels), made here.
export function png(size) {
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(td) >>> 0);
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0);
  ihdr.writeUInt32BE(size, 4);
  ihdr[8] = 8; ihdr[9] = 2;
  const row = Buffer.alloc(1 + size * 3);
  for (let x = 0; x < size; x++) row.set([40 + x * 3, 120, 200 - x * 2], 1 + x * 3);
  const raw = Buffer.concat(Array.from({ length: size }, () => row));
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}
