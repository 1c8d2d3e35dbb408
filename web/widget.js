/* Switchboard visitor widget. Embed:
 *   <script src="https://HOST/widget.js" data-site="SITE" async></script>
 * Optional: data-lang="en|zh-CN", data-color="#rrggbb", data-position="left|right".
 * One global: window.Switchboard (open, close, toggle, setUser, setLanguage, on, off).
 * Speaks proto-spec/JSON.md over WebSocket; tokens from /web/v1/sites/{site}/visitor-token;
 * settings from /web/v1/sites/{site}/widget. Plain JS, no dependencies; styles in a shadow root. */
(() => {
  'use strict';
  const W = window;
  const prior = W.Switchboard;
  if (prior && prior.version) return;
  const script = document.currentScript || document.querySelector('script[data-site][src*="widget.js"]');
  if (!script) return;
  const BASE = new URL(script.src, location.href).origin;
  const SITE = script.dataset.site || '';
  const WS_URL = BASE.replace(/^http/, 'ws') + '/ws';
  const MAX_BODY = 65536;
  const enc = new TextEncoder();
  const $ = (sel, root) => (root || shadow).querySelector(sel);

  /* ---------- texts ---------- */
  const T = {
    en: {
      open: 'Open chat', close: 'Minimize chat', title: 'Chat with us', online: 'Online', away: 'Away',
      connecting: 'Connecting…', failed: 'Not connected', reconnecting: 'Connection lost. Reconnecting in {s} s…', offlineNet: 'You are offline. Waiting for the network…',
      placeholder: 'Type your message…', send: 'Send', attach: 'Attach a file', end: 'End chat',
      queue: 'You are number {n} in the queue.', wait: 'Expected wait: about {m} min.', waitNow: 'An agent can answer now.',
      joined: '{a} joined the chat.', ended: 'The chat has ended.', typing: '{a} is typing…', agent: 'Agent',
      you: 'You', sending: 'Sending', sent: 'Sent', delivered: 'Delivered', read: 'Read', failed: 'Not sent',
      rateQ: 'How was this chat?', star: '{n} of 5', comment: 'Comment (optional)', rate: 'Send rating', thanks: 'Thank you for your feedback!',
      newChat: 'Start a new chat', prechat: 'Before we start, tell us about you.', start: 'Start chat', name: 'Name', email: 'Email',
      required: 'required', leave: 'Nobody is available right now. Leave a message and we will reply by email.',
      message: 'Message', leaveSend: 'Send message', left: 'Thanks! We got your message and will reply to {e}.',
      tooLong: 'This message is too long (at most 64 KB).', badType: 'Files of type "{t}" cannot be sent.',
      tooBig: 'This file is too big (at most {m} MB).', uploadFail: 'The file could not be sent ({s}).',
      needConv: 'Send a message first, then attach files.', identity: 'We could not verify who you are, so the chat cannot start. Please reload the page or sign in again.',
      tokenFail: 'The chat service refused to connect ({s}).', error: 'Something went wrong ({s}).', rateLimited: 'Too many messages. Please wait a moment.',
      newMsg: 'New message', emailBad: 'Please enter a valid email address.', fill: 'Please fill in: {f}.', file: 'File', image: 'Image',
      greeting: 'Hello! How can we help?', blocked: 'The chat is not available on this page (this site is not allowed, or the chat server cannot be reached). Retrying in {s} s…', closedConv: 'This chat has ended. Start a new chat to write again.', unread: '{n} unread', earlier: 'Show earlier messages',
    },
    'zh-CN': {
      open: '打开在线客服', close: '最小化', title: '在线客服', online: '在线', away: '离开',
      connecting: '正在连接…', failed: '未连接', reconnecting: '连接已断开，{s} 秒后重连…', offlineNet: '网络已断开，等待网络恢复…',
      placeholder: '请输入消息…', send: '发送', attach: '发送文件', end: '结束对话',
      queue: '您正在排队，当前第 {n} 位。', wait: '预计等待约 {m} 分钟。', waitNow: '客服现在可以为您服务。',
      joined: '{a} 已加入对话。', ended: '对话已结束。', typing: '{a} 正在输入…', agent: '客服',
      you: '我', sending: '发送中', sent: '已发送', delivered: '已送达', read: '已读', failed: '发送失败',
      rateQ: '您对本次服务满意吗？', star: '{n} 星（共 5 星）', comment: '留言（可选）', rate: '提交评价', thanks: '感谢您的评价！',
      newChat: '开始新的对话', prechat: '开始之前，请留下您的信息。', start: '开始对话', name: '姓名', email: '邮箱',
      required: '必填', leave: '客服暂时不在线。请留言，我们会通过邮件回复您。',
      message: '留言内容', leaveSend: '提交留言', left: '谢谢！我们已收到您的留言，将回复到 {e}。',
      tooLong: '消息太长（最多 64 KB）。', badType: '不支持发送“{t}”类型的文件。',
      tooBig: '文件太大（最多 {m} MB）。', uploadFail: '文件发送失败（{s}）。',
      needConv: '请先发送一条消息，再发送文件。', identity: '无法验证您的身份，对话无法开始。请刷新页面或重新登录。',
      tokenFail: '客服服务拒绝了连接（{s}）。', error: '出错了（{s}）。', rateLimited: '消息过于频繁，请稍候。',
      newMsg: '新消息', emailBad: '请输入有效的邮箱地址。', fill: '请填写：{f}。', file: '文件', image: '图片',
      greeting: '您好！有什么可以帮您？', blocked: '此页面无法使用在线客服（网站未获授权，或无法连接客服服务器）。{s} 秒后重试…', closedConv: '对话已结束。如需继续咨询，请开始新的对话。', unread: '{n} 条未读', earlier: '查看更早的消息',
    },
  };
  const pickLang = (l) => (/^zh/i.test(l || '') ? 'zh-CN' : /^en/i.test(l || '') ? 'en' : null);
  let lang = pickLang(script.dataset.lang) || (navigator.languages || [navigator.language]).map(pickLang).find(Boolean) || 'en';
  const t = (k, v) => (T[lang][k] || T.en[k] || k).replace(/\{(\w)\}/g, (_, x) => (v && v[x] != null ? v[x] : ''));

  /* ---------- state ---------- */
  const cfg = { color: script.dataset.color || '#1f5fbf', position: script.dataset.position || 'right', pre_chat: [], hours: [], timezone: 'UTC', title: '', greeting: '', attachment_types: [], max_attachment_bytes: 0 };
  const S = {
    open: false, ws: null, wsState: 'idle', token: null, tokenExp: 0, me: '', rid: 0, pending: new Map(),
    conv: null, lastSeq: 0, msgs: new Map(), agent: '', queue: 0, avail: null, closed: false, rated: false,
    unread: 0, lastRead: 0, retry: 0, retryTimer: 0, pingTimer: 0, lastIn: 0, hb: 30000, idle: 90000,
    identity: null, typingSent: 0, typingTimer: 0, peerTyping: 0, notice: '', outbox: [], profile: null, left: null,
  };
  const handlers = {};
  const emit = (ev, data) => (handlers[ev] || []).slice().forEach((fn) => { try { fn(data); } catch (e) { console.error(e); } });
  const store = {
    key: (k) => 'sb:' + SITE + ':' + k,
    get(k) { try { return JSON.parse(localStorage.getItem(this.key(k)) || 'null'); } catch { return null; } },
    set(k, v) { try { v == null ? localStorage.removeItem(this.key(k)) : localStorage.setItem(this.key(k), JSON.stringify(v)); } catch {} },
  };
  const userKey = (k) => (S.me ? S.me + ':' : '') + k;
  const newId = () => {
    const a = crypto.getRandomValues(new Uint32Array(2));
    return ((BigInt((a[0] | 1) >>> 0) << 32n) | BigInt(a[1])).toString();
  };
  const big = (s) => BigInt(s || '0');

  /* ---------- DOM ---------- */
  const h = (tag, attrs, ...kids) => {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'text') el.textContent = v;
      else el.setAttribute(k, v === true ? '' : v);
    }
    for (const c of kids.flat()) if (c != null) el.append(c);
    return el;
  };
  const host = h('div', { id: 'switchboard-widget' });
  const shadow = host.attachShadow({ mode: 'open' });
  const CSS = `
:host{all:initial}
[hidden]{display:none!important}
*{box-sizing:border-box;font-family:system-ui,-apple-system,"Segoe UI","PingFang SC","Microsoft YaHei",sans-serif}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
button,input,textarea{font:inherit;color:inherit}
button{cursor:pointer}
:focus-visible{outline:3px solid #ffbf47;outline-offset:2px}
.launcher{position:fixed;bottom:20px;width:56px;height:56px;border-radius:50%;border:0;background:var(--a);color:#fff;box-shadow:0 4px 14px rgba(0,0,0,.3);z-index:2147483000;display:flex;align-items:center;justify-content:center}
.launcher svg{width:28px;height:28px;fill:currentColor}
.pres{position:absolute;bottom:2px;left:2px;width:12px;height:12px;border-radius:50%;border:2px solid #fff;background:#1e8e3e}.pres.away{background:#80868b}
.badge{position:absolute;top:-4px;right:-4px;min-width:22px;height:22px;padding:0 6px;border-radius:11px;background:#b3261e;color:#fff;font-size:12px;font-weight:700;line-height:22px;text-align:center}
.r{right:20px}.l{left:20px}
.panel{position:fixed;bottom:88px;width:370px;max-width:calc(100vw - 24px);height:min(600px,calc(100vh - 110px));background:#fff;color:#1b1b1b;border-radius:12px;box-shadow:0 8px 30px rgba(0,0,0,.3);z-index:2147483001;display:flex;flex-direction:column;overflow:hidden;font-size:15px}
.panel[hidden]{display:none}
header{background:var(--a);color:#fff;padding:12px 14px;display:flex;align-items:center;gap:8px}
header h2{font-size:16px;margin:0;flex:1;min-width:0;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.st{font-size:13px;display:flex;align-items:center;gap:5px;white-space:nowrap}
.dot{width:9px;height:9px;border-radius:50%;background:#bbb;border:1px solid #fff}
.dot.on{background:#2ecc71}
header button{background:transparent;border:1px solid rgba(255,255,255,.7);color:#fff;border-radius:6px;padding:4px 8px;font-size:13px}
.bar{padding:8px 14px;font-size:13px;background:#fff4ce;color:#3d3000;border-bottom:1px solid #e8d48a}
.bar.err{background:#fde7e9;color:#6e0b0b;border-color:#f1b7bc}
.bar[hidden]{display:none}
.log{flex:1;overflow-y:auto;padding:12px;display:flex;flex-direction:column;gap:8px;background:#f6f7f9;overscroll-behavior:contain}
.m{max-width:82%;padding:8px 11px;border-radius:14px;line-height:1.4;word-wrap:break-word;overflow-wrap:anywhere;white-space:pre-wrap}
.m.them{align-self:flex-start;background:#fff;border:1px solid #d7dbe0;border-bottom-left-radius:4px}
.m.me{align-self:flex-end;background:var(--a);color:#fff;border-bottom-right-radius:4px}
.m .who{display:block;font-size:12px;font-weight:600;color:#4a4a4a;margin-bottom:2px}
.m .meta{display:block;font-size:11px;margin-top:3px;opacity:.9;text-align:right}
.m img{display:block;max-width:100%;max-height:220px;border-radius:8px;margin-top:4px;background:#eee}
.m a{color:inherit}
.earlier{background:none;border:0;text-decoration:underline;cursor:pointer}
.sys{align-self:center;font-size:13px;color:#4a4a4a;text-align:center;padding:2px 8px}
.typing{font-size:13px;color:#4a4a4a;padding:0 14px 4px;min-height:18px;background:#f6f7f9}
form{display:flex;flex-direction:column;gap:8px;padding:12px;background:#fff;border-top:1px solid #e1e4e8}
form.card{border:1px solid #d7dbe0;border-radius:10px;margin:4px 0}
label{font-size:13px;font-weight:600;display:flex;flex-direction:column;gap:3px}
input,textarea{border:1px solid #8a8f98;border-radius:8px;padding:8px;font-size:15px;background:#fff;width:100%}
textarea{resize:none}
.primary{background:var(--a);color:#fff;border:0;border-radius:8px;padding:9px 12px;font-weight:600}
.primary:disabled{opacity:.6;cursor:default}
.composer{flex-direction:row;align-items:flex-end;gap:6px;padding:8px}
.composer textarea{flex:1;min-height:40px;max-height:120px}
.icon{background:transparent;border:1px solid #8a8f98;border-radius:8px;width:40px;height:40px;display:flex;align-items:center;justify-content:center;flex:none;color:#333}
.icon svg{width:20px;height:20px;fill:currentColor}
.stars{display:flex;gap:4px}
.stars button{font-size:26px;line-height:1;background:none;border:0;color:#8a8f98;padding:2px}
.stars button[aria-pressed=true]{color:#b06d00}
.hint{font-size:13px;color:#4a4a4a;margin:0}
@media (max-width:480px){.panel{inset:0;width:100%;max-width:none;height:100%;border-radius:0;bottom:0}}
`;
  const ICON_CHAT = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H8l-5 4V5a2 2 0 0 1 2-2z"/></svg>';
  const ICON_X = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M18.3 5.7 12 12l6.3 6.3-1.4 1.4L10.6 13.4 4.3 19.7 2.9 18.3 9.2 12 2.9 5.7l1.4-1.4 6.3 6.3 6.3-6.3z"/></svg>';
  const ICON_CLIP = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M16.5 6v11.5a4 4 0 0 1-8 0V5a2.5 2.5 0 0 1 5 0v10.5a1 1 0 0 1-2 0V6H10v9.5a2.5 2.5 0 0 0 5 0V5a4 4 0 0 0-8 0v12.5a5.5 5.5 0 0 0 11 0V6z"/></svg>';
  const ICON_SEND = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M2 21 23 12 2 3v7l15 2-15 2z"/></svg>';

  const style = h('style');
  style.textContent = CSS;
  const launcher = h('button', { class: 'launcher', type: 'button', 'aria-expanded': 'false', 'aria-controls': 'sb-panel', onclick: () => toggle() });
  const badge = h('span', { class: 'badge', hidden: true });
  const dot = h('span', { class: 'pres', 'aria-hidden': 'true' });
  const live = h('div', { class: 'sr', role: 'status', 'aria-live': 'polite' });
  const alertRegion = h('div', { class: 'sr', role: 'alert' });
  const panel = h('section', { class: 'panel', id: 'sb-panel', role: 'dialog', hidden: true });
  shadow.append(style, launcher, panel, live, alertRegion);
  const theme = () => {
    const ok = /^#[0-9a-f]{6}$/i.test(cfg.color) ? cfg.color : '#1f5fbf';
    host.style.setProperty('--a', ok);
    const side = cfg.position === 'left' ? 'l' : 'r';
    launcher.className = 'launcher ' + side;
    panel.className = 'panel ' + side;
  };
  const announce = (text) => { live.textContent = ''; setTimeout(() => { live.textContent = text; }, 30); };
  const drawLauncher = () => {
    launcher.innerHTML = S.open ? ICON_X : ICON_CHAT;
    launcher.setAttribute('aria-label', S.open ? t('close') : t('open') + (S.unread ? ' (' + t('unread', { n: S.unread }) + ')' : ''));
    launcher.setAttribute('aria-expanded', String(S.open));
    badge.textContent = S.unread > 99 ? '99+' : String(S.unread);
    badge.hidden = !S.unread || S.open;
    badge.setAttribute('aria-hidden', 'true');
    launcher.append(badge);
    // Online or away: business hours until the first Availability arrives.
    const on = isOnline();
    dot.className = on ? 'pres' : 'pres away';
    dot.hidden = S.open;
    launcher.setAttribute('aria-label', launcher.getAttribute('aria-label') + (S.open ? '' : ' (' + (on ? t('online') : t('away')) + ')'));
    launcher.append(dot);
  };
  theme();
  drawLauncher();
  const mount = () => {
    (document.body || document.documentElement).append(host);
    if (W.performance && performance.mark) performance.mark('switchboard-launcher');
  };
  if (document.body) mount(); else document.addEventListener('DOMContentLoaded', mount, { once: true });

  /* ---------- panel rendering ---------- */
  let logEl, typingEl, barEl, composer, textarea, fileInput;
  // Forms are built once and kept across renders, so what the visitor typed stays.
  let forms = {};
  const form1 = (k, make) => forms[k] || (forms[k] = make());
  // What the visitor is typing survives a rebuild (the site's settings arriving after
  // the panel opened, a language change): the values of every open form's fields and of
  // the composer, and which of them had the focus.
  const takeDrafts = () => {
    const d = { forms: {}, text: textarea ? textarea.value : '', focus: null };
    const active = panel.contains(document.activeElement) ? document.activeElement : null;
    for (const [k, el] of Object.entries(forms)) {
      d.forms[k] = {};
      for (const f of el.querySelectorAll ? el.querySelectorAll('input[name], textarea[name]') : []) {
        d.forms[k][f.name] = f.value;
        if (f === active) d.focus = [k, f.name];
      }
    }
    if (active && active === textarea) d.focus = ['', ''];
    return d;
  };
  const putDrafts = (d) => {
    if (textarea && d.text) textarea.value = d.text;
    for (const [k, values] of Object.entries(d.forms)) {
      const el = forms[k];
      if (!el || !el.querySelector) continue;
      for (const [name, v] of Object.entries(values)) {
        const f = el.querySelector(`[name="${name}"]`);
        if (f && v && !f.value) f.value = v;
      }
    }
    if (!d.focus) return;
    const [k, name] = d.focus;
    const f = k ? forms[k] && forms[k].querySelector && forms[k].querySelector(`[name="${name}"]`) : textarea;
    if (f && !f.closest('[hidden]')) f.focus();
  };
  const buildPanel = () => {
    const drafts = logEl ? takeDrafts() : null;
    forms = {};
    panel.replaceChildren();
    panel.setAttribute('aria-label', cfg.title || t('title'));
    const status = h('span', { class: 'st' }, h('span', { class: 'dot' }), h('span', { class: 'st-t' }));
    const endBtn = h('button', { type: 'button', class: 'end', text: t('end'), onclick: () => endChat() });
    const minBtn = h('button', { type: 'button', 'aria-label': t('close'), text: '—', onclick: () => close() });
    panel.append(h('header', {}, h('h2', { text: cfg.title || t('title') }), status, endBtn, minBtn));
    barEl = h('div', { class: 'bar', hidden: true });
    panel.append(barEl);
    // Not live itself (it is redrawn): the status region announces what is new.
    logEl = h('div', { class: 'log', role: 'log', 'aria-live': 'off', 'aria-label': cfg.title || t('title'), tabindex: '0' });
    typingEl = h('div', { class: 'typing', 'aria-hidden': 'true' });
    panel.append(logEl, typingEl);
    fileInput = h('input', { type: 'file', class: 'sr', tabindex: '-1', 'aria-hidden': 'true', onchange: () => { const f = fileInput.files[0]; fileInput.value = ''; if (f) upload(f); } });
    const attachBtn = h('button', { type: 'button', class: 'icon attach', 'aria-label': t('attach'), onclick: () => { if (!S.conv || S.closed) return showBar(t('needConv'), true); fileInput.click(); } });
    attachBtn.innerHTML = ICON_CLIP;
    textarea = h('textarea', { rows: '1', 'aria-label': t('placeholder'), placeholder: t('placeholder'), maxlength: null,
      onkeydown: (e) => { if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); submit(); } },
      oninput: () => typing() });
    const sendBtn = h('button', { type: 'submit', class: 'icon send', 'aria-label': t('send') });
    sendBtn.innerHTML = ICON_SEND;
    composer = h('form', { class: 'composer', onsubmit: (e) => { e.preventDefault(); submit(); } }, attachBtn, fileInput, textarea, sendBtn);
    panel.append(composer);
    panel.addEventListener('keydown', (e) => { if (e.key === 'Escape') { e.stopPropagation(); close(); } });
    panel.addEventListener('input', () => { if (S.notice && S.notice.err) showBar(''); });
    render();
    if (drafts) putDrafts(drafts);
  };
  const showBar = (text, err) => {
    S.notice = text ? { text, err } : '';
    drawBar(text, err);
  };
  const drawBar = (text, err) => {
    if (!barEl) return;
    // The bar takes room from the log: keep the newest message in view.
    const atBottom = logEl && logEl.scrollHeight - logEl.scrollTop - logEl.clientHeight < 40;
    barEl.hidden = !text;
    barEl.textContent = text || '';
    barEl.classList.toggle('err', !!err);
    if (text && err && barEl.dataset.said !== text) { alertRegion.textContent = ''; setTimeout(() => { alertRegion.textContent = text; }, 30); }
    barEl.dataset.said = text || '';
    if (atBottom) logEl.scrollTop = logEl.scrollHeight;
  };
  function withinHours() {
    if (!cfg.hours || !cfg.hours.length) return true;
    const now = new Date();
    let day, min;
    const off = /^([+-])(\d\d):(\d\d)$/.exec(cfg.timezone || '');
    if (off || !cfg.timezone || cfg.timezone === 'UTC') {
      const shift = off ? (off[1] === '-' ? -1 : 1) * (+off[2] * 60 + +off[3]) : 0;
      const d = new Date(now.getTime() + shift * 60000);
      day = (d.getUTCDay() + 6) % 7;
      min = d.getUTCHours() * 60 + d.getUTCMinutes();
    } else {
      try {
        const p = Object.fromEntries(new Intl.DateTimeFormat('en-US', { timeZone: cfg.timezone, weekday: 'short', hour: 'numeric', minute: 'numeric', hourCycle: 'h23' }).formatToParts(now).map((x) => [x.type, x.value]));
        day = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'].indexOf(p.weekday);
        min = (+p.hour % 24) * 60 + +p.minute;
      } catch { day = (now.getUTCDay() + 6) % 7; min = now.getUTCHours() * 60 + now.getUTCMinutes(); }
    }
    const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
    return cfg.hours.some((line) => {
      const m = /^\s*(\S+)\s+(\d\d):(\d\d)-(\d\d):(\d\d)\s*$/.exec(line);
      if (!m) return false;
      const on = (d) => m[1].split(',').some((part) => {
        const [a, b = a] = part.split('-').map((x) => DAYS.indexOf(x));
        return a >= 0 && b >= a && d >= a && d <= b;
      });
      const from = +m[2] * 60 + +m[3], to = +m[4] * 60 + +m[5];
      // An end before the start crosses midnight into the next day.
      return to > from ? on(day) && min >= from && min < to : (on(day) && min >= from) || (on((day + 6) % 7) && min < to);
    });
  }
  function isOnline() { return (S.avail ? S.avail.online : true) && withinHours(); }
  const fmtTime = (ms) => new Date(Number(ms)).toLocaleTimeString(lang, { hour: '2-digit', minute: '2-digit' });
  const statusText = (m) => {
    if (m.failed) return t('failed');
    if (!m.seq) return t('sending');
    const s = big(m.seq);
    if (S.readUpTo && s <= S.readUpTo) return t('read');
    if (S.deliveredUpTo && s <= S.deliveredUpTo) return t('delivered');
    return t('sent');
  };
  const needPrechat = () => cfg.pre_chat.length && !S.conv && !S.profile && !store.get(userKey('profiled'));
  const render = () => {
    if (!logEl) return;
    const online = isOnline();
    $('.dot', panel).classList.toggle('on', online && S.wsState === 'open');
    $('.st-t', panel).textContent = S.wsState === 'open' ? (online ? t('online') : t('away')) : S.fatal ? t('failed') : t('connecting');
    $('.end', panel).hidden = !S.conv || S.closed;
    if (S.wsState === 'retry') drawBar(t(S.blocked ? 'blocked' : 'reconnecting', { s: Math.max(1, Math.ceil(S.retryIn / 1000)) }), S.blocked);
    else if (S.wsState === 'net') drawBar(t('offlineNet'), false);
    else drawBar(S.notice && S.notice.text, S.notice && S.notice.err);
    const keepBottom = logEl.scrollHeight - logEl.scrollTop - logEl.clientHeight < 40;
    const kids = [];
    if (S.more && S.conv) {
      // Older entries than the first page: paged back on request (History before_seq).
      kids.push(h('button', { type: 'button', class: 'sys earlier', text: t('earlier'), onclick: () => {
        let low = 0n;
        for (const m of S.msgs.values()) if (m.seq && m.conv === S.conv && (!low || big(m.seq) < low)) low = big(m.seq);
        S.more = false;
        request('History', { limit: 100, conversation: S.conv, before_seq: (S.lowSeq || low).toString() }, { history: true, older: true });
      } }));
    } else kids.push(h('div', { class: 'sys', text: cfg.greeting || t('greeting') }));
    const list = [...S.msgs.values()].sort((a, b) => (a.seq && b.seq ? (big(a.seq) < big(b.seq) ? -1 : 1) : a.seq ? -1 : b.seq ? 1 : a.n - b.n));
    for (const m of list) kids.push(m.el || (m.el = drawMsg(m)));
    for (const m of list) if (m.mine && m.meta) m.meta.textContent = fmtTime(m.time || Date.now()) + ' · ' + statusText(m);
    if (S.conv && !S.closed && S.queue > 0) {
      let q = t('queue', { n: S.queue });
      if (S.avail && S.avail.online) q += ' ' + (S.avail.wait > 0 ? t('wait', { m: Math.max(1, Math.round(S.avail.wait / 60000)) }) : t('waitNow'));
      kids.push(h('div', { class: 'sys queue', text: q }));
    }
    let form = null;
    if (S.fatal) form = h('div');
    else if (S.left) kids.push(h('div', { class: 'sys left', text: t('left', { e: S.left }) }));
    else if (S.leaving) kids.push(form = h('div', { class: 'sys', text: t('sending') + '…' }));
    else if (S.closed) {
      form = S.rated ? h('div', { class: 'sys' }, h('p', { class: 'hint thanks', text: t('thanks') })) : form1('rate', rateForm);
      kids.push(form);
      kids.push(h('button', { type: 'button', class: 'primary newchat', text: t('newChat'), onclick: () => newChat() }));
    } else if (!S.conv && !online && S.wsState === 'open') {
      form = form1('leave', leaveForm);
      kids.push(form);
    } else if (needPrechat()) {
      form = form1('prechat', prechatForm);
      kids.push(form);
    }
    // Re-attaching a kept form blurs the field the visitor is typing in (renders come
    // with every status change, each second while reconnecting): give back the focus
    // and the caret, or the next keystrokes go nowhere.
    const root = panel.getRootNode();
    const active = root.activeElement && logEl.contains(root.activeElement) ? root.activeElement : null;
    let caret = null;
    try { caret = active ? [active.selectionStart, active.selectionEnd] : null; } catch {}
    logEl.replaceChildren(...kids);
    if (active && active.isConnected && root.activeElement !== active) {
      active.focus({ preventScroll: true });
      try { if (caret && caret[0] != null) active.setSelectionRange(caret[0], caret[1]); } catch {}
    }
    composer.hidden = !!form || S.closed || !!S.left;
    typingEl.textContent = S.peerTyping > Date.now() ? t('typing', { a: S.agent || t('agent') }) : '';
    if (keepBottom || !S.rendered) logEl.scrollTop = logEl.scrollHeight;
    S.rendered = true;
  };
  const drawMsg = (m) => {
    if (m.sys) return h('div', { class: 'sys', text: m.sys });
    const el = h('div', { class: 'm ' + (m.mine ? 'me' : 'them') });
    if (!m.mine) el.append(h('span', { class: 'who', text: m.who || S.agent || t('agent') }));
    if (m.ct === 5) {
      let a = {};
      try { a = JSON.parse(m.body); } catch {}
      const img = /^image\//.test(a.type || '');
      const link = h('a', { href: '#', text: (img ? t('image') : t('file')) + ': ' + (a.name || '?'), onclick: (e) => { e.preventDefault(); download(a, true); } });
      el.append(link);
      if (img) {
        const pic = h('img', { alt: a.name || t('image'), loading: 'lazy' });
        el.append(pic);
        pic.onload = () => { if (logEl) logEl.scrollTop = logEl.scrollHeight; };
        download(a).then((url) => { if (url) pic.src = url; }, () => {});
      }
    } else el.append(document.createTextNode(m.body));
    if (m.mine) { m.meta = h('span', { class: 'meta' }); el.append(m.meta); } else el.append(h('span', { class: 'meta', text: fmtTime(m.time) }));
    return el;
  };
  const field = (label, input) => h('label', {}, label, input);
  const prechatForm = () => {
    const inputs = cfg.pre_chat.map((f) => {
      const type = f.key === 'email' ? 'email' : 'text';
      const label = (f.label || (f.key === 'name' ? t('name') : f.key === 'email' ? t('email') : f.key)) + (f.required ? ' (' + t('required') + ')' : '');
      const input = h('input', { type, name: f.key, required: f.required, autocomplete: f.key === 'email' ? 'email' : f.key === 'name' ? 'name' : 'off', maxlength: f.key === 'email' ? 254 : f.key === 'name' ? 128 : 512 });
      return { f, input, el: field(label, input) };
    });
    const form = h('form', { class: 'card prechat', novalidate: true, onsubmit: (e) => {
      e.preventDefault();
      const missing = inputs.filter((x) => x.f.required && !x.input.value.trim());
      if (missing.length) { showBar(t('fill', { f: missing.map((x) => x.el.firstChild.textContent).join(', ') }), true); missing[0].input.focus(); return; }
      const bad = inputs.find((x) => x.f.key === 'email' && x.input.value.trim() && !validEmail(x.input.value.trim()));
      if (bad) { showBar(t('emailBad'), true); bad.input.focus(); return; }
      const p = {};
      for (const x of inputs) {
        const v = x.input.value.trim();
        if (!v) continue;
        if (x.f.key === 'name' || x.f.key === 'email') p[x.f.key] = v; else (p.fields = p.fields || {})[x.f.key] = v;
      }
      S.profile = Object.keys(p).length ? p : { fields: {} };
      store.set(userKey('profile'), S.profile);
      delete forms.prechat;
      showBar('');
      render();
      textarea.focus();
    } }, h('p', { class: 'hint', text: t('prechat') }), inputs.map((x) => x.el), h('button', { type: 'submit', class: 'primary', text: t('start') }));
    return form;
  };
  const validEmail = (e) => /^[^\s@<>()[\]\\,;:"]{1,64}@[^\s@<>()[\]\\,;:".]+(\.[^\s@<>()[\]\\,;:".]+)+$/.test(e) && e.length <= 254;
  const leaveForm = () => {
    const email = h('input', { type: 'email', name: 'email', required: true, autocomplete: 'email', maxlength: 254 });
    const msg = h('textarea', { name: 'message', rows: '4', required: true });
    return h('form', { class: 'card leave', novalidate: true, onsubmit: (e) => {
      e.preventDefault();
      const addr = email.value.trim();
      if (!validEmail(addr)) { showBar(t('emailBad'), true); email.focus(); return; }
      const body = msg.value.trim();
      if (!body) { showBar(t('fill', { f: t('message') }), true); msg.focus(); return; }
      if (enc.encode(body).length > MAX_BODY) { showBar(t('tooLong'), true); return; }
      S.profile = Object.assign({}, S.profile, { email: addr });
      store.set(userKey('profile'), S.profile);
      showBar('');
      S.leaving = addr;
      sendText(body);
    } }, h('p', { class: 'hint', text: t('leave') }), field(t('email') + ' (' + t('required') + ')', email), field(t('message') + ' (' + t('required') + ')', msg), h('button', { type: 'submit', class: 'primary', text: t('leaveSend') }));
  };
  const rateForm = () => {
    let score = 0;
    const stars = [1, 2, 3, 4, 5].map((n) => h('button', { type: 'button', 'aria-pressed': 'false', 'aria-label': t('star', { n }), text: '★', onclick: () => {
      score = n;
      stars.forEach((b, i) => b.setAttribute('aria-pressed', String(i < n)));
    } }));
    const comment = h('textarea', { rows: '2', maxlength: 1000 });
    return h('form', { class: 'card rate', onsubmit: (e) => {
      e.preventDefault();
      if (!score) { stars[4].focus(); return; }
      request('Rate', { score, conversation: S.conv, comment: comment.value.trim().slice(0, 1000) });
      S.rated = true;
      store.set(userKey('rated'), S.conv);
      render();
      announce(t('thanks'));
    } }, h('p', { class: 'hint', id: 'sb-rate-q', text: t('rateQ') }), h('div', { class: 'stars', role: 'group', 'aria-labelledby': 'sb-rate-q' }, stars), field(t('comment'), comment), h('button', { type: 'submit', class: 'primary', text: t('rate') }));
  };

  /* ---------- messages ---------- */
  let counter = 0;
  const keyOf = (conv, seq) => conv + ':' + seq;
  const addMsg = (m) => {
    m.n = ++counter;
    if (m.seq) {
      const k = keyOf(m.conv, m.seq);
      if (S.msgs.has(k)) return false;
      if (m.cmid) for (const [k2, o] of S.msgs) if (!o.seq && o.cmid === m.cmid) S.msgs.delete(k2);
      S.msgs.set(k, m);
      if (big(m.seq) > big(S.lastSeq)) { S.lastSeq = m.seq; store.set(userKey('seq'), S.lastSeq); }
    } else S.msgs.set('out:' + m.cmid, m);
    return true;
  };
  const submit = () => {
    const body = textarea.value.trim();
    if (!body) return;
    if (enc.encode(body).length > MAX_BODY) { showBar(t('tooLong'), true); return; }
    if (S.closed) { showBar(t('closedConv'), true); return; }
    textarea.value = '';
    showBar('');
    stopTyping();
    sendText(body);
    if ('Notification' in W && Notification.permission === 'default') try { Notification.requestPermission(); } catch {}
  };
  const sendText = (body) => {
    const m = { mine: true, cmid: newId(), body, ct: 1, conv: S.conv || '0', time: Date.now() };
    addMsg(m);
    S.outbox.push({ cmid: m.cmid, body, conv: m.conv });
    store.set(userKey('out'), S.outbox);
    render();
    flush();
    connect();
  };
  const flush = () => {
    if (S.wsState !== 'open') return;
    for (const o of S.outbox) {
      if (o.rid && S.pending.has(o.rid)) continue;
      if (o.conv === '0' && S.opening && S.opening !== o) continue;
      if (o.conv === '0' && S.conv) o.conv = S.conv;
      if (o.conv === '0') S.opening = o;
      o.rid = request('Send', { content_type: o.ct || 1, conversation: o.conv, client_msg_id: o.cmid, group: '', body: o.body }, { out: o });
    }
  };
  // Where the chat started, for the agent's context card: no query or fragment (they may hold tokens).
  const pageContext = () => {
    if (cfg.context === false) return {};
    const bare = (u) => { try { const x = new URL(u); return (x.origin + x.pathname).slice(0, 512); } catch { return ''; } };
    const ua = navigator.userAgent;
    // The first that matches, in this order (Edge's and Chrome's strings also say Chrome and Safari).
    const first = (table) => { for (const [re, name] of table) { const m = re.exec(ua); if (m) return name + (m[1] ? ' ' + m[1] : ''); } return ''; };
    const b = first([[/Edg\/(\d+)/, 'Edge'], [/Firefox\/(\d+)/, 'Firefox'], [/Chrom(?:e|ium)\/(\d+)/, 'Chrome'], [/Version\/(\d+).*Safari/, 'Safari']]) || 'Other';
    const os = first([[/Android/, 'Android'], [/iPhone|iPad/, 'iOS'], [/Windows/, 'Windows'], [/Mac OS X/, 'macOS'], [/Linux/, 'Linux']]);
    const f = { page_url: bare(location.href), browser: os ? b + ' on ' + os : b };
    if (document.referrer) f.referrer = bare(document.referrer);
    return f;
  };
  const sendProfile = () => {
    if (!S.conv || S.closed || S.wsState !== 'open' || store.get(userKey('profiled')) === S.conv) return;
    const own = S.profile || {};
    const p = Object.assign({}, own, { fields: Object.assign(pageContext(), own.fields || {}) });
    if (!p.fields || !Object.keys(p.fields).length) delete p.fields;
    if (!p.name && !p.email && !p.fields) return;
    request('Send', { content_type: 6, conversation: S.conv, client_msg_id: newId(), group: '', body: JSON.stringify(p) }, { profile: true });
    store.set(userKey('profiled'), S.conv);
  };
  let typingIdle = 0;
  const typing = () => {
    if (!S.conv || S.closed || S.wsState !== 'open') return;
    const now = Date.now();
    if (now - S.typingSent > 2000) { S.typingSent = now; request('Typing', { typing: true, conversation: S.conv, user: '' }); }
    clearTimeout(typingIdle);
    typingIdle = setTimeout(stopTyping, 3000);
  };
  const stopTyping = () => {
    clearTimeout(typingIdle);
    if (S.typingSent && S.conv && S.wsState === 'open') request('Typing', { typing: false, conversation: S.conv, user: '' });
    S.typingSent = 0;
  };
  const endChat = () => { if (S.conv && !S.closed) request('Close', { conversation: S.conv, seq: '0', reason: 'visitor' }); };
  const newChat = () => {
    delete forms.rate;
    S.conv = null; S.closed = false; S.rated = false; S.queue = 0; S.agent = ''; S.lastSeq = 0; S.left = null; S.msgs.clear();
    S.deliveredUpTo = S.readUpTo = 0n;
    store.set(userKey('conv'), null); store.set(userKey('seq'), null); store.set(userKey('left'), null);
    render();
    textarea && textarea.focus();
  };
  const markRead = () => {
    if (!S.open || document.hidden || !S.conv || S.wsState !== 'open') return;
    let top = 0n;
    for (const m of S.msgs.values()) if (!m.mine && m.seq && m.conv === S.conv && big(m.seq) > top) top = big(m.seq);
    if (top > big(S.lastRead)) { S.lastRead = top.toString(); request('Receipt', { status: 2, conversation: S.conv, seq: S.lastRead, user: '' }); }
    S.unread = 0;
    drawLauncher();
  };

  /* ---------- attachments ---------- */
  const blobs = new Map();
  const apiUrl = (conv, rest) => BASE + '/api/v1/conversations/' + conv + '/attachments' + rest;
  const download = async (a, save) => {
    if (!a.id || !S.conv) return null;
    let url = blobs.get(a.id);
    if (!url) {
      const r = await fetch(apiUrl(S.conv, '/' + a.id), { headers: { authorization: 'Bearer ' + S.token } });
      if (!r.ok) return null;
      url = URL.createObjectURL(await r.blob());
      blobs.set(a.id, url);
    }
    if (save) { const l = document.createElement('a'); l.href = url; l.download = a.name || 'file'; l.click(); }
    return url;
  };
  const upload = async (file) => {
    const type = file.type || 'application/octet-stream';
    if (cfg.attachment_types.length && !cfg.attachment_types.includes(type)) return showBar(t('badType', { t: type }), true);
    if (cfg.max_attachment_bytes && file.size > cfg.max_attachment_bytes) return showBar(t('tooBig', { m: Math.floor(cfg.max_attachment_bytes / 1048576) }), true);
    try {
      const r = await fetch(apiUrl(S.conv, '?name=' + encodeURIComponent(file.name || 'file')), {
        method: 'POST', body: file, headers: { authorization: 'Bearer ' + S.token, 'content-type': type, 'idempotency-key': newId() } });
      if (r.status === 415) return showBar(t('badType', { t: type }), true);
      if (r.status === 413) return showBar(t('tooBig', { m: Math.floor((cfg.max_attachment_bytes || 10485760) / 1048576) }), true);
      if (!r.ok) return showBar(t('uploadFail', { s: r.status }), true);
      const a = await r.json();
      addMsg({ mine: true, conv: a.conversation || S.conv, seq: a.seq, time: Number(a.time_ms), ct: 5, body: JSON.stringify({ id: await sha256(file), name: file.name, size: file.size, type }) });
      render();
    } catch (e) { showBar(t('uploadFail', { s: e.message || 'network' }), true); }
  };
  const sha256 = async (file) => [...new Uint8Array(await crypto.subtle.digest('SHA-256', await file.arrayBuffer()))].map((b) => b.toString(16).padStart(2, '0')).join('');

  /* ---------- connection ---------- */
  const getToken = async () => {
    const body = S.identity
      ? { user_id: S.identity.id, user_hash: S.identity.hash, ...(S.identity.name ? { name: S.identity.name } : {}), ...(S.identity.email ? { email: S.identity.email } : {}) }
      : store.get('visitor') || {};
    const r = await fetch(BASE + '/web/v1/sites/' + encodeURIComponent(SITE) + '/visitor-token', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: JSON.stringify(body) });
    if (!r.ok) {
      const err = new Error(String(r.status));
      err.status = r.status;
      err.retryAfter = +(r.headers.get('retry-after') || 0);
      throw err;
    }
    const tk = await r.json();
    if (!S.identity) store.set('visitor', { visitor_id: tk.visitor_id, visitor_key: tk.visitor_key });
    S.token = tk.token;
    S.tokenExp = Number(tk.expires_ms);
    return tk;
  };
  const request = (kind, fields, ctx) => {
    const ws = S.ws;
    if (!ws || ws.readyState !== 1) return 0;
    const rid = ++S.rid;
    const m = { kind, request_id: rid };
    if (fields) m.fields = fields;
    if (ctx || kind === 'Send') S.pending.set(rid, Object.assign({ kind }, ctx));
    ws.send(JSON.stringify(m));
    return rid;
  };
  let connecting = false;
  const connect = async () => {
    if (S.ws || connecting || S.fatal) return;
    if (!navigator.onLine) { S.wsState = 'net'; render(); return; }
    connecting = true;
    S.wsState = S.wsState === 'retry' ? 'retry' : 'connecting';
    render();
    const gen = S.gen;
    try {
      if (!S.token || S.tokenExp - Date.now() < 120000) await getToken();
    } catch (e) {
      connecting = false;
      if (gen !== S.gen) return connect();
      if (e.status === 403 && S.identity) { S.fatal = true; showBar(t('identity'), true); S.wsState = 'idle'; render(); return; }
      if (e.status && e.status !== 429 && e.status < 500) { S.fatal = true; showBar(t('tokenFail', { s: e.status }), true); render(); return; }
      // A fetch refused without a status is a CORS refusal (an origin the site does not
      // allow) or an unreachable server; with the settings unreadable too, say so.
      S.blocked = !e.status && settingsFailed && !S.everOpen;
      return retry(e.retryAfter ? e.retryAfter * 1000 : 0);
    }
    if (gen !== S.gen) { connecting = false; return connect(); } // setUser came meanwhile
    const me = userFromToken(S.token);
    if (me !== S.me) loadUser(me);
    const ws = new WebSocket(WS_URL, ['switchboard.v1.json']);
    S.ws = ws;
    connecting = false;
    ws.onopen = () => {
      S.rid = 0;
      S.pending.clear();
      S.opening = null;
      for (const o of S.outbox) o.rid = 0;
      const resume = S.conv ? [{ conversation: S.conv, last_seq: String(S.lastSeq || '0') }] : [];
      request('Hello', { protocol: 1, token: S.token, client: 'switchboard-widget/1', resume });
    };
    ws.onmessage = (e) => {
      S.lastIn = Date.now();
      let m;
      try { m = JSON.parse(e.data); } catch { return; }
      onMessage(m);
    };
    ws.onclose = (e) => {
      if (S.ws !== ws) return;
      S.ws = null;
      clearInterval(S.pingTimer);
      if (e.code >= 4200 && e.code <= 4203) S.token = null;
      if (e.code === 4206) { S.fatal = true; showBar(t('error', { s: e.code }), true); S.wsState = 'idle'; render(); return; }
      retry(0);
    };
  };
  const userFromToken = (tok) => { try { return JSON.parse(atob(tok.split('.')[1].replace(/-/g, '+').replace(/_/g, '/'))).sub || ''; } catch { return ''; } };
  const loadUser = (me) => {
    // What the visitor did before its token came (the pre-chat form, messages typed)
    // is kept: it belongs to the user the token names.
    const carry = S.me ? { profile: S.profile, out: [] } : { profile: S.profile, out: S.outbox };
    S.me = me;
    S.conv = null;
    if (store.get(userKey('conv'))) setConv(store.get(userKey('conv')));
    S.lastSeq = store.get(userKey('seq')) || 0;
    S.outbox = (store.get(userKey('out')) || []).concat(carry.out);
    store.set(userKey('out'), S.outbox.length ? S.outbox : null);
    S.profile = store.get(userKey('profile')) || carry.profile || null;
    if (S.profile) store.set(userKey('profile'), S.profile);
    S.left = store.get(userKey('left'));
    S.msgs.clear();
    for (const o of S.outbox) addMsg({ mine: true, cmid: o.cmid, body: o.body, ct: 1, conv: o.conv, time: Date.now() });
  };
  const retry = (min) => {
    S.wsState = 'retry';
    const base = Math.min(30000, 1000 * 2 ** Math.min(S.retry, 5));
    S.retry++;
    S.retryIn = Math.max(min || 0, base / 2 + Math.random() * base / 2);
    clearTimeout(S.retryTimer);
    const at = Date.now() + S.retryIn;
    const tick = () => {
      S.retryIn = at - Date.now();
      if (S.retryIn <= 0 || S.wsState !== 'retry') { if (S.wsState === 'retry') connect(); return; }
      render();
      S.retryTimer = setTimeout(tick, Math.min(1000, S.retryIn));
    };
    tick();
  };
  const reconnectNow = () => {
    if (S.wsState === 'retry' || S.wsState === 'net') { clearTimeout(S.retryTimer); S.wsState = 'connecting'; connect(); }
  };
  W.addEventListener('online', reconnectNow);
  W.addEventListener('offline', () => { if (S.ws) S.ws.close(); });

  const onMessage = (m) => {
    const f = m.fields || {};
    const ctx = m.request_id ? S.pending.get(m.request_id) : null;
    switch (m.kind) {
      case 'Welcome': {
        S.wsState = 'open';
        S.retry = 0;
        S.everOpen = true;
        S.blocked = false;
        S.hb = f.heartbeat_ms || 30000;
        S.idle = f.idle_timeout_ms || 90000;
        clearInterval(S.pingTimer);
        S.pingTimer = setInterval(heartbeat, Math.max(1000, S.hb * 0.8));
        if (f.user !== S.me) loadUser(f.user);
        request('Watch', { group: '' });
        if (S.conv) request('History', { limit: 100, conversation: S.conv, before_seq: '0' }, { history: true });
        flush();
        sendProfile();
        scheduleRefresh();
        render();
        emit('ready', { user: f.user });
        break;
      }
      case 'Accepted': {
        if (!ctx) break;
        S.pending.delete(m.request_id);
        if (ctx.profile) break;
        const o = ctx.out;
        if (!o) break;
        S.outbox = S.outbox.filter((x) => x.cmid !== o.cmid);
        store.set(userKey('out'), S.outbox);
        if (S.opening === o) S.opening = null;
        if (!S.conv || S.conv !== f.conversation) setConv(f.conversation);
        const old = S.msgs.get('out:' + o.cmid);
        S.msgs.delete('out:' + o.cmid);
        addMsg(Object.assign(old || { mine: true, body: o.body, ct: 1 }, { el: null, conv: f.conversation, seq: f.seq, time: Number(f.time_ms), cmid: o.cmid }));
        if (S.leaving) { S.left = S.leaving; S.leaving = null; delete forms.leave; store.set(userKey('left'), S.left); }
        sendProfile();
        flush();
        render();
        break;
      }
      case 'Deliver': onDeliver(f); break;
      case 'Receipt':
        if (f.conversation !== S.conv) break;
        if (f.status === 2 && big(f.seq) > big(S.readUpTo)) S.readUpTo = big(f.seq);
        if (big(f.seq) > big(S.deliveredUpTo)) S.deliveredUpTo = big(f.seq);
        store.set(userKey('rcpt'), { c: S.conv, d: String(S.deliveredUpTo || 0), r: String(S.readUpTo || 0) });
        render();
        break;
      case 'Typing':
        if (f.conversation !== S.conv || f.user === S.me) break;
        S.peerTyping = f.typing ? Date.now() + 6000 : 0;
        render();
        if (f.typing) setTimeout(render, 6100);
        break;
      case 'Queued':
        if (!S.conv) setConv(f.conversation);
        if (f.conversation !== S.conv) break;
        S.queue = f.position;
        render();
        announce(t('queue', { n: f.position }));
        break;
      case 'Assigned':
        if (!S.conv) setConv(f.conversation);
        if (f.conversation !== S.conv) break;
        S.queue = 0;
        S.left = null;
        store.set(userKey('left'), null);
        S.agent = f.agent_name || f.agent;
        store.set(userKey('agent'), { c: f.conversation, n: S.agent });
        if (addMsg({ sys: t('joined', { a: S.agent }), conv: f.conversation, seq: f.seq })) announce(t('joined', { a: S.agent }));
        render();
        break;
      case 'Close':
        if (f.conversation !== S.conv) break;
        onClosed(f.seq);
        break;
      case 'Availability': {
        const g = (f.groups || []).find((x) => x.group === cfg.group) || (f.groups || [])[0];
        if (g) S.avail = { online: g.online, wait: Number(g.estimated_wait_ms) };
        render();
        drawLauncher();
        emit('availability', { online: isOnline() });
        break;
      }
      case 'HistoryPage': onHistory(f, ctx); break;
      case 'Error': onError(m, ctx); break;
      case 'Bye': break;
      default: break;
    }
    if (m.request_id && ctx && m.kind !== 'Error' && m.kind !== 'Accepted') S.pending.delete(m.request_id);
  };
  const setConv = (c) => {
    S.conv = c;
    const ag = store.get(userKey('agent'));
    S.agent = ag && ag.c === c ? ag.n : '';
    const r = store.get(userKey('rcpt'));
    S.deliveredUpTo = r && r.c === c ? big(r.d) : 0n;
    S.readUpTo = r && r.c === c ? big(r.r) : 0n;
    S.closed = false;
    S.rated = store.get(userKey('rated')) === c;
    store.set(userKey('conv'), c);
  };
  const onClosed = (seq) => {
    S.closed = true;
    S.queue = 0;
    S.peerTyping = 0;
    if (seq) addMsg({ sys: t('ended'), conv: S.conv, seq, hidden: true });
    S.rated = store.get(userKey('rated')) === S.conv;
    render();
    announce(t('ended'));
    emit('closed', { conversation: S.conv });
  };
  const onDeliver = (f) => {
    if (f.flags & 8) return; // a private note never reaches a visitor; ignore if it did
    if (!S.conv) setConv(f.conversation);
    if (f.conversation !== S.conv) return;
    if (f.content_type === 6) { bump(f.seq); return; }
    const mine = f.sender === S.me;
    const m = { mine, conv: f.conversation, seq: f.seq, time: Number(f.time_ms), ct: f.content_type, body: f.body, cmid: f.client_msg_id, who: f.sender_role === 5 ? '' : f.sender === S.agentId ? S.agent : '' };
    if (!addMsg(m)) return;
    if (mine) S.outbox = S.outbox.filter((x) => x.cmid !== f.client_msg_id);
    if (!mine) {
      S.peerTyping = 0;
      request('Receipt', { status: 1, conversation: f.conversation, seq: f.seq, user: '' });
      if (!(f.flags & 4)) notify(f);
      emit('message', { conversation: f.conversation, seq: f.seq, body: f.body, sender: f.sender, content_type: f.content_type, time_ms: f.time_ms });
      announce((S.agent || t('agent')) + ': ' + (f.content_type === 5 ? t('file') : f.body));
      if (!S.open || document.hidden) S.unread++;
    }
    render();
    drawLauncher();
    markRead();
  };
  const bump = (seq) => { if (big(seq) > big(S.lastSeq)) { S.lastSeq = seq; store.set(userKey('seq'), seq); } };
  const onHistory = (f, ctx) => {
    if (f.conversation !== S.conv) return;
    let closed = false, rated = false;
    const first = (f.entries || [])[0];
    if (!ctx || !ctx.older || f.more) S.more = f.more;
    // The next page goes below this one (a visitor's page may skip notes' numbers).
    if (first) S.lowSeq = big(first.seq);
    else if (f.more && S.lowSeq) S.lowSeq = S.lowSeq > 800n ? S.lowSeq - 800n : 1n;
    for (const e of f.entries || []) {
      bump(e.seq);
      if (e.kind === 16 && e.content_type !== 6) {
        const mine = e.sender === S.me;
        addMsg({ mine, conv: f.conversation, seq: e.seq, time: Number(e.time_ms), ct: e.content_type, body: e.body });
      } else if (e.kind === 33) {
        if (!ctx || !ctx.older) S.agent = e.body || e.sender;
        S.queue = 0;
        addMsg({ sys: t('joined', { a: S.agent }), conv: f.conversation, seq: e.seq });
      } else if (e.kind === 36) { closed = true; addMsg({ sys: t('ended'), conv: f.conversation, seq: e.seq }); }
      else if (e.kind === 37) rated = true;
    }
    if (closed) { S.closed = true; S.rated = rated || store.get(userKey('rated')) === S.conv; }
    render();
    markRead();
  };
  const onError = (m, ctx) => {
    const code = m.status || (m.fields && m.fields.code);
    if (ctx) S.pending.delete(m.request_id);
    if (ctx && ctx.profile) { console.warn('switchboard: profile refused', code); return; }
    if (ctx && ctx.out) {
      const o = ctx.out;
      if (code === 409 || code === 404) {
        // The conversation closed (or is gone) under the message: open a new one with it.
        if (o.conv !== '0' && o.conv === S.conv) { S.closed = true; render(); }
        if (S.opening === o) S.opening = null;
      }
      if (code === 503 || code === 429) { o.rid = 0; showBar(code === 429 ? t('rateLimited') : t('error', { s: code }), true); setTimeout(flush, 3000); return; }
      S.outbox = S.outbox.filter((x) => x !== o);
      store.set(userKey('out'), S.outbox);
      S.leaving = null;
      const msg = S.msgs.get('out:' + o.cmid);
      if (msg) { msg.failed = true; }
      if (S.opening === o) S.opening = null;
      showBar(code === 400 ? t('tooLong') : code === 409 ? t('closedConv') : t('error', { s: code }), true);
      render();
      return;
    }
    if (ctx && ctx.history && (code === 404 || code === 403)) { newChat(); return; }
    if (code === 429) showBar(t('rateLimited'), true);
    else if (code >= 400 && code !== 409) showBar(t('error', { s: code }), true);
  };
  const heartbeat = () => {
    if (!S.ws) return;
    if (Date.now() - S.lastIn > S.hb + S.idle) { S.ws.close(); return; }
    request('Ping');
  };
  let refreshTimer = 0;
  const scheduleRefresh = () => {
    clearTimeout(refreshTimer);
    const wait = Math.max(30000, S.tokenExp - Date.now() - 300000);
    refreshTimer = setTimeout(async () => {
      try { await getToken(); request('Refresh', { token: S.token }); } catch {}
      scheduleRefresh();
    }, Math.min(wait, 2 ** 31 - 1));
  };

  /* ---------- background notifications ---------- */
  let flashTimer = 0, baseTitle = '';
  const notify = (f) => {
    if (!document.hidden && S.open) return;
    beep();
    if (document.hidden) {
      if (!flashTimer) {
        baseTitle = document.title;
        let on = false;
        flashTimer = setInterval(() => { on = !on; document.title = on ? '(' + S.unread + ') ' + t('newMsg') : baseTitle; }, 1000);
      }
      if ('Notification' in W && Notification.permission === 'granted') {
        try { const n = new Notification(cfg.title || t('title'), { body: f.content_type === 5 ? t('file') : f.body.slice(0, 140), tag: 'switchboard-' + SITE }); n.onclick = () => { W.focus(); open(); n.close(); }; } catch {}
      }
    }
  };
  let audio;
  const beep = () => {
    try {
      audio = audio || new (W.AudioContext || W.webkitAudioContext)();
      const o = audio.createOscillator(), g = audio.createGain();
      o.frequency.value = 880;
      g.gain.setValueAtTime(0.08, audio.currentTime);
      g.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + 0.3);
      o.connect(g).connect(audio.destination);
      o.start();
      o.stop(audio.currentTime + 0.3);
    } catch {}
  };
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) {
      if (flashTimer) { clearInterval(flashTimer); flashTimer = 0; document.title = baseTitle; }
      markRead();
      if (S.wsState === 'retry') reconnectNow();
    }
  });
  W.addEventListener('storage', (e) => {
    // Another tab opened or closed the conversation: follow it.
    if (e.key === store.key(userKey('conv')) && S.me) {
      const c = store.get(userKey('conv'));
      if (c && c !== S.conv) { setConv(c); S.msgs.clear(); if (S.wsState === 'open') request('History', { limit: 100, conversation: c, before_seq: '0' }, { history: true }); else connect(); }
      else if (!c && S.conv && S.closed) newChat();
    }
  });

  /* ---------- settings and API ---------- */
  let settingsFailed = false;
  const settings = fetch(BASE + '/web/v1/sites/' + encodeURIComponent(SITE) + '/widget').then((r) => (r.ok ? r.json() : Promise.reject(new Error(String(r.status))))).then((s) => {
    for (const k of ['title', 'greeting', 'pre_chat', 'hours', 'timezone', 'group', 'attachment_types', 'max_attachment_bytes', 'context']) if (s[k] != null) cfg[k] = s[k];
    if (!script.dataset.color && s.color) cfg.color = s.color;
    if (!script.dataset.position && s.position) cfg.position = s.position;
    if (!script.dataset.lang && s.language && s.language !== 'auto') lang = s.language;
    theme();
    drawLauncher();
    if (logEl) buildPanel();
  }, (e) => { settingsFailed = true; console.warn('switchboard: widget settings unavailable', e.message); });
  setInterval(() => { render(); drawLauncher(); }, 60000); // business hours move with the clock

  function open() {
    if (S.open) return;
    S.open = true;
    if (!logEl) buildPanel();
    panel.hidden = false;
    drawLauncher();
    render();
    settings.then(() => { if (!S.me && !connecting && !S.ws) connect(); });
    setTimeout(() => (textarea && !composer.hidden ? textarea : $('input', panel) || logEl).focus(), 0);
    markRead();
    emit('open');
  }
  function close() {
    if (!S.open) return;
    S.open = false;
    panel.hidden = true;
    drawLauncher();
    launcher.focus();
    emit('close');
  }
  function toggle() { S.open ? close() : open(); }
  const api = {
    version: '1',
    open, close, toggle,
    /** Identifies the visitor as the site's user: `hash` is hex HMAC-SHA256(identity secret, id) from the site's back end. */
    setUser(u) {
      if (!u || !u.id || !u.hash) throw new TypeError('setUser({id, hash, name?, email?})');
      S.identity = { id: String(u.id), hash: String(u.hash), name: u.name, email: u.email };
      S.gen = (S.gen || 0) + 1;
      S.token = null;
      S.fatal = false;
      if (S.ws) { const ws = S.ws; S.ws = null; ws.close(1000); S.wsState = 'connecting'; }
      if (u.email || u.name) S.profile = Object.assign({}, S.profile, u.name ? { name: String(u.name) } : {}, u.email ? { email: String(u.email) } : {});
      if (S.open || S.me) connect();
    },
    setLanguage(l) { lang = pickLang(l) || 'en'; drawLauncher(); if (logEl) buildPanel(); },
    on(ev, fn) { (handlers[ev] = handlers[ev] || []).push(fn); return api; },
    off(ev, fn) { handlers[ev] = (handlers[ev] || []).filter((x) => x !== fn); return api; },
    get state() { return { open: S.open, connection: S.wsState, conversation: S.conv, unread: S.unread, online: isOnline(), queue: S.queue, closed: S.closed }; },
  };
  W.Switchboard = api;
  // Calls queued before the script loaded: window.Switchboard = {q: [['setUser', {...}], ['open']]}.
  if (prior && Array.isArray(prior.q)) for (const [name, ...args] of prior.q) if (typeof api[name] === 'function') api[name](...args);
  // A visitor with a conversation open (a reload, a second tab) reconnects at once to get its unread count.
  try { if (Object.keys(localStorage).some((k) => k.startsWith('sb:' + SITE + ':') && k.endsWith(':conv'))) settings.then(() => { if (!S.ws && !connecting) connect(); }); } catch {}
})();
