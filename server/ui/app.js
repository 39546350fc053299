// Keyward's page for approvers: sign in with the configured OpenID provider (authorization
// code with PKCE), then the same /v1 API as any client, with the signed-in person's token.
// The token lives only in this page's memory: never in a URL, a cookie or localStorage.
import { describe } from './decode.js';

const session = { token: null, me: null, config: null, stop: [] };
const PKCE_KEY = 'keyward.ui.signin';

// ---- DOM -------------------------------------------------------------------------------
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function show(...nodes) {
  const main = document.getElementById('main');
  main.replaceChildren(...nodes.flat(Infinity).filter((n) => n != null && n !== false));
}

function announce(text) {
  document.getElementById('status').textContent = text;
}

function valueNode(v) {
  if (v && typeof v === 'object' && 'mono' in v) return h('code', {}, v.mono);
  if (v && typeof v === 'object' && 'tree' in v) return tree(v.tree);
  return document.createTextNode(String(v));
}

function tree(v) {
  if (Array.isArray(v)) return h('ul', { class: 'tree' }, v.map((x, i) => h('li', {}, `[${i}] `, tree(x))));
  if (v && typeof v === 'object') {
    return h('ul', { class: 'tree' }, Object.entries(v).map(([k, x]) => h('li', {}, h('strong', {}, k), ': ', tree(x))));
  }
  return h('code', {}, JSON.stringify(v));
}

function fields(rows) {
  return h('dl', { class: 'fields' }, rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, valueNode(v))]));
}

function when(ts) {
  if (!ts) return '—';
  const d = new Date(ts);
  return Number.isNaN(d.getTime()) ? ts : `${d.toLocaleString()} (${ts})`;
}

// ---- API -------------------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path, body) {
  const headers = { authorization: `Bearer ${session.token}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await resp.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  if (resp.status === 401) {
    session.token = null;
    renderSignedOut('Your sign-in ended; sign in again.');
    throw new ApiError(401, json?.code, json?.message ?? 'signed out');
  }
  if (!resp.ok) throw new ApiError(resp.status, json?.code ?? String(resp.status), json?.message ?? text);
  return json;
}

function errorBox(e) {
  return h('div', { class: 'error', role: 'alert' }, h('strong', {}, e.code ? `${e.code}: ` : 'Error: '), e.message);
}

// ---- Sign-in (authorization code + PKCE, RFC 7636 S256) ---------------------------------
function b64url(bytes) {
  let s = '';
  for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function randomString() {
  return b64url(crypto.getRandomValues(new Uint8Array(32)));
}

async function endpoints(signIn) {
  if (signIn.authorization_endpoint && signIn.token_endpoint) return signIn;
  const resp = await fetch(`${signIn.issuer}/.well-known/openid-configuration`);
  if (!resp.ok) throw new Error(`the provider's discovery document answered ${resp.status}`);
  const d = await resp.json();
  // The page may connect only to this server and the issuer's origin (its CSP says so).
  if (new URL(d.token_endpoint).origin !== new URL(signIn.issuer).origin) {
    throw new Error(`the provider's token endpoint ${d.token_endpoint} is not on its issuer's origin, which is the only one this page may reach`);
  }
  return { ...signIn, authorization_endpoint: d.authorization_endpoint, token_endpoint: d.token_endpoint };
}

function redirectUri(signIn) {
  return signIn.redirect_uri ?? `${location.origin}/ui/`;
}

async function startSignIn() {
  const signIn = await endpoints(session.config.sign_in);
  const verifier = randomString();
  const state = randomString();
  const challenge = b64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)));
  sessionStorage.setItem(PKCE_KEY, JSON.stringify({ verifier, state, back: location.hash || '#/pending' }));
  const url = new URL(signIn.authorization_endpoint);
  const params = {
    response_type: 'code',
    client_id: signIn.client_id,
    redirect_uri: redirectUri(signIn),
    scope: signIn.scope,
    state,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    ...signIn.authorize_params,
  };
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  location.assign(url.toString());
}

async function finishSignIn(query) {
  const saved = JSON.parse(sessionStorage.getItem(PKCE_KEY) ?? 'null');
  sessionStorage.removeItem(PKCE_KEY);
  // The code leaves the address bar at once.
  history.replaceState(null, '', `${location.pathname}${saved?.back ?? '#/pending'}`);
  if (query.get('error')) throw new Error(`the provider refused the sign-in: ${query.get('error')} ${query.get('error_description') ?? ''}`);
  if (!saved || saved.state !== query.get('state')) throw new Error('the sign-in answer does not belong to this page (state mismatch); sign in again');
  const signIn = await endpoints(session.config.sign_in);
  const form = new URLSearchParams({
    grant_type: 'authorization_code',
    code: query.get('code'),
    redirect_uri: redirectUri(signIn),
    client_id: signIn.client_id,
    code_verifier: saved.verifier,
  });
  const resp = await fetch(signIn.token_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: form,
  });
  const json = await resp.json().catch(() => ({}));
  if (!resp.ok || !json.access_token) throw new Error(`the token exchange failed: ${json.error ?? resp.status} ${json.error_description ?? ''}`);
  session.token = json.access_token;
}

function renderSignedOut(message) {
  stopTimers();
  document.getElementById('nav').hidden = true;
  document.getElementById('who').hidden = true;
  const signIn = session.config?.sign_in;
  show(
    h('h1', {}, 'Keyward approvals'),
    message ? h('div', { class: 'error', role: 'alert' }, message) : null,
    h('p', {}, 'Review what will be signed, decoded, and approve or reject it.'),
    signIn
      ? h('button', { class: 'primary', id: 'sign-in', onclick: () => startSignIn().catch((e) => renderSignedOut(e.message)) },
          signIn.development ? 'Sign in (development issuer)' : 'Sign in')
      : h('p', { class: 'warning' }, 'No sign-in is configured: set [ui] issuer and client_id in the server configuration.'),
  );
}

// ---- Views -------------------------------------------------------------------------------
function stopTimers() {
  for (const stop of session.stop.splice(0)) stop();
}

function setNav(view) {
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.view === view) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

function isMine(r) {
  return r.requester.subject === session.me.subject && r.requester.issuer === session.me.issuer;
}

function requestItem(r) {
  let summary;
  try { summary = describe(r.intent).summary; } catch { summary = r.operation; }
  return h('li', { 'data-request': r.id },
    h('a', { class: 'title', href: `#/requests/${encodeURIComponent(r.id)}` }, summary),
    h('span', { class: `badge ${r.status}` }, r.status.replace('_', ' ')),
    isMine(r) ? h('span', { class: 'badge' }, 'yours') : null,
    h('div', { class: 'muted' }, `${r.operation} on key ${r.key_id} · asked by ${r.requester.subject} · ${when(r.created_at)}`),
    r.status === 'pending_approval' ? h('div', { class: 'muted' }, `Approvals: ${r.votes.filter((v) => v.decision === 'approve').length} of ${r.approvals_required} · expires ${when(r.expires_at)}`) : null);
}

async function listView(view, title, load, empty) {
  setNav(view);
  let last = '';
  const refresh = async () => {
    try {
      const items = await load();
      const key = JSON.stringify(items.map((r) => [r.id, r.status, r.votes.length]));
      if (key === last) return;
      last = key;
      show(h('h1', {}, title),
        items.length ? h('ul', { class: 'requests' }, items.map(requestItem)) : h('p', { class: 'muted' }, empty));
    } catch (e) {
      if (e.status !== 401) show(h('h1', {}, title), errorBox(e));
    }
  };
  await refresh();
  const timer = setInterval(refresh, 3000);
  session.stop.push(() => clearInterval(timer));
}

function pendingView() {
  return listView('pending', 'Waiting for approval',
    async () => (await api('GET', '/v1/requests?status=pending&limit=100')).items,
    'Nothing is waiting for you.');
}

function mineView() {
  return listView('mine', 'My requests',
    async () => (await api('GET', '/v1/requests?limit=200')).items.filter(isMine),
    'You have not asked for anything that needs approval.');
}

// Names the server found for the request's addresses in the key's policy settings
// (`address_labels`: an allowlist entry, or a labelled address).
function addressLabels(r) {
  return new Map(Object.entries(r.address_labels ?? {}));
}

function requirementRows(r) {
  return r.requirements.map((q) => [
    q.policy || 'policy',
    `${q.met ? 'met' : 'not met'}: ${q.approved_by.length} of ${q.approvals_required} approval(s)` +
      `${q.approver_roles.length ? ` from ${q.approver_roles.join(' or ')}` : ''}` +
      `${q.approved_by.length ? ` (approved by ${q.approved_by.join(', ')})` : ''}. ${q.reason}`,
  ]);
}

function actions(r, rerender) {
  if (r.status !== 'pending_approval') return null;
  const panel = h('section', { class: 'panel', 'aria-labelledby': 'decide' }, h('h2', { id: 'decide' }, 'Your decision'));
  if (isMine(r)) {
    panel.append(
      h('p', {}, 'You asked for this signature, so someone else must approve it.'),
      h('div', { class: 'actions' }, h('button', { id: 'cancel', onclick: () => vote(r, 'cancel', null, panel, rerender) }, 'Cancel my request')),
    );
    return panel;
  }
  if (!session.me.roles.includes('approver')) {
    panel.append(h('p', {}, 'You may see this request, but only approvers vote on it.'));
    return panel;
  }
  const comment = h('textarea', { id: 'comment', rows: '3', maxlength: '1000' });
  panel.append(
    h('label', { for: 'comment' }, 'Comment (optional, kept in the audit log)'),
    comment,
    h('div', { class: 'actions' },
      h('button', { class: 'approve', id: 'approve', onclick: () => vote(r, 'approve', comment.value, panel, rerender) }, 'Approve'),
      h('button', { class: 'reject', id: 'reject', onclick: () => vote(r, 'reject', comment.value, panel, rerender) }, 'Reject')),
  );
  return panel;
}

async function vote(r, what, comment, panel, rerender) {
  for (const b of panel.querySelectorAll('button')) b.disabled = true;
  try {
    const body = what === 'cancel' ? undefined : { comment: comment || null };
    const updated = await api('POST', `/v1/requests/${encodeURIComponent(r.id)}/${what}`, body ?? {});
    announce(what === 'approve' ? 'Approved.' : what === 'reject' ? 'Rejected.' : 'Cancelled.');
    rerender(updated);
  } catch (e) {
    panel.querySelector('.error')?.remove();
    panel.append(errorBox(e));
    for (const b of panel.querySelectorAll('button')) b.disabled = false;
  }
}

function requestPage(r, labels, rerender) {
  const d = describe(r.intent, labels);
  const info = [
    ['Id', { mono: r.id }],
    ['Status', r.status.replace('_', ' ')],
    ['Key', { mono: r.key_id }],
    ['Operation', r.operation],
    ['Asked by', `${r.requester.subject} (${r.requester.issuer})`],
    ['Asked at', when(r.created_at)],
    ['Expires', when(r.expires_at)],
    ['Why approval', r.reason],
  ];
  if (r.error) info.push(['Failure', r.error]);
  const votes = r.votes.length
    ? h('ul', {}, r.votes.map((v) => h('li', {}, `${v.subject}: ${v.decision} at ${when(v.at)}${v.comment ? `: “${v.comment}”` : ''}`)))
    : h('p', { class: 'muted' }, 'No votes yet.');
  const trace = r.policy.trace.map((t) => [t.policy, `${t.decision}${t.reason ? `: ${t.reason}` : ''}`]);
  return [
    h('p', {}, h('a', { href: '#/pending' }, '← Waiting for approval')),
    h('h1', {}, d.title, ' ', h('span', { class: `badge ${r.status}`, id: 'request-status' }, r.status.replace('_', ' '))),
    h('p', { id: 'summary' }, d.summary),
    d.warnings.map((w) => h('div', { class: 'warning', role: 'note' }, w)),
    d.sections.map((s) => h('section', { class: 'panel' }, h('h2', {}, s.heading), fields(s.rows))),
    h('section', { class: 'panel' }, h('h2', {}, 'Request'), fields(info)),
    h('section', { class: 'panel' }, h('h2', {}, 'Approvals needed'), r.requirements.length ? fields(requirementRows(r)) : h('p', {}, `${r.approvals_required} approval(s)`)),
    h('section', { class: 'panel' }, h('h2', {}, 'Votes'), votes),
    h('section', { class: 'panel' }, h('h2', {}, 'Policy decisions'), fields(trace)),
    r.status === 'signed' ? h('div', { class: 'panel', id: 'signed' }, 'Signed: the signature was made after the last approval.') : null,
    actions(r, rerender),
  ];
}

async function requestView(id) {
  setNav(null);
  let current;
  let labels = new Map();
  const render = (r) => {
    current = r;
    const comment = document.getElementById('comment')?.value;
    show(...requestPage(r, labels, render));
    if (comment && document.getElementById('comment')) document.getElementById('comment').value = comment;
  };
  try {
    const r = await api('GET', `/v1/requests/${encodeURIComponent(id)}`);
    labels = addressLabels(r);
    render(r);
  } catch (e) {
    if (e.status !== 401) show(h('h1', {}, 'Request'), errorBox(e));
    return;
  }
  // Follow the request without reloading: long polls while it waits.
  let live = true;
  session.stop.push(() => { live = false; });
  while (live && current.status === 'pending_approval') {
    try {
      const r = await api('GET', `/v1/requests/${encodeURIComponent(id)}?wait=20`);
      if (live && (r.status !== current.status || r.votes.length !== current.votes.length)) render(r);
    } catch {
      await new Promise((ok) => setTimeout(ok, 3000));
    }
  }
}

function chainCheck(items) {
  const sorted = [...items].sort((a, b) => a.seq - b.seq);
  for (let i = 1; i < sorted.length; i += 1) {
    if (sorted[i].seq === sorted[i - 1].seq + 1 && sorted[i].prev_hash !== sorted[i - 1].hash) {
      return `broken between records ${sorted[i - 1].seq} and ${sorted[i].seq}`;
    }
  }
  return `each record on this page links to the one before it (${sorted.length} records); \`keyward audit verify\` checks the whole chain`;
}

async function auditView(query) {
  setNav('audit');
  const filters = ['action', 'key_id', 'subject', 'since', 'until'];
  const inputs = Object.fromEntries(filters.map((f) => [f, h('input', { id: `f-${f}`, name: f, value: query.get(f) ?? '' })]));
  const form = h('form', { class: 'filters', onsubmit: (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const f of filters) if (inputs[f].value) q.set(f, inputs[f].value);
    location.hash = `#/audit?${q}`;
  } },
  filters.map((f) => h('div', {}, h('label', { for: `f-${f}` }, f.replace('_', ' ')), inputs[f])),
  h('div', {}, h('button', { type: 'submit' }, 'Filter')));
  const q = new URLSearchParams({ limit: '100' });
  for (const f of filters) if (query.get(f)) q.set(f, query.get(f));
  try {
    const page = await api('GET', `/v1/audit?${q}`);
    const rows = page.items.map((a) => h('tr', {},
      h('td', {}, String(a.seq)), h('td', {}, when(a.ts)), h('td', {}, a.action), h('td', {}, a.outcome),
      h('td', {}, a.actor.subject), h('td', {}, a.key_id ? h('code', {}, a.key_id) : '—'),
      h('td', {}, a.request_id ? h('code', {}, a.request_id) : '—')));
    show(h('h1', {}, 'Audit log'), form,
      h('p', { id: 'chain' }, `Chain: ${chainCheck(page.items)}.`),
      h('table', {}, h('caption', { class: 'muted' }, 'Newest first'),
        h('thead', {}, h('tr', {}, ['Seq', 'Time', 'Action', 'Outcome', 'Actor', 'Key', 'Request'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, rows)));
  } catch (e) {
    if (e.status !== 401) show(h('h1', {}, 'Audit log'), form, errorBox(e));
  }
}

async function route() {
  stopTimers();
  if (!session.token) { renderSignedOut(); return; }
  const [path, qs] = (location.hash.slice(1) || '/pending').split('?');
  const query = new URLSearchParams(qs ?? '');
  const parts = path.split('/').filter(Boolean);
  if (parts[0] === 'requests' && parts[1]) await requestView(decodeURIComponent(parts[1]));
  else if (parts[0] === 'mine') await mineView();
  else if (parts[0] === 'audit') await auditView(query);
  else await pendingView();
  document.getElementById('main').focus({ preventScroll: true });
}

async function start() {
  session.config = await fetch('/ui/config.json').then((r) => r.json());
  const query = new URLSearchParams(location.search);
  if (query.has('code') || query.has('error')) {
    try {
      await finishSignIn(query);
    } catch (e) {
      renderSignedOut(e.message);
      return;
    }
  }
  if (!session.token) { renderSignedOut(); return; }
  session.me = await api('GET', '/v1/whoami');
  document.getElementById('who-name').textContent = `${session.me.subject} (${session.me.roles.join(', ') || 'no roles'})`;
  document.getElementById('nav').hidden = false;
  document.getElementById('who').hidden = false;
  document.getElementById('nav-audit').hidden = !session.me.roles.some((r) => r === 'auditor' || r === 'admin');
  document.getElementById('sign-out').addEventListener('click', () => {
    session.token = null;
    session.me = null;
    renderSignedOut('Signed out.');
  });
  window.addEventListener('hashchange', route);
  await route();
}

start().catch((e) => renderSignedOut(`The page could not start: ${e.message}`));
