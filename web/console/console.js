// Switchboard agent console: plain JavaScript over the JSON protocol
// (proto-spec/JSON.md; routing in PROTOCOL.md section 13). No framework, no build step.
'use strict';
(() => {
  const $ = (sel, root = document) => root.querySelector(sel);
  const ROLE = { VISITOR: 1, AGENT: 2, BOT: 3, ADMIN: 4, SYSTEM: 5 };
  const FLAG = { AUTO: 1, FLAGGED: 2, REPLAY: 4, PRIVATE: 8, OFFLINE: 16, AWAY: 32 };
  const CT = { TEXT: 1, ATTACHMENT: 5, PROFILE: 6 };
  const STORE = 'sb-console';
  const MAX_BACKOFF = 30000;
  const PAGE = 50;

  const s = {
    token: null, expiresMs: 0, viaLogin: false, me: null, ws: null, rid: 0,
    pending: new Map(), convs: new Map(), panes: [], focused: null, presence: 1,
    backoff: 1000, retryTimer: 0, refreshTimer: 0, pingTimer: 0, loggedOut: true,
    notify: false, closed: [], avail: new Map(), clientSeq: 0, superTimer: 0, superRead: null,
  };
  // For the browser test's figures: counts of what was rendered.
  window.sbConsole = { state: s, rendered: 0 };

  // ---- small helpers ----
  const el = (tag, attrs = {}, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === 'class') e.className = v; else if (k === 'text') e.textContent = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
    }
    for (const k of kids) if (k != null) e.append(k);
    return e;
  };
  const big = (x) => { try { return BigInt(x); } catch { return 0n; } };
  const time = (ms) => new Date(Number(ms)).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  const nextMsgId = () => String(BigInt(Date.now()) * 1000n + BigInt(++s.clientSeq % 1000));
  let toastBox = null;
  function toast(text) {
    if (!toastBox) {
      toastBox = el('div', { class: 'visually-hidden', role: 'alert', 'aria-live': 'assertive' });
      document.body.append(toastBox);
    }
    toastBox.textContent = text;
    setConnNote(text);
  }
  function setConnNote(text) { const c = $('#conn'); c.title = text; }
  function setConn(state, text) { const c = $('#conn'); c.dataset.state = state; c.textContent = text; }

  // ---- the WebSocket session ----
  function send(kind, fields) {
    if (!s.ws || s.ws.readyState !== WebSocket.OPEN) return 0;
    s.rid = (s.rid % 0xfffffff0) + 1;
    const msg = { kind, request_id: s.rid };
    if (fields) msg.fields = fields;
    s.ws.send(JSON.stringify(msg));
    return s.rid;
  }
  // A request answered with a reply of the same request id (HistoryPage, Suggestions,
  // ConversationList, Accepted, Pong); rejected by an Error with that id.
  function request(kind, fields, timeout = 15000) {
    return new Promise((resolve, reject) => {
      const rid = send(kind, fields);
      if (!rid) return reject(new Error('not connected'));
      const t = setTimeout(() => { s.pending.delete(rid); reject(new Error(kind + ' timed out')); }, timeout);
      s.pending.set(rid, { resolve: (m) => { clearTimeout(t); resolve(m); }, reject: (e) => { clearTimeout(t); reject(e); } });
    });
  }

  function cursors() {
    const out = [];
    for (const c of s.convs.values()) {
      if (c.state === 'assigned' && c.agent === s.me?.user && c.lastSeq > 0n) {
        out.push({ conversation: c.id, last_seq: String(c.lastSeq) });
      }
    }
    return out.slice(0, 256);
  }

  function connect() {
    clearTimeout(s.retryTimer);
    if (s.ws) return;
    setConn('connecting', 'Connecting…');
    const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/';
    const ws = new WebSocket(url, ['switchboard.v1.json']);
    s.ws = ws;
    let welcomed = false;
    ws.onopen = () => {
      ws.send(JSON.stringify({ kind: 'Hello', request_id: 0,
        fields: { protocol: 1, token: s.token, client: 'switchboard-console/1', resume: cursors() } }));
    };
    ws.onmessage = (e) => {
      let m;
      try { m = JSON.parse(e.data); } catch { return; }
      if (m.kind === 'Welcome') welcomed = true;
      if (m.kind === 'Error' && !welcomed && m.status >= 200 && m.status < 300) {
        s.authFailed = m.fields?.message || ('error ' + m.status);
      }
      onMessage(m);
    };
    ws.onclose = (e) => {
      if (s.ws !== ws) return;
      s.ws = null;
      clearInterval(s.pingTimer);
      for (const p of s.pending.values()) p.reject(new Error('connection lost'));
      s.pending.clear();
      if (s.loggedOut) return;
      if (s.authFailed) {
        const why = s.authFailed;
        s.authFailed = null;
        // An expired console token may still be refreshed; otherwise log in again.
        if (s.viaLogin) return refreshToken(true).then((ok) => ok ? connect() : logout('Your session ended: ' + why));
        return logout('The token was refused: ' + why);
      }
      scheduleReconnect(e.code);
    };
  }

  function scheduleReconnect(code) {
    const wait = Math.round(Math.min(MAX_BACKOFF, s.backoff) * (0.5 + Math.random() / 2));
    s.backoff = Math.min(MAX_BACKOFF, s.backoff * 2);
    let left = Math.ceil(wait / 1000);
    const tick = () => {
      setConn('down', `Connection lost${code ? ' (' + code + ')' : ''} — reconnecting in ${left} s`);
      left -= 1;
    };
    tick();
    const iv = setInterval(tick, 1000);
    s.retryTimer = setTimeout(() => { clearInterval(iv); connect(); }, wait);
  }

  // ---- incoming messages ----
  function conv(id) {
    let c = s.convs.get(id);
    if (!c) {
      c = { id, state: 'unknown', group: '', visitor: '', visitorName: '', agent: '', lastSeq: 0n,
        firstSeq: null, more: true, unread: 0, entries: new Set(), profile: null, queuedPos: 0,
        updated: Date.now(), readUpTo: 0n, pane: null, note: '', historyLoaded: false, profiles: new Map() };
      s.convs.set(id, c);
    }
    return c;
  }

  function onMessage(m) {
    const f = m.fields || {};
    const p = m.request_id && s.pending.get(m.request_id);
    if (p && m.kind !== 'Error') { s.pending.delete(m.request_id); p.resolve(m); }
    switch (m.kind) {
      case 'Welcome': return onWelcome(f);
      case 'Error':
        if (p) { s.pending.delete(m.request_id); p.reject(new Error(f.message || 'error ' + m.status)); }
        else if (m.request_id) toast(`Refused (${m.status}): ${f.message || ''}`);
        return;
      case 'Assigned': return onAssigned(f);
      case 'Queued': return onQueued(f);
      case 'Deliver': return onDeliver(f);
      case 'Receipt': {
        const c = conv(f.conversation);
        if (f.status === 2 && big(f.seq) > c.readUpTo) { c.readUpTo = big(f.seq); markRead(c); }
        return;
      }
      case 'Typing': return onTyping(f);
      case 'Transfer': {
        const c = conv(f.conversation);
        c.note = f.note;
        if (c.pane) showNote(c);
        return;
      }
      case 'Close': return onClose(f);
      case 'Availability':
        for (const g of f.groups || []) s.avail.set(g.group, g);
        if (s.catchUp) {
          // The router has registered this connection (it answered the Watch sent after
          // Hello): from now on everything is delivered live, and what was stored while
          // it was being registered is in the latest page of each open conversation.
          s.catchUp = false;
          for (const c of s.convs.values()) if (c.pane && c.state === 'assigned' && c.agent === s.me?.user) loadHistory(c, true);
        }
        return renderLists();
      case 'Notice': return toast(`Notice from ${f.from}: ${f.text}`);
      case 'Refreshed': s.expiresMs = Number(f.expires_ms) || s.expiresMs; s.refreshed = (s.refreshed || 0) + 1; return;
      case 'Bye': return;
      default:
    }
  }

  function onWelcome(f) {
    const first = !s.me;
    // Queue entries and exits missed while away are unknown: the list starts again.
    for (const c of s.convs.values()) if (c.state === 'queued') { c.state = 'unknown'; c.queuedPos = 0; }
    s.me = f;
    s.backoff = 1000;
    setConn('up', 'Connected');
    clearInterval(s.pingTimer);
    s.pingTimer = setInterval(() => send('Ping'), Math.max(1000, (f.heartbeat_ms || 30000) * 0.8));
    $('#me-name').textContent = `${f.name} (${f.role === ROLE.ADMIN ? 'admin' : 'agent'})`;
    $('#me').hidden = false;
    $('#login').hidden = true;
    const admin = f.role === ROLE.ADMIN;
    $('#view-btn').hidden = !admin;
    $('#presence').hidden = admin;
    $('#presence-label').hidden = admin;
    if (admin) {
      showView('super');
    } else {
      if (first) showView('desk');
      s.catchUp = !first;
      send('Watch', { group: '' });
      send('Presence', { status: s.presence });
    }
    // What a resume could not replay is read again.
    for (const r of f.resumed || []) {
      const c = s.convs.get(r.conversation);
      if (c && !r.recovered) loadHistory(c, true);
    }
    if (first) restoreOpen();
    scheduleRefresh();
  }

  function onAssigned(f) {
    const c = conv(f.conversation);
    c.group = f.group; c.visitor = f.visitor; c.visitorName = f.visitor_name || f.visitor;
    c.agent = f.agent; c.queuedPos = 0; c.updated = Date.now();
    const mine = f.agent === s.me?.user;
    c.state = 'assigned';
    if (mine) openPane(c, false);
    addEntry(c, { seq: f.seq, time_ms: String(Date.now()), kind: 33, sender_role: ROLE.SYSTEM, content_type: 0, flags: 0, sender: f.agent, body: f.agent_name });
    if (mine) {
      if (!c.historyLoaded) loadHistory(c);
      alertUser('New conversation', `${nameOf(c)} (${c.group})`);
    } else if (c.pane) {
      updatePane(c);
    }
    saveOpen();
    renderLists();
  }

  function onQueued(f) {
    const c = conv(f.conversation);
    c.group = f.group;
    if (f.position > 0) {
      c.state = 'queued'; c.queuedPos = f.position; c.updated = Date.now();
      if (!c.visitorName) c.visitorName = 'Conversation ' + c.id;
      alertUser('Waiting in ' + f.group, c.visitorName);
    } else if (c.state === 'queued') {
      c.queuedPos = 0; c.state = 'taken';
    }
    if (c.pane) updatePane(c);
    renderLists();
  }

  function onDeliver(f) {
    const c = conv(f.conversation);
    const kind = (f.flags & FLAG.PRIVATE) ? 21 : 16;
    if (!addEntry(c, { ...f, kind })) return;
    c.updated = Date.now();
    if (f.sender_role === ROLE.VISITOR && f.content_type !== CT.PROFILE) {
      c.typing = false; showTyping(c);
      if (s.focused !== c || document.hidden) {
        c.unread += 1;
        alertUser(nameOf(c), f.content_type === CT.TEXT ? f.body : 'New message');
      } else {
        receipt(c);
      }
    }
    renderLists();
  }

  function onTyping(f) {
    const c = conv(f.conversation);
    c.typing = f.typing;
    showTyping(c);
    clearTimeout(c.typingTimer);
    if (f.typing) c.typingTimer = setTimeout(() => { c.typing = false; showTyping(c); }, 6000);
  }

  function onClose(f) {
    const c = conv(f.conversation);
    c.state = 'closed'; c.queuedPos = 0; c.typing = false;
    addEntry(c, { seq: f.seq, time_ms: String(Date.now()), kind: 36, sender_role: ROLE.SYSTEM, content_type: 0, flags: 0, sender: '', body: f.reason });
    s.closed = [c.id, ...s.closed.filter((x) => x !== c.id)].slice(0, 20);
    if (c.pane) updatePane(c);
    saveOpen();
    renderLists();
  }

  // ---- transcript ----
  // Records an event; renders it when the conversation has a pane (false: seen before).
  function addEntry(c, e) {
    const seq = big(e.seq);
    if (seq > c.lastSeq) c.lastSeq = seq;
    if (seq > 0n && c.pane) {
      if (c.entries.has(String(seq))) return false;
      c.entries.add(String(seq));
      if (c.firstSeq === null || seq < c.firstSeq) c.firstSeq = seq;
    }
    if (e.content_type === CT.PROFILE && e.kind === 16 && e.sender_role === ROLE.VISITOR) {
      try { c.profiles.set(String(seq), JSON.parse(e.body)); } catch { /* not a profile */ }
      c.profile = mergeProfiles(c.profiles);
      if (c.pane) { renderContext(c); updatePane(c); }
      renderLists();
    }
    if (c.pane && e.kind === 16 && e.sender_role === ROLE.VISITOR && c.state === 'assigned' && c.agent === s.me?.user) loadCard(c);
    if (c.pane) insertEntry(c, e);
    // What the FAQ already answered by itself is no hint.
    if (e.flags & FLAG.AUTO) (c.autoTexts || (c.autoTexts = new Set())).add(e.body);
    // A visitor's question (not an automatic reply's): look for an FAQ hint.
    if (c.pane && e.sender_role === ROLE.VISITOR && e.content_type === CT.TEXT && e.kind === 16 && seq >= (c.hintSeq || 0n)) {
      c.hintSeq = seq;
      c.hintQ = e.body;
      clearTimeout(c.hintTimer);
      c.hintTimer = setTimeout(() => faqHint(c), 150);
    }
    return true;
  }

  // The visitor profile: every PROFILE in transcript order, a member replacing the
  // earlier value and null removing it, fields key by key (PROTOCOL.md 5.2a).
  // The visitor's name as the agent should see it: the one they gave (PROFILE) over
  // the token's, which for anonymous visitors is a made-up "Visitor xxxx".
  function nameOf(c, fallback) {
    return (c.profile && c.profile.name) || c.visitorName || fallback || 'Conversation ' + c.id;
  }

  function mergeProfiles(profiles) {
    const out = { name: null, email: null, fields: {} };
    const order = [...profiles.keys()].sort((a, b) => (big(a) < big(b) ? -1 : 1));
    for (const k of order) {
      const p = profiles.get(k) || {};
      if ('name' in p) out.name = p.name;
      if ('email' in p) out.email = p.email;
      for (const [f, v] of Object.entries(p.fields || {})) {
        if (v === null) delete out.fields[f]; else out.fields[f] = v;
      }
    }
    return out;
  }

  function entryNode(c, e) {
    const li = el('li', { 'data-seq': String(e.seq) });
    const tags = [];
    if (e.kind === 16 || e.kind === 21) {
      if (e.content_type === CT.PROFILE) {
        li.className = 'event';
        li.textContent = 'The visitor updated their details';
        return li;
      }
      const fromVisitor = e.sender_role === ROLE.VISITOR;
      li.className = e.kind === 21 ? 'note agent' : fromVisitor ? 'visitor' : (e.sender_role === ROLE.SYSTEM ? 'system' : 'agent');
      let body = e.body;
      if (e.content_type === CT.ATTACHMENT) {
        try { const a = JSON.parse(e.body); body = `📎 ${a.name} (${a.size} bytes)`; } catch { /* shown as is */ }
      }
      if (e.kind === 21) tags.push('private note');
      if (e.flags & FLAG.AUTO) tags.push('FAQ auto-reply');
      if (e.flags & FLAG.OFFLINE) tags.push('offline message');
      if (e.flags & FLAG.FLAGGED) tags.push('flagged');
      if (e.flags & FLAG.AWAY) tags.push('visitor away');
      const who = fromVisitor ? (nameOf(c, e.sender)) : e.sender_role === ROLE.SYSTEM ? 'Auto-reply' : (e.sender === s.me?.user ? 'You' : e.sender);
      const meta = el('div', { class: 'meta' }, `${who} · ${time(e.time_ms)}`);
      for (const t of tags) meta.append(el('span', { class: 'tag', text: t }));
      if ((e.flags & FLAG.AUTO) && e.kind === 16) {
        // The serving agent may tell the server the automatic answer was wrong
        // (WrongReply: counted and logged for whoever keeps the FAQ library).
        const b = el('button', { type: 'button', class: 'wrong', text: 'Mark wrong', title: 'Tell the server this automatic answer was wrong' });
        b.addEventListener('click', () => {
          if (c.state !== 'assigned' || c.agent !== s.me?.user) return toast('Only the agent serving the conversation can mark it');
          send('WrongReply', { conversation: c.id, seq: String(e.seq), comment: '' });
          b.disabled = true;
          b.textContent = 'Marked wrong';
        });
        meta.append(b);
      }
      li.append(meta, el('div', { class: 'msg', text: body }));
      return li;
    }
    li.className = 'event';
    li.textContent = e.kind === 33 ? `Assigned to ${e.body || e.sender}`
      : e.kind === 32 ? `Queued in ${e.body}`
      : e.kind === 36 ? `Closed${e.body ? ' (' + e.body + ')' : ''}`
      : e.kind === 37 ? `Rated ${e.content_type}/5${e.body ? ': ' + e.body : ''}`
      : e.kind === 60 ? 'Part of the transcript was lost'
      : 'Event ' + e.kind;
    return li;
  }

  function insertEntry(c, e, log = $('.log', c.pane)) {
    const li = entryNode(c, e);
    const seq = big(e.seq);
    let before = null;
    if (seq > 0n) {
      // Mostly appended; history pages go before.
      for (let n = log.lastElementChild; n; n = n.previousElementSibling) {
        if (big(n.dataset.seq) > 0n && big(n.dataset.seq) < seq) break;
        if (big(n.dataset.seq) > seq) before = n;
      }
    }
    const stick = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    log.insertBefore(li, before);
    if (!before && stick) log.scrollTop = log.scrollHeight;
    window.sbConsole.rendered += 1;
    markRead(c);
  }

  async function loadHistory(c, fromLatest = false) {
    const before = (!fromLatest && c.historyLoaded && c.firstSeq !== null) ? String(c.firstSeq) : '0';
    const initial = !c.historyLoaded;
    try {
      const page = await request('History', { limit: PAGE, conversation: c.id, before_seq: before });
      c.historyLoaded = true;
      for (const e of page.fields.entries || []) addEntry(c, e);
      if (before !== '0' || initial) c.more = page.fields.more;
      if (c.pane) $('.older', c.pane).hidden = !c.more;
    } catch (err) {
      if (c.pane) $('.typing', c.pane).textContent = 'History: ' + err.message;
    }
  }

  // ---- panes ----
  function openPane(c, focus = true) {
    if (!c.pane) {
      const node = $('#pane-tpl').content.firstElementChild.cloneNode(true);
      node.dataset.conv = c.id;
      c.pane = node;
      const ta = $('textarea', node);
      const id = 'reply-' + c.id;
      ta.id = id;
      $('.compose-row label', node).setAttribute('for', id);
      $('.suggest', node).id = 'sugg-' + c.id;
      ta.setAttribute('aria-controls', 'sugg-' + c.id);
      $('.log', node).setAttribute('aria-label', 'Messages');
      wirePane(c, node);
      $('#panes').append(node);
      s.panes.push(c.id);
      updatePane(c);
      renderContext(c);
      if (c.note) showNote(c);
      // What was received before the pane opened.
      if (c.historyLoaded) loadHistory(c, true);
    }
    $('#empty').hidden = s.panes.length > 0;
    if (focus) focusPane(c);
    saveOpen();
  }

  function hidePane(c) {
    if (!c.pane) return;
    c.pane.remove();
    c.pane = null;
    c.entries = new Set(); c.firstSeq = null; c.historyLoaded = false;
    s.panes = s.panes.filter((x) => x !== c.id);
    if (s.focused === c) s.focused = null;
    $('#empty').hidden = s.panes.length > 0;
    saveOpen();
    renderLists();
  }

  function focusPane(c, moveFocus = true) {
    if (s.focused?.pane) s.focused.pane.classList.remove('focused');
    s.focused = c;
    c.pane.classList.add('focused');
    c.unread = 0;
    receipt(c);
    renderLists();
    if (!moveFocus) return;
    const ta = $('textarea', c.pane);
    if (c.state === 'assigned' && c.agent === s.me?.user) ta.focus(); else c.pane.focus();
  }

  function updatePane(c) {
    const p = c.pane;
    const mine = c.state === 'assigned' && c.agent === s.me?.user;
    $('.pane-title', p).textContent = `${nameOf(c)} · ${c.group || '—'}`;
    p.setAttribute('aria-label', `Conversation with ${nameOf(c)}`);
    const st = $('.state', p);
    st.textContent = c.state === 'queued' ? `queued #${c.queuedPos}` : mine ? 'mine' : c.state;
    p.classList.toggle('closed', c.state === 'closed');
    p.classList.toggle('readonly', !mine);
    $('.act-claim', p).hidden = c.state !== 'queued';
    $('.act-transfer', p).hidden = !mine;
    $('.act-close', p).hidden = !mine;
    if (!mine) $('.faq-hint', p).hidden = true;
    else if (c.hintQ && c.hintDone !== c.hintSeq) { clearTimeout(c.hintTimer); c.hintTimer = setTimeout(() => faqHint(c), 150); }
    if (mine) loadCard(c);
  }

  // The visitor's network address, from the HTTP API's card of a conversation the
  // agent serves (its own token may read it): asked when the pane opens or becomes
  // the agent's, and again on a visitor's message at most every 30 s.
  async function loadCard(c) {
    const now = Date.now();
    if (c.cardAt && now - c.cardAt < 30000) return;
    c.cardAt = now;
    try {
      const r = await fetch('/api/v1/conversations/' + c.id, { headers: { authorization: 'Bearer ' + s.token } });
      if (!r.ok) return;
      const card = await r.json();
      if (card.visitor_address !== c.address) {
        c.address = card.visitor_address;
        if (c.pane) renderContext(c);
      }
    } catch { /* asked again with the next message */ }
  }

  const LABELS = { page_url: 'Page', url: 'Page', page: 'Page', referrer: 'Referrer', referer: 'Referrer', browser: 'Browser', user_agent: 'Browser' };
  function renderContext(c) {
    const dl = $('.context', c.pane);
    dl.textContent = '';
    const add = (k, v) => { if (v !== undefined && v !== null && v !== '') dl.append(el('dt', { text: k }), el('dd', { text: String(v) })); };
    const p = c.profile || {};
    add('Name', p.name || c.visitorName);
    add('Email', p.email);
    add('Visitor id', c.visitor);
    add('Address', c.address);
    const fields = (p.fields && typeof p.fields === 'object') ? p.fields : {};
    for (const [k, v] of Object.entries(fields)) add(LABELS[k] || k, typeof v === 'object' ? JSON.stringify(v) : v);
  }

  // FAQ hints (Suggest with faq): the library's answer to the visitor's last
  // question, for the assigned agent to use or dismiss.
  async function faqHint(c) {
    const q = c.hintQ;
    if (!c.pane || !q || c.state !== 'assigned' || c.agent !== s.me?.user) return;
    c.hintDone = c.hintSeq;
    const box = $('.faq-hint', c.pane);
    try {
      const r = await request('Suggest', { limit: 1, faq: true, conversation: c.id, prefix: [...q].slice(0, 300).join('') });
      if (!c.pane || c.hintQ !== q) return;
      const hit = (r.fields.items || []).find((x) => !c.autoTexts?.has(x.text));
      box.hidden = !hit;
      if (!hit) return;
      c.hintText = hit.text;
      $('.faq-text', box).textContent = hit.text;
      $('.faq-score', box).textContent = `${Math.round(hit.uses / 10)}% match`;
    } catch { box.hidden = true; }
  }

  function showNote(c) {
    const n = $('.transfer-note', c.pane);
    n.hidden = !c.note;
    n.textContent = c.note ? 'Transfer note: ' + c.note : '';
  }

  function showTyping(c) {
    if (c.pane) $('.typing', c.pane).textContent = c.typing ? `${nameOf(c, 'The visitor')} is typing…` : '';
  }

  function markRead(c) {
    if (!c.pane) return;
    const log = $('.log', c.pane);
    const old = $('.read-mark', log);
    if (old) old.remove();
    if (c.readUpTo <= 0n) return;
    let last = null;
    for (const li of log.querySelectorAll('li.agent:not(.note)')) if (big(li.dataset.seq) <= c.readUpTo) last = li;
    if (last) $('.meta', last)?.append(el('span', { class: 'tag read-mark', text: 'read' }));
  }

  function receipt(c) {
    if (c.state !== 'assigned' || c.agent !== s.me?.user || c.lastSeq <= 0n || document.hidden) return;
    if (c.sentRead === c.lastSeq) return;
    c.sentRead = c.lastSeq;
    send('Receipt', { status: 2, conversation: c.id, seq: String(c.lastSeq), user: '' });
  }

  function wirePane(c, p) {
    const ta = $('textarea', p);
    const list = $('.suggest', p);
    const form = $('.composer', p);
    const noteBox = $('.is-note', p);
    let items = [];
    let sel = -1;
    let sugTimer = 0;
    let lastTyping = 0;
    let stopTimer = 0;
    // Focus moving into a pane (keyboard or mouse) makes it the focused one, without
    // moving the focus itself.
    p.addEventListener('focusin', () => { if (s.focused !== c) focusPane(c, false); });
    $('.act-hide', p).addEventListener('click', () => hidePane(c));
    $('.act-claim', p).addEventListener('click', () => claim(c));
    $('.act-close', p).addEventListener('click', () => send('Close', { conversation: c.id, seq: '0', reason: 'closed by agent' }));
    $('.act-transfer', p).addEventListener('click', () => openTransfer(c));
    $('.older', p).addEventListener('click', () => loadHistory(c));
    $('.faq-use', p).addEventListener('click', () => { ta.value = c.hintText || ''; $('.faq-hint', p).hidden = true; ta.focus(); });
    $('.faq-dismiss', p).addEventListener('click', () => { $('.faq-hint', p).hidden = true; ta.focus(); });
    noteBox.addEventListener('change', () => form.classList.toggle('noting', noteBox.checked));
    const closeList = () => { list.hidden = true; ta.removeAttribute('aria-activedescendant'); sel = -1; };
    const showList = () => {
      list.textContent = '';
      items.forEach((it, i) => {
        const li = el('li', { role: 'option', id: `sugg-${c.id}-${i}`, 'aria-selected': String(i === sel), text: it.text });
        li.addEventListener('mousedown', (e) => { e.preventDefault(); accept(i); });
        list.append(li);
      });
      list.hidden = items.length === 0;
      if (sel >= 0) ta.setAttribute('aria-activedescendant', `sugg-${c.id}-${sel}`); else ta.removeAttribute('aria-activedescendant');
    };
    const accept = (i) => { const it = items[i]; if (!it) return; ta.value = it.text; items = []; closeList(); ta.focus(); };
    const suggest = async () => {
      const text = ta.value;
      const prefix = text.startsWith('/') ? text.slice(1) : text;
      if (noteBox.checked || prefix.length < (text.startsWith('/') ? 1 : 3) || prefix.length > 200) { items = []; return closeList(); }
      try {
        const r = await request('Suggest', { limit: 5, conversation: c.id, prefix });
        if (ta.value !== text) return;
        items = r.fields.items || [];
        sel = items.length && text.startsWith('/') ? 0 : -1;
        showList();
      } catch { items = []; closeList(); }
    };
    ta.addEventListener('input', () => {
      clearTimeout(sugTimer);
      sugTimer = setTimeout(suggest, 120);
      const now = Date.now();
      if (!noteBox.checked && now - lastTyping > 2000) { lastTyping = now; send('Typing', { typing: true, conversation: c.id, user: '' }); }
      clearTimeout(stopTimer);
      stopTimer = setTimeout(() => { lastTyping = 0; send('Typing', { typing: false, conversation: c.id, user: '' }); }, 4000);
    });
    ta.addEventListener('keydown', (e) => {
      if (!list.hidden && items.length) {
        if (e.key === 'ArrowDown') { sel = (sel + 1) % items.length; showList(); return e.preventDefault(); }
        if (e.key === 'ArrowUp') { sel = (sel - 1 + items.length) % items.length; showList(); return e.preventDefault(); }
        if (e.key === 'Escape') { items = []; closeList(); return e.preventDefault(); }
        if ((e.key === 'Enter' || e.key === 'Tab') && sel >= 0) { accept(sel); return e.preventDefault(); }
      }
      if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); }
    });
    ta.addEventListener('blur', () => setTimeout(closeList, 150));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const body = ta.value.trim();
      if (!body) return;
      const note = noteBox.checked;
      const id = nextMsgId();
      ta.value = ''; items = []; closeList();
      clearTimeout(stopTimer);
      if (lastTyping) { lastTyping = 0; send('Typing', { typing: false, conversation: c.id, user: '' }); }
      try {
        const a = note
          ? await request('Note', { conversation: c.id, client_msg_id: id, body })
          : await request('Send', { content_type: CT.TEXT, conversation: c.id, client_msg_id: id, group: '', body });
        addEntry(c, { seq: a.fields.seq, time_ms: a.fields.time_ms, kind: note ? 21 : 16, sender_role: s.me.role,
          content_type: CT.TEXT, flags: note ? FLAG.PRIVATE : 0, sender: s.me.user, body, client_msg_id: id });
        c.updated = Date.now();
        if (!note) $('.faq-hint', p).hidden = true;
        renderLists();
      } catch (err) {
        ta.value = body;
        toast('Not sent: ' + err.message);
      }
    });
  }

  function claim(c) {
    send('Claim', { conversation: c.id });
  }

  let transferFor = null;
  function openTransfer(c) {
    transferFor = c;
    $('#tr-agent').value = ''; $('#tr-group').value = ''; $('#tr-note').value = '';
    $('#transfer-dlg').showModal();
  }
  $('#transfer-dlg').addEventListener('close', () => {
    const c = transferFor;
    transferFor = null;
    if (!c || $('#transfer-dlg').returnValue !== 'ok') return;
    send('Transfer', { conversation: c.id, to_agent: $('#tr-agent').value.trim(), to_group: $('#tr-group').value.trim(), note: $('#tr-note').value });
    // The sender gets no frame about it: the conversation is no longer ours.
    c.state = 'transferred';
    c.agent = '';
    updatePane(c);
    const to = $('#tr-agent').value.trim() || $('#tr-group').value.trim();
    $('.log', c.pane)?.append(el('li', { class: 'event', text: 'You transferred it' + (to ? ' to ' + to : '') }));
    saveOpen();
    renderLists();
  });

  // ---- lists ----
  let listsQueued = false;
  function renderLists() {
    if (listsQueued) return;
    listsQueued = true;
    requestAnimationFrame(() => { listsQueued = false; drawLists(); });
  }
  function convButton(c, label) {
    const li = el('li', { class: s.focused === c ? 'active' : '' });
    const b = el('button', { type: 'button', class: 'open', text: label });
    b.addEventListener('click', () => { openPane(c); if (!c.historyLoaded) loadHistory(c); });
    li.append(b);
    if (c.unread) li.append(el('span', { class: 'unread', 'aria-label': `${c.unread} unread`, text: String(c.unread) }));
    return li;
  }
  function drawLists() {
    const me = s.me?.user;
    const mine = [...s.convs.values()].filter((c) => c.state === 'assigned' && c.agent === me).sort((a, b) => b.updated - a.updated);
    const ul = $('#mine');
    ul.textContent = '';
    for (const c of mine) ul.append(convButton(c, `${nameOf(c)} · ${c.group}`));
    $('#mine-count').textContent = String(mine.length);
    const queued = [...s.convs.values()].filter((c) => c.state === 'queued');
    const byGroup = new Map();
    for (const c of queued) { if (!byGroup.has(c.group)) byGroup.set(c.group, []); byGroup.get(c.group).push(c); }
    const qd = $('#queued');
    qd.textContent = '';
    for (const [g, cs] of byGroup) {
      const list = el('ul', { class: 'convs', 'aria-label': 'Queued in ' + g });
      for (const c of cs.sort((a, b) => a.queuedPos - b.queuedPos)) {
        const li = convButton(c, `#${c.queuedPos} ${nameOf(c)}`);
        li.append(el('button', { type: 'button', class: 'claim', 'aria-label': `Claim conversation ${c.id}`, text: 'Claim', onclick: () => claim(c) }));
        list.append(li);
      }
      qd.append(el('h3', { text: g }), list);
    }
    $('#queued-count').textContent = String(queued.length);
    const cl = $('#closed');
    cl.textContent = '';
    for (const id of s.closed) { const c = s.convs.get(id); if (c) cl.append(convButton(c, `${nameOf(c)} · closed`)); }
    const av = $('#avail');
    av.textContent = '';
    for (const g of s.avail.values()) {
      av.append(el('li', {}, el('span', { class: 'dot' + (g.online ? ' on' : ''), 'aria-hidden': 'true' }),
        `${g.group}: ${g.online ? 'online' : 'offline'}${g.online && Number(g.estimated_wait_ms) ? ', wait ~' + Math.round(Number(g.estimated_wait_ms) / 60000) + ' min' : ''}`));
    }
    const unread = mine.reduce((n, c) => n + c.unread, 0);
    document.title = (unread ? `(${unread}) ` : '') + 'Switchboard console';
  }

  // ---- notifications ----
  let audio = null;
  function alertUser(title, body) {
    if (!s.notify || !document.hidden && document.hasFocus()) return;
    try {
      audio = audio || new AudioContext();
      const o = audio.createOscillator(); const g = audio.createGain();
      o.frequency.value = 880; g.gain.value = 0.05;
      o.connect(g).connect(audio.destination); o.start(); o.stop(audio.currentTime + 0.15);
    } catch { /* no sound */ }
    if ('Notification' in window && Notification.permission === 'granted') {
      try { new Notification(title, { body, tag: 'switchboard' }); } catch { /* not allowed here */ }
    }
  }
  $('#notify-btn').addEventListener('click', async () => {
    s.notify = !s.notify;
    if (s.notify && 'Notification' in window && Notification.permission === 'default') {
      try { await Notification.requestPermission(); } catch { /* ignored */ }
    }
    $('#notify-btn').setAttribute('aria-pressed', String(s.notify));
    $('#notify-btn').textContent = s.notify ? 'Notifications on' : 'Notifications off';
  });
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && s.focused) receipt(s.focused);
    // A throttled background tab may have been cut: come back at once.
    if (!document.hidden && !s.ws && !s.loggedOut) connect();
  });

  // ---- presence, views ----
  $('#presence').addEventListener('change', (e) => {
    s.presence = Number(e.target.value);
    send('Presence', { status: s.presence });
  });
  function showView(v) {
    const sup = v === 'super';
    $('#desk').hidden = sup;
    $('#super').hidden = !sup;
    $('#view-btn').textContent = sup ? 'Conversations' : 'Supervisor view';
    clearInterval(s.superTimer);
    if (sup) { pollSuper(); s.superTimer = setInterval(pollSuper, 3000); }
  }
  $('#view-btn').addEventListener('click', () => showView($('#super').hidden ? 'super' : 'desk'));

  // ---- supervisor view (admins: PROTOCOL.md 13.15) ----
  async function pollSuper() {
    if (!s.ws || $('#super').hidden) return;
    let items = [];
    try {
      let after = '0';
      for (let i = 0; i < 10; i++) {
        const r = await request('ListConversations', { limit: 1000, state: 0, after, updated_since_ms: '0', group: '', agent: '' });
        items = items.concat(r.fields.items || []);
        if (!r.fields.more) break;
        after = r.fields.next_after;
      }
    } catch (err) { $('#super-updated').textContent = 'Cannot list conversations: ' + err.message; return; }
    let agents = null;
    try {
      const r = await fetch('/api/v1/agents', { headers: { authorization: 'Bearer ' + s.token } });
      if (r.ok) agents = (await r.json()).agents;
    } catch { /* shown from the list alone */ }
    drawSuper(items, agents);
  }

  function drawSuper(items, agents) {
    const now = Date.now();
    const q = new Map();
    const load = new Map();
    for (const it of items) {
      if (it.state === 1) {
        const g = q.get(it.group) || { n: 0, oldest: now };
        g.n += 1; g.oldest = Math.min(g.oldest, Number(it.updated_ms));
        q.set(it.group, g);
      } else if (it.state === 2) {
        load.set(it.agent, (load.get(it.agent) || 0) + 1);
      }
    }
    const qb = $('#super-queue tbody');
    qb.textContent = '';
    for (const [g, v] of [...q].sort()) {
      qb.append(el('tr', {}, el('td', { text: g }), el('td', { text: String(v.n) }), el('td', { text: Math.round((now - v.oldest) / 1000) + ' s' })));
    }
    if (!q.size) qb.append(el('tr', {}, el('td', { colspan: '3', text: 'Nobody is waiting.' })));
    const ab = $('#super-agents tbody');
    ab.textContent = '';
    const rows = agents || [...load].map(([user, n]) => ({ user, name: user, presence: '?', assigned: n, capacity: '?', groups: [] }));
    const ids = $('#agent-ids');
    ids.textContent = '';
    for (const a of rows) {
      ids.append(el('option', { value: a.user }));
      ab.append(el('tr', {}, el('td', { text: a.name && a.name !== a.user ? `${a.name} (${a.user})` : a.user }),
        el('td', { text: a.presence }), el('td', { text: `${a.assigned} / ${a.capacity}` }), el('td', { text: (a.groups || []).join(', ') })));
    }
    if (!rows.length) ab.append(el('tr', {}, el('td', { colspan: '4', text: 'No agent connected.' })));
    const cb = $('#super-convs tbody');
    cb.textContent = '';
    for (const it of items.slice(-200).reverse()) {
      const read = el('button', { type: 'button', text: 'Read', 'aria-label': `Read conversation ${it.conversation}` });
      read.addEventListener('click', () => superRead(it.conversation, true));
      cb.append(el('tr', {}, el('td', { text: it.conversation }), el('td', { text: it.visitor_name || it.visitor }),
        el('td', { text: it.group }), el('td', { text: ['', 'queued', 'assigned', 'closed'][it.state] || String(it.state) }),
        el('td', { text: it.agent || '—' }), el('td', { text: time(it.updated_ms) }), el('td', {}, read)));
    }
    $('#super-updated').textContent = `${items.length} open conversation(s), updated ${new Date().toLocaleTimeString()}`;
  }

  async function superRead(id, fresh) {
    const box = $('#super-read');
    const log = $('#super-log');
    if (fresh) { s.superRead = { id, first: null }; log.textContent = ''; }
    box.hidden = false;
    $('#sr-h').textContent = `Conversation ${id} (read-only)`;
    try {
      const r = await request('History', { limit: PAGE, conversation: id, before_seq: s.superRead.first ? String(s.superRead.first) : '0' });
      const fake = { visitorName: '', entries: new Set() };
      const nodes = (r.fields.entries || []).map((e) => entryNode(fake, e));
      log.prepend(...nodes);
      const first = r.fields.entries?.[0];
      if (first) s.superRead.first = big(first.seq);
      $('#super-older').hidden = !r.fields.more;
    } catch (err) { log.append(el('li', { class: 'event', text: 'Cannot read: ' + err.message })); }
  }
  $('#super-older').addEventListener('click', () => s.superRead && superRead(s.superRead.id, false));

  // ---- login, tokens ----
  function jwtExp(token) {
    try {
      const p = JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
      return (p.exp || 0) * 1000;
    } catch { return 0; }
  }
  function start(token, expiresMs, viaLogin) {
    s.token = token; s.expiresMs = expiresMs; s.viaLogin = viaLogin; s.loggedOut = false;
    sessionStorage.setItem(STORE, JSON.stringify({ token, expiresMs, viaLogin }));
    $('#login-error').textContent = '';
    connect();
  }
  function logout(why = '') {
    s.loggedOut = true;
    clearTimeout(s.refreshTimer); clearTimeout(s.retryTimer); clearInterval(s.pingTimer); clearInterval(s.superTimer);
    if (s.ws) { const ws = s.ws; s.ws = null; ws.close(1000); }
    sessionStorage.removeItem(STORE);
    for (const c of s.convs.values()) if (c.pane) c.pane.remove();
    s.convs.clear(); s.panes = []; s.me = null; s.focused = null; s.closed = [];
    $('#desk').hidden = true; $('#super').hidden = true; $('#me').hidden = true;
    $('#login').hidden = false;
    setConn('idle', 'Not connected');
    $('#login-error').textContent = why;
    $('#username').focus();
  }
  $('#logout').addEventListener('click', () => { localStorage.removeItem(STORE + '-open'); logout(); });

  function scheduleRefresh() {
    clearTimeout(s.refreshTimer);
    if (!s.viaLogin || !s.expiresMs) return;
    const wait = Math.max(5000, s.expiresMs - Date.now() - 60000);
    s.refreshTimer = setTimeout(async () => {
      if (await refreshToken(false)) scheduleRefresh();
      else s.refreshTimer = setTimeout(scheduleRefresh, 10000);
    }, wait);
  }
  async function refreshToken(quiet) {
    try {
      const r = await fetch('/console/v1/refresh', { method: 'POST', headers: { authorization: 'Bearer ' + s.token } });
      if (!r.ok) { if (!quiet) toast('Could not refresh the session: ' + r.status); return false; }
      const t = await r.json();
      s.token = t.token; s.expiresMs = Number(t.expires_ms);
      sessionStorage.setItem(STORE, JSON.stringify({ token: s.token, expiresMs: s.expiresMs, viaLogin: true }));
      // The open session moves its end too (PROTOCOL.md 4.6a).
      send('Refresh', { token: s.token });
      return true;
    } catch { return false; }
  }

  $('#login-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const username = $('#username').value.trim();
    const password = $('#password').value;
    const err = $('#login-error');
    if (!username || !password) { err.textContent = 'Enter your user name and password.'; return; }
    err.textContent = 'Logging in…';
    try {
      const r = await fetch('/console/v1/login', { method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username, password }) });
      if (!r.ok) {
        const retry = r.headers.get('retry-after');
        err.textContent = r.status === 401 ? 'Wrong user name or password.'
          : r.status === 429 ? `Too many attempts: try again in ${retry || 'a few'} seconds.`
          : r.status === 503 ? 'The server is busy: try again in a moment.'
          : `Login failed (${r.status}): ${(await r.text()).trim()}`;
        return;
      }
      const t = await r.json();
      $('#password').value = '';
      start(t.token, Number(t.expires_ms), true);
    } catch (x) {
      err.textContent = 'Cannot reach the server: ' + x.message;
    }
  });
  $('#token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const token = $('#sso-token').value.trim();
    if (!token) { $('#login-error').textContent = 'Paste a token.'; return; }
    $('#sso-token').value = '';
    start(token, jwtExp(token), false);
  });

  // Which conversations were open: kept so a reload resumes them.
  function saveOpen() {
    if (!s.me) return;
    const open = [...s.convs.values()].filter((c) => c.pane && c.state === 'assigned' && c.agent === s.me.user)
      .map((c) => ({ id: c.id, v: c.visitorName, g: c.group, u: c.visitor }));
    localStorage.setItem(STORE + '-open', JSON.stringify({ user: s.me.user, open }));
  }
  function restoreOpen() {
    let kept;
    try { kept = JSON.parse(localStorage.getItem(STORE + '-open') || 'null'); } catch { kept = null; }
    if (!kept || kept.user !== s.me.user) return;
    for (const k of kept.open || []) {
      const c = conv(k.id);
      if (c.state !== 'unknown') continue;
      Object.assign(c, { state: 'assigned', agent: s.me.user, visitorName: k.v, group: k.g, visitor: k.u });
      openPane(c, false);
      loadHistory(c).then(() => { if (!c.historyLoaded) { c.state = 'unknown'; hidePane(c); } });
    }
    renderLists();
  }

  // ---- start ----
  const frag = new URLSearchParams(location.hash.slice(1));
  if (frag.get('token')) {
    const t = frag.get('token');
    history.replaceState(null, '', location.pathname);
    start(t, jwtExp(t), false);
  } else {
    let kept = null;
    try { kept = JSON.parse(sessionStorage.getItem(STORE) || 'null'); } catch { kept = null; }
    if (kept && kept.token && (!kept.expiresMs || kept.expiresMs > Date.now())) start(kept.token, kept.expiresMs, kept.viaLogin);
    else $('#username').focus();
  }
})();
