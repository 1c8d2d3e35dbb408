// TLS from a real browser: Chromium trusts a CA made here (put in an NSS database of a
// temporary HOME, the way a Linux desktop trusts a company CA), the daemon serves its
// client port with a certificate of that CA, and:
//
//   - the agent console loads over https:// and its session runs over wss://
//     (password login, then a conversation);
//   - a host page embeds https://…/widget.js: the widget's visitor token, settings and
//     WebSocket go over https:// and wss://, and messages flow both ways;
//   - the same Chromium without the CA refuses the certificate (the trust above came
//     from the CA, not from a switch that ignores errors);
//   - plaintext http:// keeps working on the same port.
//
//   node tests/browser/tls.mjs [path/to/switchboard]   (default: target/debug/switchboard)
//
// Needs Debian's chromium, the openssl CLI and certutil (Debian libnss3-tools), and the
// npm packages of tests/browser. Loopback only. Screenshots: target/browser/tls-*.png.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';
import { configHead, fail, freePort, passwd, serveHtml } from './lib.mjs';

const root = resolve(new URL('../..', import.meta.url).pathname);
const bin = resolve(process.argv[2] ?? join(root, 'target/debug/switchboard'));
const shots = join(root, 'target/browser');
mkdirSync(shots, { recursive: true });
const SECRET = 'switchboard-tls-browser-secret-0123456789abcdef';
const SITE_SECRET = 'switchboard-tls-site-secret-0123456789abcdef';
const TIMEOUT = 20000;
const W = '#switchboard-widget';
const step = (what) => console.log('tls browser test:', what);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const dir = mkdtempSync(join(tmpdir(), 'switchboard-tls-browser-'));
const sh = (cmd, args, opts = {}) => execFileSync(cmd, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], ...opts });

// A CA and a server certificate for localhost and 127.0.0.1 (ECDSA P-256).
sh('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem',
  '-days', '2', '-subj', '/CN=Switchboard browser test CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
sh('openssl', ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost']);
writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n');
sh('openssl', ['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'ext.cnf']);
// The CA, trusted for TLS servers in the NSS database Chromium reads on Linux.
const home = join(dir, 'home');
mkdirSync(join(home, '.pki', 'nssdb'), { recursive: true });
sh('certutil', ['-N', '-d', `sql:${join(home, '.pki', 'nssdb')}`, '--empty-password']);
sh('certutil', ['-A', '-d', `sql:${join(home, '.pki', 'nssdb')}`, '-n', 'switchboard-test-ca', '-t', 'C,,', '-i', join(dir, 'ca.pem')]);
const untrustedHome = join(dir, 'home-without-ca');
mkdirSync(untrustedHome);

const port = await freePort();
const site = await serveHtml(() => `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop</title></head>
<body><h1>Shop</h1><script src="https://localhost:${port}/widget.js" data-site="shop" async></script></body></html>`);
const origin = `http://127.0.0.1:${site.address().port}`;
const config = join(dir, 'switchboard.toml');
const tls = `[listeners.client.tls]
cert = "${join(dir, 'server.pem')}"
key = "${join(dir, 'server.key')}"
`;
writeFileSync(config, `${configHead({ dir, port, secret: SECRET, listener: tls })}[web]
allowed_origins = ["same-host", "${origin}"]
[[web.sites]]
id = "shop"
allowed_origins = ["${origin}"]
group = "support"
anonymous = true
secret = "${SITE_SECRET}"
[[console.users]]
name = "alice"
password_hash = "${passwd(bin, 'alice password')}"
display_name = "Alice"
groups = ["support"]
[log]
level = "warn"
`);

const daemon = spawn(bin, ['run', '--config', config], { stdio: ['ignore', 'inherit', 'inherit'] });
let browser;
let bare;
let status = 1;
try {
  // Up when plaintext HTTP answers on the same port.
  let up = false;
  for (let i = 0; i < 150 && !up; i++) {
    try { up = (await fetch(`http://127.0.0.1:${port}/healthz`)).ok; } catch { await sleep(100); }
  }
  if (!up) fail('the daemon did not answer plaintext /healthz');
  step('plaintext http:// answers on the TLS port');

  const launch = (h) => chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: ['--no-sandbox'], env: { ...process.env, HOME: h } });
  browser = await launch(home);

  // --- The console over https:// and wss://.
  const alice = await (await browser.newContext({ viewport: { width: 1200, height: 800 } })).newPage();
  const sockets = [];
  alice.on('websocket', (ws) => sockets.push(ws.url()));
  const resp = await alice.goto(`https://localhost:${port}/console/`);
  if (!resp.ok()) fail(`console over https: ${resp.status()}`);
  const sec = await resp.securityDetails();
  await alice.fill('#username', 'alice');
  await alice.fill('#password', 'alice password');
  await alice.click('#login-form button[type=submit]');
  await alice.waitForFunction(() => document.querySelector('#conn').dataset.state === 'up', null, { timeout: TIMEOUT });
  if (!sockets.some((u) => u.startsWith(`wss://localhost:${port}/`))) fail(`the console's socket: ${sockets}`);
  step(`the console loaded over https (${sec?.protocol}, issuer "${sec?.issuer}") and its session runs over ${sockets[0]}`);

  // --- The widget: https:// script, token and settings, wss:// socket.
  const vera = await (await browser.newContext({ locale: 'en-US' })).newPage();
  const vsockets = [];
  vera.on('websocket', (ws) => vsockets.push(ws.url()));
  await vera.goto(`${origin}/`);
  await vera.waitForFunction(() => window.Switchboard && window.Switchboard.version, null, { timeout: TIMEOUT });
  await vera.locator(`${W} .launcher`).click();
  await vera.locator(`${W} .composer textarea`).waitFor({ timeout: TIMEOUT });
  await vera.locator(`${W} .composer textarea`).fill('Hello over TLS');
  await vera.locator(`${W} .composer textarea`).press('Enter');
  const conv = await (async () => {
    for (let i = 0; i < 200; i++) {
      const c = await vera.evaluate(() => window.Switchboard.state.conversation);
      if (c) return c;
      await sleep(100);
    }
    return fail('the widget opened no conversation');
  })();
  const pane = `.pane[data-conv="${conv}"]`;
  await alice.waitForSelector(`${pane} .log li:has-text("Hello over TLS")`, { timeout: TIMEOUT });
  await alice.fill(`${pane} textarea`, 'Hi! This reply went through wss:// too.');
  await alice.press(`${pane} textarea`, 'Enter');
  await vera.locator(`${W} .m.them`).filter({ hasText: /went through wss/ }).first().waitFor({ timeout: TIMEOUT });
  if (!vsockets.some((u) => u.startsWith(`wss://localhost:${port}/`))) fail(`the widget's socket: ${vsockets}`);
  await vera.screenshot({ path: join(shots, 'tls-widget.png') });
  await alice.screenshot({ path: join(shots, 'tls-console.png') });
  step(`a widget on ${origin} spoke to the daemon over ${vsockets[0]}: messages both ways with the console`);

  // --- Without the CA the browser refuses the certificate.
  bare = await launch(untrustedHome);
  const p = await bare.newPage();
  const refused = await p.goto(`https://localhost:${port}/healthz`).then(() => null, (e) => e.message);
  if (!refused || !/ERR_CERT/.test(refused)) fail(`a browser without the CA was not refused: ${refused}`);
  step(`the same Chromium without the CA refuses the certificate (${/net::ERR_CERT_[A-Z_]+/.exec(refused)?.[0]})`);

  console.log('tls browser test: passed');
  status = 0;
} catch (e) {
  console.error('tls browser test FAILED:', e.stack || e.message);
} finally {
  await bare?.close();
  await browser?.close();
  daemon.kill('SIGTERM');
  site.close();
  rmSync(dir, { recursive: true, force: true });
}
process.exit(status);
