// The visitor widget in a real browser: a host page of another origin embeds the
// one-line snippet (`<script src=".../widget.js" data-site="site" async>`), and the
// whole story runs against the real daemon: pre-chat, assignment, queue position (a
// second visitor on a 360-px phone), messages both ways with typing and read status,
// a reload mid-chat (history back, nothing lost or doubled), a second tab, an
// attachment with its preview, bad input (oversize message, forbidden file type, a
// forged identity signature), a dropped connection, close and rating, and the offline
// path (agent away → leave a message with an email → stored OFFLINE), business hours
// of another site (away while the agent is online). The agent is a
// small JSON client in a page (the console is not under test here). axe-core checks
// the open widget. Prints the size of widget.js (gzip) and when the launcher showed.
//
//   node tests/browser/widget.mjs [path/to/switchboard]   (default: target/debug/switchboard)
//
// Needs Debian's chromium (CHROMIUM overrides /usr/bin/chromium) and the npm packages
// of tests/browser (`npm ci`). Loopback only; the daemon is stopped on exit.
// Screenshots: target/browser/widget-*.png.
import { spawn, execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { get } from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';
import { configHead, fail, freePort, png, serveHtml, waitForPort } from './lib.mjs';

const root = resolve(new URL('../..', import.meta.url).pathname);
const bin = resolve(process.argv[2] ?? join(root, 'target/debug/switchboard'));
const shots = join(root, 'target/browser');
mkdirSync(shots, { recursive: true });
const axePath = createRequire(import.meta.url).resolve('axe-core/axe.min.js');
const SECRET = 'switchboard-widget-test-secret-0123456789abcdef';
const SITE_SECRET = 'switchboard-widget-site-secret-0123456789abcdef';
const IDENTITY = 'switchboard-widget-identity-secret-0123456789abcdef';
const TIMEOUT = 15000;
const W = '#switchboard-widget';

// The host page: an ordinary page of the site, with the snippet.
const hostPage = (port, siteId) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Acme shop</title>
<style>body{font:16px Georgia,serif;margin:2em;color:#222}main{max-width:40em}</style></head>
<body><main><h1>Acme shop</h1><p>Welcome to our shop. Questions? Use the chat button.</p></main>
<script src="http://127.0.0.1:${port}/widget.js" data-site="${siteId}" async></script>
</body></html>`;

// The agent's page: a minimal JSON client (as in chat.mjs).
const AGENT = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>agent</title></head><body><script>
window.ag = (() => {
  const inbox = []; const waiters = []; let ws; let rid = 0;
  const deliver = (m) => { inbox.push(m); for (const w of [...waiters]) if (w.pred(m)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(m); } };
  const waitFor = (pred, what, ms) => new Promise((resolve, reject) => {
    const hit = inbox.find(pred); if (hit) return resolve(hit);
    waiters.push({ pred, resolve });
    setTimeout(() => reject(new Error('agent timed out waiting for ' + what + '; got ' + JSON.stringify(inbox.slice(-8)))), ms || ${TIMEOUT});
  });
  const send = (kind, fields) => { rid += 1; ws.send(JSON.stringify(fields ? { kind, request_id: rid, fields } : { kind, request_id: rid })); return rid; };
  return {
    connect(url, token) { return new Promise((resolve, reject) => {
      ws = new WebSocket(url, ['switchboard.v1.json']);
      ws.onopen = () => send('Hello', { protocol: 1, token, client: 'widget-test-agent/1', resume: [] });
      ws.onmessage = (e) => { const m = JSON.parse(e.data); deliver(m); if (m.kind === 'Welcome') resolve(m.fields); };
      ws.onclose = (e) => reject(new Error('agent closed: ' + e.code));
    }); },
    send,
    say(conversation, body) { return send('Send', { content_type: 1, conversation, client_msg_id: String(Date.now()), group: '', body }); },
    // The first message matching, by kind and fields.
    wait(kind, fields, ms) { return waitFor((m) => m.kind === kind && Object.entries(fields || {}).every(([k, v]) => m.fields?.[k] === v), kind + ' ' + JSON.stringify(fields || {}), ms); },
    // A History page of a conversation (its entries).
    async history(conversation) { const r = send('History', { limit: 200, conversation, before_seq: '0' }); return (await waitFor((m) => m.request_id === r, 'HistoryPage')).fields; },
  };
})();
</script></body></html>`;

const serve = (port) => serveHtml((req) => (req.url.startsWith('/agent') ? AGENT : hostPage(port, req.url.startsWith('/closed') ? 'closed' : 'site')));

// Bytes on the wire of a GET with Accept-Encoding: gzip (what a browser downloads).
function wireBytes(url) {
  return new Promise((resolveGet, reject) => {
    get(url, { headers: { 'accept-encoding': 'gzip' } }, (res) => {
      let n = 0;
      res.on('data', (c) => { n += c.length; });
      res.on('end', () => resolveGet({ bytes: n, encoding: res.headers['content-encoding'] ?? 'identity' }));
    }).on('error', reject);
  });
}

const dir = mkdtempSync(join(tmpdir(), 'switchboard-widget-'));
const port = await freePort();
const site = await serve(port);
const sitePort = site.address().port;
const evil = await serve(port);
const origin = `http://127.0.0.1:${sitePort}`;
const config = join(dir, 'switchboard.toml');
// Business hours that are surely closed now: one hour, three days from today in UTC+8.
const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
const todayPlus8 = (new Date(Date.now() + 8 * 3600e3).getUTCDay() + 6) % 7;
const closedHours = `${DAYS[(todayPlus8 + 3) % 7]} 10:00-11:00`;
writeFileSync(config, `${configHead({ dir, port, secret: SECRET })}[web]
allowed_origins = ["${origin}"]
# Every visitor of this test comes from 127.0.0.1: more than the default 10 a minute.
visitor_tokens_per_minute = 60
[[web.sites]]
id = "site"
allowed_origins = ["${origin}"]
group = "support"
anonymous = true
secret = "${SITE_SECRET}"
identity_secret = "${IDENTITY}"
[web.sites.widget]
title = "Acme support"
greeting = "Hi! Ask us anything about your order."
color = "#0b6e4f"
pre_chat = [{ key = "name", required = true }, { key = "email" }, { key = "order", label = "Order number" }]
[[web.sites]]
id = "closed"
allowed_origins = ["${origin}"]
group = "support"
anonymous = true
secret = "${SITE_SECRET}"
[web.sites.widget]
color = "#6b2fa3"
position = "left"
language = "zh-CN"
timezone = "+08:00"
hours = ["${closedHours}"]
[log]
level = "warn"
`);
const token = (...args) => execFileSync(bin, ['token', '--config', config, ...args]).toString().trim();
const agentToken = token('--role', 'agent', '--sub', 'alice', '--name', 'Alice', '--groups', 'support', '--max-concurrent', '1');

const daemon = spawn(bin, ['run', '--config', config], { stdio: ['ignore', 'inherit', 'inherit'] });
let browser;
let status = 1;
const step = (what) => console.log('widget test:', what);
// Each page's console, printed when the test fails.
const consoles = [];
const watch = (page, name) => { const lines = []; consoles.push([name, lines]); page.on('console', (m) => lines.push(m.text())); page.on('pageerror', (e) => lines.push('pageerror: ' + e.message)); return page; };
const shot = (page, name) => page.screenshot({ path: join(shots, `widget-${name}.png`) });
// Text of the widget's visible bubbles, in order.
const bubbles = (page) => page.locator(`${W} .m`).evaluateAll((els) => els.map((e) => {
  const text = [...e.childNodes].filter((n) => n.nodeType === 3).map((n) => n.textContent).join('');
  return text || e.textContent;
}));
// Waits until a bubble's text is exactly `text`.
async function bubble(page, text) {
  for (let i = 0; i < TIMEOUT / 100; i++) {
    if ((await bubbles(page)).includes(text)) return;
    await page.waitForTimeout(100);
  }
  fail(`no bubble ${JSON.stringify(text)}`);
}
const bar = (page) => page.locator(`${W} .bar`);
async function axe(page, what) {
  await page.addScriptTag({ path: axePath });
  const r = await page.evaluate(async () => {
    const res = await window.axe.run(document, { resultTypes: ['violations'] });
    return res.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length, help: v.help }));
  });
  const bad = r.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  if (bad.length) fail(`axe (${what}): ${JSON.stringify(bad)}`);
  step(`axe-core on ${what}: no serious or critical violation (${r.length} minor)`);
}
async function openWidget(page) {
  await page.waitForFunction(() => window.Switchboard && window.Switchboard.version);
  await page.locator(`${W} .launcher`).click();
  await page.locator(`${W} .panel`).waitFor({ state: 'visible' });
}
async function expectText(locator, re, what) {
  await locator.filter({ hasText: re }).first().waitFor({ timeout: TIMEOUT }).catch(() => fail(`${what}: no ${re}`));
}

try {
  await waitForPort(port);
  const size = await wireBytes(`http://127.0.0.1:${port}/widget.js`);
  if (size.encoding !== 'gzip') fail(`widget.js was not served gzipped: ${size.encoding}`);
  step(`widget.js on the wire: ${size.bytes} bytes gzipped (the widget's only asset; budget 30720)`);
  if (size.bytes > 30720) fail(`widget.js is ${size.bytes} bytes gzipped, over the 30 KB budget`);

  browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: ['--no-sandbox'] });
  const wsUrl = `ws://127.0.0.1:${port}/ws`;
  const agentCtx = await browser.newContext();
  const agent = await agentCtx.newPage();
  await agent.goto(`${origin}/agent.html`);
  await agent.evaluate(([u, t]) => ag.connect(u, t), [wsUrl, agentToken]);

  // --- Visitor A: the launcher, its timing, the pre-chat form.
  const ctxA = await browser.newContext({ viewport: { width: 1100, height: 760 }, locale: 'en-US' });
  const a = watch(await ctxA.newPage(), 'A');
  if (process.env.WIDGET_DEBUG) {
    a.on('console', (m) => console.log('page:', m.text()));
    a.on('websocket', (ws) => { ws.on('framesent', (f) => console.log('A >', f.payload.slice(0, 300))); ws.on('framereceived', (f) => console.log('A <', f.payload.slice(0, 300))); });
  }
  await a.goto(`${origin}/`);
  await a.locator(`${W} .launcher`).waitFor({ state: 'visible' });
  const timing = await a.evaluate(() => ({
    launcher: performance.getEntriesByName('switchboard-launcher')[0]?.startTime,
    dcl: performance.getEntriesByType('navigation')[0]?.domContentLoadedEventEnd,
  }));
  step(`launcher visible ${timing.launcher?.toFixed(0)} ms after navigation start (DOMContentLoaded at ${timing.dcl?.toFixed(0)} ms; the budget is 300 ms)`);
  const globals = await a.evaluate(() => Object.keys(window).filter((k) => /switchboard|^sb/i.test(k)));
  if (globals.join() !== 'Switchboard') fail(`globals: ${globals}`);
  await shot(a, 'launcher');

  await openWidget(a);
  await a.locator(`${W} form.prechat`).waitFor({ timeout: TIMEOUT });
  await expectText(a.locator(`${W} .st`), /Online/, 'availability');
  await shot(a, 'prechat');
  await axe(a, 'the pre-chat form');
  // Required field left empty: a clear message.
  await a.locator(`${W} form.prechat button[type=submit]`).click();
  await expectText(bar(a), /Please fill in/, 'the pre-chat check');
  await a.locator(`${W} input[name=name]`).fill('Vera');
  await a.locator(`${W} input[name=email]`).fill('vera@example.com');
  await a.locator(`${W} input[name=order]`).fill('A-1042');
  await a.locator(`${W} form.prechat button[type=submit]`).click();
  const textarea = (p) => p.locator(`${W} .composer textarea`);
  await textarea(a).fill('Hello, where is my order?');
  await textarea(a).press('Enter');
  const assigned = await agent.evaluate(() => ag.wait('Assigned'));
  const conv = assigned.fields.conversation;
  await expectText(a.locator(`${W} .sys`), /Alice joined/, 'assignment');
  step(`pre-chat done, conversation ${conv} assigned to Alice`);

  // The profile from the pre-chat form reaches the agent (PROFILE, content type 6).
  // (Live as a Deliver when it is stored after the assignment, else in the History an
  // agent reads on Assigned: either way it is in the transcript.)
  const profileEntry = async (x) => {
    for (let i = 0; i < 100; i++) {
      const h = await agent.evaluate((y) => ag.history(y), x);
      const e = h.entries.find((en) => en.kind === 16 && en.content_type === 6);
      if (e) return e;
      await agent.waitForTimeout(100);
    }
    return null;
  };
  const profile = (await profileEntry(conv))?.body ?? fail('no PROFILE in the transcript');
  const p = JSON.parse(profile);
  if (p.name !== 'Vera' || p.email !== 'vera@example.com' || p.fields?.order !== 'A-1042') fail(`profile: ${profile}`);
  step(`the visitor's profile from the pre-chat form is in the transcript: ${profile}`);

  // Typing both ways, messages both ways, read status.
  await agent.evaluate((c) => ag.send('Typing', { typing: true, conversation: c, user: '' }), conv);
  await expectText(a.locator(`${W} .typing`), /Alice is typing/, 'agent typing');
  await shot(a, 'typing');
  await agent.evaluate((c) => ag.say(c, 'Hi Vera! Let me check order A-1042.'), conv);
  await expectText(a.locator(`${W} .m.them`), /Let me check order A-1042/, 'the agent\'s reply');
  await agent.evaluate((c) => ag.wait('Receipt', { conversation: c, status: 2 }), conv);
  step('the visitor read the reply (Receipt 2 reached the agent)');
  await textarea(a).pressSequentially('It was due yesterday', { delay: 20 });
  await agent.evaluate((c) => ag.wait('Typing', { conversation: c, typing: true }), conv);
  await textarea(a).press('Enter');
  const second = await agent.evaluate((c) => ag.wait('Deliver', { conversation: c, body: 'It was due yesterday' }), conv);
  await agent.evaluate(([c, s]) => ag.send('Receipt', { status: 2, conversation: c, seq: s, user: '' }), [conv, second.fields.seq]);
  await expectText(a.locator(`${W} .m.me .meta`), /Read/, 'read status');
  await shot(a, 'chat');
  step('typing both ways, messages both ways, "Read" shown under the visitor\'s message');

  // Keyboard: Escape closes and gives the focus back to the launcher; the unread
  // badge counts what came meanwhile; a tab in the background flashes its title.
  await textarea(a).press('Escape');
  await a.locator(`${W} .panel`).waitFor({ state: 'hidden' });
  const focused = await a.evaluate((sel) => document.querySelector(sel).shadowRoot.activeElement?.className, W);
  if (!/launcher/.test(focused)) fail(`focus after Escape: ${focused}`);
  await agent.evaluate((x) => ag.say(x, 'One more thing: can you confirm your address?'), conv);
  await expectText(a.locator(`${W} .badge`), /^1$/, 'the unread badge');
  await shot(a, 'badge');
  await a.keyboard.press('Enter');
  await a.locator(`${W} .panel`).waitFor({ state: 'visible' });
  await a.locator(`${W} .badge`).waitFor({ state: 'hidden' });
  await a.evaluate(() => {
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
    document.dispatchEvent(new Event('visibilitychange'));
  });
  await agent.evaluate((x) => ag.say(x, 'Still with me?'), conv);
  await a.waitForFunction(() => /New message/.test(document.title), null, { timeout: TIMEOUT });
  await a.evaluate(() => {
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => false });
    document.dispatchEvent(new Event('visibilitychange'));
  });
  await a.waitForFunction(() => document.title === 'Acme shop', null, { timeout: TIMEOUT });
  step('Escape closes (focus back on the launcher), the unread badge counts, a background tab flashes its title');

  // --- Visitor B on a 360-px phone: waits in the queue (Alice serves one at a time).
  const ctxB = await browser.newContext({ viewport: { width: 360, height: 740 }, isMobile: true, hasTouch: true, locale: 'zh-CN' });
  const b = watch(await ctxB.newPage(), 'B');
  // A slow token: the visitor fills the pre-chat form and writes before the widget
  // knows who it is; nothing of it may be lost.
  await b.route('**/visitor-token', async (route) => { await new Promise((r) => setTimeout(r, 1500)); await route.continue(); });
  await b.goto(`${origin}/`);
  await openWidget(b);
  await b.locator(`${W} form.prechat`).waitFor({ timeout: TIMEOUT });
  await b.locator(`${W} input[name=name]`).fill('王芳');
  await b.locator(`${W} form.prechat button[type=submit]`).click();
  await textarea(b).fill('你好，我想咨询退货。');
  await textarea(b).press('Enter');
  await expectText(b.locator(`${W} .queue`), /1/, 'queue position');
  const overflow = await b.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 0) fail(`the phone page scrolls sideways by ${overflow} px`);
  const panelBox = await b.locator(`${W} .panel`).boundingBox();
  if (panelBox.width > 360 || panelBox.x < 0) fail(`panel on the phone: ${JSON.stringify(panelBox)}`);
  await shot(b, 'phone-queue');
  await axe(b, 'the widget on a 360-px phone (zh-CN)');
  await b.unroute('**/visitor-token');
  step('a second visitor on a 360-px phone (its token slow to come) sees its queue position (zh-CN chosen from the browser)');

  // --- Outside the business hours of another site: away, leave a message (Alice is
  // online); that site's colour, left position and language (zh-CN) from its settings.
  const ctxE = await browser.newContext({ viewport: { width: 1100, height: 760 }, locale: 'en-US' });
  const e = await ctxE.newPage();
  await e.goto(`${origin}/closed`);
  await openWidget(e);
  await e.locator(`${W} form.leave`).waitFor({ timeout: TIMEOUT });
  await expectText(e.locator(`${W} .st`), /离开/, 'away outside business hours');
  const lbox = await e.locator(`${W} .launcher`).boundingBox();
  if (lbox.x > 100) fail(`the launcher is not on the left: ${JSON.stringify(lbox)}`);
  await shot(e, 'closed-hours');
  await ctxE.close();
  step(`outside business hours (${closedHours} UTC+8) the widget is away and offers to leave a message, in the site's language, colour and corner`);

  // --- Reload mid-chat: the history comes back, nothing lost or doubled.
  const before = await bubbles(a);
  await a.reload();
  await openWidget(a);
  await expectText(a.locator(`${W} .m.them`), /Let me check order A-1042/, 'history after the reload');
  await a.waitForTimeout(500);
  const after = await bubbles(a);
  if (JSON.stringify(after) !== JSON.stringify(before)) fail(`after the reload: ${JSON.stringify(after)} != ${JSON.stringify(before)}`);
  await agent.evaluate((c) => ag.say(c, 'Found it: it ships today.'), conv);
  await expectText(a.locator(`${W} .m.them`), /ships today/, 'a message after the reload');
  await textarea(a).fill('Great, thanks!');
  await textarea(a).press('Enter');
  await agent.evaluate((c) => ag.wait('Deliver', { conversation: c, body: 'Great, thanks!' }), conv);
  const texts = await bubbles(a);
  const dupes = texts.filter((x, i) => texts.indexOf(x) !== i);
  if (dupes.length) fail(`doubled after the reload: ${dupes}`);
  await shot(a, 'reload');
  step(`reload: ${before.length} bubbles back as they were, new messages both ways in the same conversation`);

  // A second tab of the same visitor shows the same conversation.
  const a2 = await ctxA.newPage();
  await a2.goto(`${origin}/`);
  await openWidget(a2);
  await expectText(a2.locator(`${W} .m.me`), /Great, thanks!/, 'the second tab');
  await a2.close();
  step('a second tab shows the same conversation');

  // The site's settings come late (a slow network): the visitor writes in the composer
  // meanwhile; when they arrive the panel is redrawn with the pre-chat form, and what
  // was written is still there (and keeps the focus) once the form is sent.
  {
    const ctxS = await browser.newContext({ viewport: { width: 1100, height: 760 }, locale: 'en-US' });
    const s = watch(await ctxS.newPage(), 'S');
    let release;
    const gate = new Promise((r) => { release = r; });
    await s.route('**/web/v1/sites/*/widget', async (route) => { await gate; await route.continue(); });
    await s.goto(`${origin}/`);
    await s.waitForFunction(() => window.Switchboard && window.Switchboard.version, null, { timeout: TIMEOUT });
    await s.locator(`${W} .launcher`).click();
    await textarea(s).fill('typed before the settings came');
    release();
    await s.locator(`${W} form.prechat`).waitFor({ timeout: TIMEOUT }).catch((e) => fail(`late settings: no pre-chat form: ${e.message}`));
    await s.locator(`${W} input[name=name]`).fill('Sam');
    await s.locator(`${W} form.prechat button[type=submit]`).click();
    await s.locator(`${W} form.prechat`).waitFor({ state: 'detached', timeout: TIMEOUT }).catch(async (e) => {
      await shot(s, 'late-settings-stuck');
      fail(`late settings: the pre-chat form stayed after it was sent: ${e.message}`);
    });
    const kept = await textarea(s).inputValue();
    if (kept !== 'typed before the settings came') fail(`the composer lost what was typed before the settings came: ${JSON.stringify(kept)}`);
    await ctxS.close();
    step('settings arriving late redraw the panel without losing what the visitor typed');
  }

  // --- An attachment with its preview; bad input.
  await a.locator(`${W} input[type=file]`).setInputFiles({ name: 'parcel.png', mimeType: 'image/png', buffer: png(48) });
  const file = await agent.evaluate((c) => ag.wait('Deliver', { conversation: c, content_type: 5 }), conv);
  if (JSON.parse(file.fields.body).name !== 'parcel.png') fail(`attachment: ${file.fields.body}`);
  await a.locator(`${W} .m.me img[src^="blob:"]`).waitFor({ timeout: TIMEOUT });
  await a.waitForFunction((sel) => {
    const img = document.querySelector('#switchboard-widget').shadowRoot.querySelector('.m.me img');
    return img && img.complete && img.naturalWidth === 48;
  }, W);
  await shot(a, 'attachment');
  step('an image upload reached the agent and shows as a preview');

  await a.locator(`${W} input[type=file]`).setInputFiles({ name: 'setup.exe', mimeType: 'application/x-msdownload', buffer: Buffer.from('MZ') });
  await expectText(bar(a), /cannot be sent/, 'a forbidden file type');
  await shot(a, 'bad-file');
  await textarea(a).fill('x'.repeat(70000));
  await textarea(a).press('Enter');
  await expectText(bar(a), /too long/, 'an oversize message');
  await shot(a, 'too-long');
  await textarea(a).fill('');
  // Nothing of either was stored.
  const stored = await agent.evaluate((x) => ag.history(x), conv);
  if (stored.entries.some((en) => en.body.length > 65536 || en.body.includes('setup.exe'))) fail('a refused message or file was stored');
  step('a forbidden file type and an oversize message each show a clear message; nothing of them is in the transcript');

  // --- The connection drops: a visible state, then back by itself.
  await ctxA.setOffline(true);
  await expectText(bar(a), /offline|Reconnecting/, 'the dropped connection');
  await shot(a, 'offline-network');
  await ctxA.setOffline(false);
  await expectText(a.locator(`${W} .st`), /Online/, 'the reconnect');
  await agent.evaluate((c) => ag.say(c, 'Are you still there?'), conv);
  await expectText(a.locator(`${W} .m.them`), /still there/, 'a message after the reconnect');
  step('offline: the widget said so and reconnected by itself');

  // A long conversation: after a reload the newest page comes back, older ones on request.
  await agent.evaluate(async (x) => { for (let i = 1; i <= 110; i++) ag.send('Send', { content_type: 1, conversation: x, client_msg_id: String(9e6 + i), group: '', body: 'bulk ' + i }); await ag.wait('Deliver', { conversation: x, body: 'bulk 110' }).catch(() => {}); }, conv);
  await bubble(a, 'bulk 110');
  await a.reload();
  await openWidget(a);
  await bubble(a, 'bulk 110');
  const shown = (await bubbles(a)).filter((x) => /bulk/.test(x)).length;
  await a.locator(`${W} .log`).evaluate((el) => { el.scrollTop = 0; });
  await shot(a, 'history-paging');
  await a.locator(`${W} .earlier`).click();
  await bubble(a, 'bulk 1');
  const all = (await bubbles(a)).filter((x) => /bulk/.test(x));
  if (all.length !== 110 || new Set(all).size !== 110) fail(`paging back: ${all.length} bulk messages, ${new Set(all).size} distinct`);
  step(`110 more messages: ${shown} came back with the reload, the rest with "Show earlier messages", none twice`);

  // --- Close and rating; B then gets Alice.
  await agent.evaluate((c) => ag.send('Close', { conversation: c, seq: '0', reason: 'resolved' }), conv);
  await a.locator(`${W} form.rate`).waitFor({ timeout: TIMEOUT });
  await a.locator(`${W} .stars button`).nth(3).click();
  await a.locator(`${W} form.rate textarea`).fill('Quick and friendly');
  await shot(a, 'rating');
  await axe(a, 'the rating form');
  await a.locator(`${W} form.rate button[type=submit]`).click();
  await expectText(a.locator(`${W} .thanks`), /Thank you/, 'the rating');
  let rated = null;
  for (let i = 0; i < 50 && !rated; i++) {
    const h = await agent.evaluate((c) => ag.history(c), conv);
    rated = h.entries.find((e) => e.kind === 37);
    if (!rated) await a.waitForTimeout(100);
  }
  if (!rated || rated.content_type !== 4 || rated.body !== 'Quick and friendly') fail(`rating: ${JSON.stringify(rated)}`);
  step('closed by the agent; the visitor rated 4 of 5 with a comment (stored)');
  await expectText(b.locator(`${W} .sys`), /Alice/, 'B assigned after the close');
  await shot(b, 'phone-assigned');

  // --- Offline: Alice goes away; a new visitor leaves a message with an email.
  await agent.evaluate(() => ag.send('Presence', { status: 2, user: '' }));
  const ctxC = await browser.newContext({ viewport: { width: 1100, height: 760 }, locale: 'en-GB' });
  const c = await ctxC.newPage();
  await c.goto(`${origin}/`);
  await openWidget(c);
  await c.locator(`${W} form.leave`).waitFor({ timeout: TIMEOUT });
  await expectText(c.locator(`${W} .st`), /Away/, 'away');
  await c.locator(`${W} form.leave input[name=email]`).fill('not-an-email');
  await c.locator(`${W} form.leave textarea`).fill('Please call me back about a refund.');
  await c.locator(`${W} form.leave button[type=submit]`).click();
  await expectText(bar(c), /valid email/, 'a bad email');
  await c.locator(`${W} form.leave input[name=email]`).fill('sam@example.com');
  await shot(c, 'leave-message');
  await axe(c, 'the leave-a-message form');
  await c.locator(`${W} form.leave button[type=submit]`).click();
  await expectText(c.locator(`${W} .left`), /sam@example.com/, 'the message left');
  await shot(c, 'left');
  const queued = await agent.evaluate(() => ag.wait('Queued', { position: 1 }).then(() => null).catch(() => null));
  void queued;
  const offlineConv = await c.evaluate(() => window.Switchboard.state.conversation);
  const hist = await agent.evaluate((x) => ag.history(x), offlineConv);
  const left = hist.entries.find((e) => e.kind === 16 && e.body === 'Please call me back about a refund.');
  if (!left || !(left.flags & 16)) fail(`the message left is not OFFLINE: ${JSON.stringify(hist.entries)}`);
  const email = await profileEntry(offlineConv);
  if (!email || JSON.parse(email.body).email !== 'sam@example.com') fail(`no PROFILE with the email: ${JSON.stringify(email)}`);
  step(`offline: the message left is stored with OFFLINE (flags ${left.flags}), the email with it as the visitor's profile: ${email.body}`);

  // --- A forged identity signature: a clear message, no chat.
  const ctxD = await browser.newContext({ locale: 'en-US' });
  const d = await ctxD.newPage();
  await d.goto(`${origin}/`);
  await d.waitForFunction(() => window.Switchboard && window.Switchboard.version);
  const good = createHmac('sha256', IDENTITY).update('user-42').digest('hex');
  await d.evaluate((h) => window.Switchboard.setUser({ id: 'user-42', hash: h.replace(/^./, (x) => (x === '0' ? '1' : '0')) }), good);
  await openWidget(d);
  await expectText(bar(d), /could not verify/, 'a forged identity');
  await shot(d, 'forged-identity');
  // The right signature gets in.
  await d.evaluate((h) => window.Switchboard.setUser({ id: 'user-42', hash: h, name: 'Kim' }), good);
  await d.waitForFunction(() => window.Switchboard.state.connection === 'open', null, { timeout: TIMEOUT });
  step('a forged identity signature is refused with a clear message; the right one connects');

  // --- A page of an origin the site does not list: a clear message, nothing stored.
  const evilPage = await ctxD.newPage();
  await evilPage.goto(`http://127.0.0.1:${evil.address().port}/`);
  await openWidget(evilPage);
  await expectText(bar(evilPage), /not available on this page/, 'a foreign origin');
  await shot(evilPage, 'foreign-origin');
  step('a page of a foreign origin shows that the chat is not available there');

  console.log('widget test: passed');
  status = 0;
} catch (e) {
  console.error('widget test FAILED:', e.message);
  for (const [name, lines] of consoles) console.error(`console of ${name}:`, lines.slice(-20).join(' | '));
  // What each page showed when it failed.
  let i = 0;
  for (const ctx of browser?.contexts() ?? []) {
    for (const p of ctx.pages()) await p.screenshot({ path: join(shots, `widget-failure-${++i}.png`) }).catch(() => {});
  }
} finally {
  await browser?.close();
  daemon.kill('SIGTERM');
  site.close();
  evil.close();
  rmSync(dir, { recursive: true, force: true });
}
process.exit(status);
