// A real browser talks to the gateway: two Chromium pages (a visitor and an agent)
// open `ws://` connections with the `switchboard.v1.json` subprotocol, say Hello with
// their tokens, and exchange messages both ways; a page of another origin is refused.
// The agent has a JWT from `switchboard token`; the visitor page has no back end: it
// fetches an anonymous visitor token from the gateway (CORS for real), keeps its
// visitor id and key in localStorage, and after a reload resumes the same
// conversation.
//
//   node tests/browser/chat.mjs [path/to/switchboard]   (default: target/debug/switchboard)
//
// Needs Debian's chromium (CHROMIUM overrides /usr/bin/chromium) and npm's
// playwright-core (`npm ci` in tests/browser). Everything is on loopback; the daemon
// it starts is stopped on exit. Screenshots go to target/browser/.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';
import { fail, freePort, waitForPort } from './lib.mjs';

const root = resolve(new URL('../..', import.meta.url).pathname);
const bin = resolve(process.argv[2] ?? join(root, 'target/debug/switchboard'));
const shots = join(root, 'target/browser');
mkdirSync(shots, { recursive: true });
const SECRET = 'switchboard-browser-test-secret-0123456789abcdef';
const SITE_SECRET = 'switchboard-browser-site-secret-0123456789abcdef';
const TIMEOUT = 15000;

// The page both roles load: a tiny client written against proto-spec/JSON.md.
const PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>switchboard browser test</title>
<style>body{font:14px system-ui;margin:1em}li{margin:.2em 0}.me{color:#064}</style></head>
<body><h1 id="who">not connected</h1><ul id="log"></ul>
<script>
window.sb = (() => {
  const inbox = [];
  const waiters = [];
  let ws = null;
  let rid = 0;
  const log = (text, cls) => {
    const li = document.createElement('li');
    li.textContent = text;
    if (cls) li.className = cls;
    document.getElementById('log').append(li);
  };
  const deliver = (m) => {
    inbox.push(m);
    for (const w of [...waiters]) {
      if (w.pred(m)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(m); }
    }
  };
  const waitFor = (pred, what) => new Promise((resolve, reject) => {
    const hit = inbox.find(pred);
    if (hit) return resolve(hit);
    const w = { pred, resolve };
    waiters.push(w);
    setTimeout(() => reject(new Error('timed out waiting for ' + what + '; got ' + JSON.stringify(inbox))), ${TIMEOUT});
  });
  const send = (kind, fields) => {
    rid += 1;
    ws.send(JSON.stringify({ kind, request_id: rid, fields }));
    return rid;
  };
  return {
    connect(url, token) {
      return new Promise((resolve, reject) => {
        ws = new WebSocket(url, ['switchboard.v1.json']);
        ws.onopen = () => send('Hello', { protocol: 1, token, client: 'browser-test/1', resume: [] });
        ws.onmessage = (e) => {
          const m = JSON.parse(e.data);
          deliver(m);
          if (m.kind === 'Welcome') {
            document.getElementById('who').textContent = m.fields.name + ' (' + ws.protocol + ')';
            resolve(m.fields);
          }
          if (m.kind === 'Deliver') log(m.fields.sender + ': ' + m.fields.body);
        };
        ws.onclose = (e) => reject(new Error('closed before Welcome: ' + e.code));
      });
    },
    // Opens and reports how it ended: {opened, code}.
    probe(url) {
      return new Promise((resolve) => {
        const s = new WebSocket(url, ['switchboard.v1.json']);
        let opened = false;
        s.onopen = () => { opened = true; s.close(1000); };
        s.onclose = (e) => resolve({ opened, code: e.code });
      });
    },
    say(conversation, body) {
      log('me: ' + body, 'me');
      return send('Send', { content_type: 1, conversation, client_msg_id: String(Date.now()), group: '', body });
    },
    ping() { return send('Ping'); },
    // A visitor token from the gateway, for the id and key kept in localStorage (a
    // new visitor the first time); keeps what it gets.
    async visitorToken(endpoint) {
      const kept = JSON.parse(localStorage.getItem('sb-visitor') ?? 'null');
      const r = await fetch(endpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(kept ?? {}),
      });
      if (!r.ok) throw new Error('visitor-token ' + r.status + ': ' + await r.text());
      const t = await r.json();
      localStorage.setItem('sb-visitor', JSON.stringify({ visitor_id: t.visitor_id, visitor_key: t.visitor_key }));
      return t;
    },
    // How a fetch of the endpoint from this page ends: 'ok', or 'refused'.
    async tryVisitorToken(endpoint) {
      try {
        const r = await fetch(endpoint, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
        return r.ok ? 'ok' : 'refused';
      } catch {
        return 'refused';
      }
    },
    waitFor(kind, field, value) {
      return waitFor((m) => m.kind === kind && (field === undefined || m.fields?.[field] === value),
        kind + (field ? ' with ' + field + '=' + value : ''));
    },
    closeCode() {
      return new Promise((resolve) => { ws.onclose = (e) => resolve(e.code); ws.close(1000); });
    },
  };
})();
</script></body></html>`;

function serve(page) {
  return new Promise((resolveServe) => {
    const s = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(page);
    });
    s.listen(0, '127.0.0.1', () => resolveServe(s));
  });
}

const dir = mkdtempSync(join(tmpdir(), 'switchboard-browser-'));
const site = await serve(PAGE);
const evil = await serve(PAGE);
const sitePort = site.address().port;
const evilPort = evil.address().port;
const port = await freePort();
const config = join(dir, 'switchboard.toml');
writeFileSync(config, `state_dir = "${join(dir, 'state')}"
[listeners.client]
addr = "127.0.0.1:${port}"
[admin]
enabled = false
[[auth.keys]]
kid = "test"
secret = "${SECRET}"
[web]
allowed_origins = ["http://127.0.0.1:${sitePort}"]
[[web.sites]]
id = "site"
allowed_origins = ["http://127.0.0.1:${sitePort}"]
group = "support"
anonymous = true
secret = "${SITE_SECRET}"
[log]
level = "warn"
`);
const token = (...args) => execFileSync(bin, ['token', '--config', config, ...args]).toString().trim();
const agentToken = token('--role', 'agent', '--sub', 'alice', '--name', 'Alice', '--groups', 'support');

const daemon = spawn(bin, ['run', '--config', config], { stdio: ['ignore', 'inherit', 'inherit'] });
let browser;
let status = 1;
try {
  await waitForPort(port);
  browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: ['--no-sandbox'] });
  const ws = `ws://127.0.0.1:${port}/ws`;
  const endpoint = `http://127.0.0.1:${port}/web/v1/sites/site/visitor-token`;
  const agent = await browser.newPage();
  const visitor = await browser.newPage();
  await agent.goto(`http://127.0.0.1:${sitePort}/`);
  await visitor.goto(`http://127.0.0.1:${sitePort}/`);

  const a = await agent.evaluate(([u, t]) => sb.connect(u, t), [ws, agentToken]);
  if (a.user !== 'alice' || a.role !== 2) fail(`agent Welcome: ${JSON.stringify(a)}`);
  const t = await visitor.evaluate((e) => sb.visitorToken(e), endpoint);
  if (!t.user.startsWith('v:site:') || !t.visitor_key) fail(`visitor token: ${JSON.stringify({ ...t, token: '…' })}`);
  const v = await visitor.evaluate(([u, tok]) => sb.connect(u, tok), [ws, t.token]);
  if (v.user !== t.user || v.role !== 1) fail(`visitor Welcome: ${JSON.stringify(v)}`);
  if (typeof v.session !== 'string') fail('u64 ids travel as strings');

  // Visitor → agent: the first message opens a conversation, routed to Alice (who
  // finds it in the history); the next one is delivered to her.
  await visitor.evaluate(() => sb.say('0', 'hello'));
  const accepted = await visitor.evaluate(() => sb.waitFor('Accepted'));
  const conversation = accepted.fields.conversation;
  await agent.evaluate((c) => sb.waitFor('Assigned', 'conversation', c), conversation);
  await visitor.evaluate((c) => sb.say(c, 'hello from the browser — 你好'), conversation);
  const got = await agent.evaluate((c) => sb.waitFor('Deliver', 'conversation', c), conversation);
  if (got.fields.body !== 'hello from the browser — 你好') fail(`agent got ${JSON.stringify(got)}`);

  // Agent → visitor.
  await agent.evaluate((c) => sb.say(c, 'hi Vera, how can I help?'), conversation);
  const reply = await visitor.evaluate(() => sb.waitFor('Deliver', 'body', 'hi Vera, how can I help?'));
  if (reply.fields.sender !== 'alice') fail(`visitor got ${JSON.stringify(reply)}`);

  // A heartbeat as browsers send it: a Ping message, answered by Pong.
  const rid = await visitor.evaluate(() => sb.ping());
  await visitor.evaluate((r) => sb.waitFor('Pong').then((m) => { if (m.request_id !== r) throw new Error('pong id'); }), rid);

  await agent.screenshot({ path: join(shots, 'agent.png') });
  await visitor.screenshot({ path: join(shots, 'visitor.png') });

  // A reload: the page asks again with the id and key it kept, is the same user, and
  // its next message in conversation 0 lands in the open conversation.
  await visitor.reload();
  const t2 = await visitor.evaluate((e) => sb.visitorToken(e), endpoint);
  if (t2.user !== t.user || t2.visitor_id !== t.visitor_id) fail(`after the reload: ${t2.user} is not ${t.user}`);
  const v2 = await visitor.evaluate(([u, tok]) => sb.connect(u, tok), [ws, t2.token]);
  if (v2.user !== t.user) fail(`visitor Welcome after the reload: ${JSON.stringify(v2)}`);
  await visitor.evaluate(() => sb.say('0', 'back after a reload'));
  const resumed = await visitor.evaluate(() => sb.waitFor('Accepted'));
  if (resumed.fields.conversation !== conversation) {
    fail(`after the reload: conversation ${resumed.fields.conversation}, not ${conversation}`);
  }
  await agent.evaluate((c) => sb.waitFor('Deliver', 'body', 'back after a reload'), conversation);

  // A page of another origin cannot open a connection.
  const other = await browser.newPage();
  await other.goto(`http://127.0.0.1:${evilPort}/`);
  const refused = await other.evaluate((u) => sb.probe(u), ws);
  if (refused.opened) fail('a page of a foreign origin opened a WebSocket');
  // Nor get a visitor token (its preflight is refused).
  if ((await other.evaluate((e) => sb.tryVisitorToken(e), endpoint)) !== 'refused') {
    fail('a page of a foreign origin got a visitor token');
  }
  // And the allowed page still can, after it.
  const again = await visitor.evaluate((u) => sb.probe(u), ws);
  if (!again.opened) fail(`the allowed origin was refused: ${JSON.stringify(again)}`);

  const code = await visitor.evaluate(() => sb.closeCode());
  if (code !== 1000) fail(`close code ${code}`);
  console.log('browser test: an anonymous visitor (token fetched by the page) and an agent talked both ways over ws:// in Chromium; after a reload the visitor resumed the same conversation; a foreign origin was refused');
  status = 0;
} catch (e) {
  console.error('browser test FAILED:', e.message);
} finally {
  await browser?.close();
  daemon.kill('SIGTERM');
  site.close();
  evil.close();
  rmSync(dir, { recursive: true, force: true });
}
process.exit(status);
