// The superx dashboard: plain JavaScript, no dependencies, served by the gateway at /ui.
//
// Reads the control plane on /rpc (cluster/status, agents/list, agents/health) every few
// seconds, follows /ui/events (the node's feed of task changes) for the task list, and reads
// a task from /ui/tasks/{id} when it is opened (and again when the feed says it changed). Everything shown is set as text (never as
// markup): agents' answers are not trusted. With auth on, the operator's credential is kept
// in this tab's sessionStorage and sent as `Authorization: Bearer`; the feed is read with
// fetch() for that reason (EventSource cannot send a header), so no credential goes in a URL.
'use strict';

(() => {
  const CREDENTIAL_KEY = 'superx.credential';
  const POLL_MS = 2000;
  const TASK_ROWS_MAX = 500;
  const RECONNECT_MIN_MS = 500;
  const RECONNECT_MAX_MS = 10000;
  const DETAIL_REFRESH_MS = 250;

  const $ = (id) => document.getElementById(id);
  const settings = { authRequired: false, adminActions: false };
  const tasks = new Map(); // task id -> its latest feed line
  let selected = null;
  let rpcId = 0;
  let started = false;
  let feedAbort = null;
  let pollTimer = null;
  let renderQueued = false;
  let detailTimer = null;

  class AuthError extends Error {}

  // ---- helpers ---------------------------------------------------------------------------

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null) continue;
      if (key === 'class') node.className = value;
      else if (key === 'text') node.textContent = String(value);
      else if (key === 'data') Object.assign(node.dataset, value);
      else if (key === 'title') node.title = String(value);
      else node.setAttribute(key, String(value));
    }
    for (const child of children) {
      if (child === undefined || child === null) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function credential() {
    return sessionStorage.getItem(CREDENTIAL_KEY) || '';
  }

  function authHeaders() {
    const c = credential();
    return c ? { Authorization: 'Bearer ' + c } : {};
  }

  // TASK_STATE_INPUT_REQUIRED -> input-required
  function stateName(state) {
    return String(state || 'unknown').replace(/^TASK_STATE_/, '').toLowerCase().replace(/_/g, '-');
  }

  function isTerminal(state) {
    return ['completed', 'failed', 'canceled', 'rejected'].includes(stateName(state));
  }

  function time(ts) {
    const d = new Date(ts);
    return Number.isNaN(d.getTime()) ? '' : d.toLocaleTimeString();
  }

  // An agent's URL without user info, query or fragment (they may carry credentials).
  function safeUrl(raw) {
    try {
      const u = new URL(raw);
      return u.protocol + '//' + u.host + u.pathname;
    } catch (_) {
      return '';
    }
  }

  function showError(message) {
    const p = $('error');
    p.textContent = message || '';
    p.hidden = !message;
  }

  // ---- API -------------------------------------------------------------------------------

  async function rpc(method, params, write) {
    const headers = { 'Content-Type': 'application/json', 'A2A-Version': '1.0', ...authHeaders() };
    // Reads are this node's view: the dashboard works on a node that lost its leader too.
    if (!write) headers['SuperX-Read'] = 'local';
    const res = await fetch('/rpc', {
      method: 'POST',
      headers,
      body: JSON.stringify({ jsonrpc: '2.0', id: ++rpcId, method, params: params || {} }),
      cache: 'no-store',
      credentials: 'omit',
    });
    if (res.status === 401) throw new AuthError('the credential was refused');
    if (res.status === 403) throw new AuthError('this credential is not an admin credential');
    const body = await res.json();
    if (body.error) throw new Error(method + ': ' + (body.error.message || 'error ' + body.error.code));
    return body.result;
  }

  function onFailure(e) {
    if (e instanceof AuthError) {
      askCredential(e.message);
    } else {
      showError(e.message || String(e));
    }
  }

  // ---- credential ------------------------------------------------------------------------

  function askCredential(why) {
    sessionStorage.removeItem(CREDENTIAL_KEY);
    stop();
    $('login').hidden = false;
    $('main').hidden = true;
    $('login-error').textContent = why || '';
    $('token').focus();
  }

  function stop() {
    started = false;
    if (feedAbort) feedAbort.abort();
    feedAbort = null;
    clearTimeout(pollTimer);
  }

  // ---- cluster ---------------------------------------------------------------------------

  function renderCluster(s) {
    const gossip = new Map((s.gossip || []).map((g) => [g.nodeId, g]));
    const ids = [...new Set([...(s.voters || []), ...(s.learners || []), ...gossip.keys()])].sort((a, b) => a - b);
    if (!ids.includes(s.nodeId)) ids.unshift(s.nodeId);
    const body = document.createDocumentFragment();
    for (const id of ids) {
      const me = id === s.nodeId;
      const g = gossip.get(id);
      const h = (g && g.health) || {};
      let role;
      if (me) role = s.role;
      else if (h.role) role = h.role;
      else if (id === s.leader) role = 'leader';
      else if ((s.voters || []).includes(id)) role = 'voter';
      else if ((s.learners || []).includes(id)) role = 'learner';
      else role = 'not a member' + (g && g.raftState ? ' (' + g.raftState + ')' : '');
      let live;
      if (me) live = 'live (this node)';
      else if (!g) live = 'unknown (no gossip)';
      else if (g.left) live = 'left';
      else live = g.live ? (g.ready ? 'live' : 'live, not ready') : 'dead';
      const dash = (v) => (v === undefined || v === null || v === 0 ? '—' : v);
      body.append(
        el(
          'tr',
          { data: { nodeId: id, role } },
          el('td', { text: id }),
          el('td', { class: 'mono', text: me ? location.host : (g && g.api) || '' }),
          el('td', { class: role === 'leader' ? 'good' : '', text: role }),
          el('td', { text: me ? s.term : dash(h.term) }),
          el('td', { text: me ? s.committedIndex : dash(h.committedIndex) }),
          el('td', { text: me ? s.appliedIndex : dash(h.appliedIndex) }),
          el('td', { class: live.startsWith('live') ? 'good' : live === 'dead' ? 'bad' : 'muted', text: live }),
        ),
      );
    }
    $('members').tBodies[0].replaceChildren(body);
    const leader = s.leader === null || s.leader === undefined ? 'no leader' : 'leader ' + s.leader;
    $('cluster-summary').textContent = `${leader} · term ${s.term} · ${ids.length} member${ids.length === 1 ? '' : 's'}`;
  }

  // ---- agents ----------------------------------------------------------------------------

  function agentAuth(a) {
    if (a.hasBearer) return 'bearer';
    if (a.oauth2) return 'oauth2';
    if (a.forwardCredentials) return 'forwarded';
    return 'none';
  }

  function agentHealth(h) {
    if (!h || !h.callsTotal) return { text: 'not called yet', cls: 'muted' };
    const ok = h.lastSuccessAt ? Date.parse(h.lastSuccessAt) : 0;
    const bad = h.lastFailureAt ? Date.parse(h.lastFailureAt) : 0;
    if (bad > ok) return { text: 'failing', cls: 'bad', title: h.lastError || '' };
    return { text: 'ok', cls: 'good' };
  }

  function renderAgents(agents, health) {
    const byId = new Map((health || []).map((h) => [h.agentId, h]));
    const body = document.createDocumentFragment();
    for (const a of agents) {
      const h = byId.get(a.id);
      const state = agentHealth(h);
      const breaker = (h && h.breakerState) || 'closed';
      const demo = a.metadata && a.metadata.demo ? ' (demo)' : '';
      const name = ((a.card && a.card.name) || '') + demo;
      let action = null;
      if (settings.adminActions) {
        action = el('button', { type: 'button', text: 'Remove' });
        action.addEventListener('click', () => removeAgent(a.id));
      }
      body.append(
        el(
          'tr',
          { data: { agentId: a.id, breaker } },
          el('td', { class: 'mono', text: a.id }),
          el('td', { text: name }),
          el('td', { class: 'mono wrap', text: safeUrl(a.url) }),
          el('td', { text: agentAuth(a) }),
          el('td', { class: state.cls, text: state.text, title: state.title }),
          el('td', { class: breaker === 'closed' ? 'good' : 'bad', text: breaker }),
          el('td', { text: h ? `${h.inFlight} / ${h.maxInFlight}` : '' }),
          el('td', { text: h ? `${h.callsTotal} / ${h.failuresTotal}` : '' }),
          el('td', {}, action),
        ),
      );
    }
    $('agents').tBodies[0].replaceChildren(body);
    $('agents-summary').textContent = `${agents.length} registered · health and breakers as this node sees them`;
  }

  async function removeAgent(id) {
    if (!window.confirm(`Remove agent ${id} from the gateway?`)) return;
    try {
      await rpc('agents/delete', { id }, true);
      await poll();
    } catch (e) {
      onFailure(e);
    }
  }

  // ---- polling ---------------------------------------------------------------------------

  async function poll() {
    const [status, agents, health] = await Promise.all([
      rpc('cluster/status'),
      rpc('agents/list'),
      rpc('agents/health'),
    ]);
    renderCluster(status);
    renderAgents(agents, health);
    showError('');
  }

  async function pollLoop() {
    while (started) {
      try {
        await poll();
      } catch (e) {
        onFailure(e);
      }
      await new Promise((resolve) => {
        pollTimer = setTimeout(resolve, POLL_MS);
      });
    }
  }

  // ---- tasks (the feed) ------------------------------------------------------------------

  function queueRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => {
      renderQueued = false;
      renderTasks();
    });
  }

  function renderTasks() {
    const lines = [...tasks.values()].sort((a, b) => b.seq - a.seq);
    for (const old of lines.splice(TASK_ROWS_MAX)) tasks.delete(old.id);
    const body = document.createDocumentFragment();
    for (const t of lines) {
      const state = stateName(t.state);
      const row = el(
        'tr',
        { class: t.id === selected ? 'selected' : '', data: { taskId: t.id, state } },
        el('td', { class: 'mono', text: t.id.slice(0, 8), title: t.id }),
        el('td', { class: 'mono', text: t.agentId }),
        el('td', {}, el('span', { class: 'state ' + state, text: state })),
        el('td', { text: time(t.updatedAt), title: t.updatedAt }),
        el('td', { text: t.events }),
        el('td', { class: 'mono muted', text: (t.contextId || '').slice(0, 8), title: t.contextId }),
      );
      row.addEventListener('click', () => openTask(t.id));
      body.append(row);
    }
    $('tasks').tBodies[0].replaceChildren(body);
    $('tasks-summary').textContent = `${lines.length} recent · live from this node`;
  }

  function onFeedEvent(name, data) {
    let value;
    try {
      value = JSON.parse(data);
    } catch (_) {
      return;
    }
    if (name === 'snapshot') {
      tasks.clear();
      for (const t of value.tasks || []) tasks.set(t.id, t);
      queueRender();
      if (selected) refreshDetailSoon();
    } else if (name === 'task') {
      const known = tasks.get(value.id);
      if (!known || known.seq < value.seq) tasks.set(value.id, value);
      queueRender();
      if (value.id === selected) refreshDetailSoon();
    }
  }

  // Reads an SSE body: `event:` and `data:` lines, events split by a blank line.
  async function readEvents(body, onEvent) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, '\n');
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = 'message';
        const data = [];
        for (const line of block.split('\n')) {
          if (line.startsWith(':')) continue;
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          const text = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
          if (field === 'event') name = text;
          else if (field === 'data') data.push(text);
        }
        if (data.length) onEvent(name, data.join('\n'));
      }
    }
  }

  function setLive(on, text) {
    const pill = $('live');
    pill.className = 'pill ' + (on ? 'on' : 'off');
    pill.textContent = text;
  }

  async function follow() {
    let delay = RECONNECT_MIN_MS;
    while (started) {
      const abort = new AbortController();
      feedAbort = abort;
      try {
        const res = await fetch('/ui/events', {
          headers: { Accept: 'text/event-stream', ...authHeaders() },
          cache: 'no-store',
          credentials: 'omit',
          signal: abort.signal,
        });
        if (res.status === 401) throw new AuthError('the credential was refused');
        if (res.status === 403) throw new AuthError('this credential is not an admin credential');
        if (!res.ok || !res.body) throw new Error('task feed: HTTP ' + res.status);
        setLive(true, 'feed: live');
        delay = RECONNECT_MIN_MS;
        await readEvents(res.body, onFeedEvent);
      } catch (e) {
        if (e instanceof AuthError) {
          onFailure(e);
          return;
        }
        if (abort.signal.aborted) return;
      }
      setLive(false, 'feed: reconnecting');
      await sleep(delay);
      delay = Math.min(delay * 2, RECONNECT_MAX_MS);
    }
  }

  // ---- task detail -----------------------------------------------------------------------

  // Parts as text; consecutive text parts (a streamed artifact's chunks) read as one.
  function partNodes(parts) {
    const nodes = [];
    let text = null;
    const flush = () => {
      if (text !== null) nodes.push(el('pre', { text }));
      text = null;
    };
    for (const p of parts || []) {
      if (typeof p.text === 'string') {
        text = (text || '') + p.text;
        continue;
      }
      flush();
      const what = [p.filename, p.mediaType].filter(Boolean).join(', ');
      if (p.data !== undefined) nodes.push(el('pre', { class: 'mono', text: JSON.stringify(p.data, null, 2) }));
      else if (p.url) nodes.push(el('div', { class: 'mono', text: `file ${what}: ${p.url}` }));
      else if (p.raw) nodes.push(el('div', { class: 'mono', text: `file ${what}: ${p.raw.length} base64 characters` }));
      else nodes.push(el('pre', { class: 'mono', text: JSON.stringify(p) }));
    }
    flush();
    return nodes;
  }

  function renderDetail(task, agentId, archived) {
    const state = stateName(task.status && task.status.state);
    const meta = [
      ['State', el('span', { class: 'state ' + state, text: state, data: { state } })],
      ['Agent', agentId + (archived ? ' (from the archive)' : '')],
      ['Context', task.contextId],
      ['Updated', (task.status && task.status.timestamp) || ''],
    ];
    const message = task.status && task.status.message;
    if (message) meta.push(['Status message', el('div', {}, ...partNodes(message.parts))]);
    $('detail-meta').replaceChildren(...meta.flatMap(([k, v]) => [el('dt', { text: k }), el('dd', {}, v)]));
    const history = (task.history || []).map((m) =>
      el('li', { data: { role: m.role || '' } }, el('span', { class: 'role', text: stateName(m.role).replace(/^role-/, '') }), ...partNodes(m.parts)),
    );
    $('detail-history').replaceChildren(...(history.length ? history : [el('li', { class: 'muted', text: 'none' })]));
    const artifacts = (task.artifacts || []).map((a) =>
      el('li', { data: { artifactId: a.artifactId || '' } }, el('span', { class: 'role', text: a.name || a.artifactId || 'artifact' }), ...partNodes(a.parts)),
    );
    $('detail-artifacts').replaceChildren(...(artifacts.length ? artifacts : [el('li', { class: 'muted', text: 'none' })]));
    $('detail-cancel').hidden = !(settings.adminActions && !isTerminal(state));
  }

  // The task as this node holds it (/ui/tasks/{id}): unlike GetTask, never asks the agent.
  async function fetchTask(id) {
    const res = await fetch('/ui/tasks/' + encodeURIComponent(id), {
      headers: authHeaders(),
      cache: 'no-store',
      credentials: 'omit',
    });
    if (res.status === 401) throw new AuthError('the credential was refused');
    if (res.status === 403) throw new AuthError('this credential is not an admin credential');
    const body = await res.json();
    if (!res.ok) throw new Error(body.error || 'HTTP ' + res.status);
    return body;
  }

  async function loadDetail() {
    const id = selected;
    if (!id) return;
    try {
      const found = await fetchTask(id);
      if (id === selected) renderDetail(found.task, found.agentId, found.archived);
    } catch (e) {
      if (e instanceof AuthError) onFailure(e);
      else if (id === selected) $('detail-meta').replaceChildren(el('dt', { text: 'Error' }), el('dd', { class: 'bad', text: e.message }));
    }
  }

  function refreshDetailSoon() {
    if (detailTimer) return;
    detailTimer = setTimeout(() => {
      detailTimer = null;
      loadDetail();
    }, DETAIL_REFRESH_MS);
  }

  function openTask(id) {
    selected = id;
    $('detail').hidden = false;
    $('detail-id').textContent = id;
    $('detail-meta').replaceChildren();
    $('detail-history').replaceChildren();
    $('detail-artifacts').replaceChildren();
    $('detail-cancel').hidden = true;
    queueRender();
    loadDetail();
  }

  function closeTask() {
    selected = null;
    $('detail').hidden = true;
    queueRender();
  }

  async function cancelSelected() {
    const id = selected;
    if (!id || !window.confirm(`Cancel task ${id}?`)) return;
    try {
      await rpc('CancelTask', { id }, true);
    } catch (e) {
      onFailure(e);
    }
    loadDetail();
  }

  // ---- start -----------------------------------------------------------------------------

  function start() {
    if (started) return;
    $('login').hidden = true;
    $('main').hidden = false;
    $('logout').hidden = !settings.authRequired;
    started = true;
    pollLoop();
    follow();
  }

  async function init() {
    $('login-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const value = $('token').value.trim();
      if (!value) return;
      sessionStorage.setItem(CREDENTIAL_KEY, value);
      $('token').value = '';
      start();
    });
    $('logout').addEventListener('click', () => askCredential(''));
    $('detail-close').addEventListener('click', closeTask);
    $('detail-cancel').addEventListener('click', cancelSelected);
    try {
      const res = await fetch('/ui/config.json', { cache: 'no-store', credentials: 'omit' });
      Object.assign(settings, await res.json());
    } catch (e) {
      showError('cannot read /ui/config.json: ' + e.message);
      return;
    }
    $('node').textContent = `node ${settings.nodeId} · v${settings.version}`;
    $('mode').textContent = settings.adminActions ? 'admin actions on' : 'read-only';
    if (settings.authRequired && !credential()) askCredential('');
    else start();
  }

  document.addEventListener('DOMContentLoaded', init);
})();
