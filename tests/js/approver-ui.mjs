// Drives Keyward's approvers' page (/ui/) in headless Chromium as people would: each person
// signs in through the page's sign-in (the development issuer's login form, or a real OpenID
// provider's), opens requests, reads them and votes. Reports what each page showed; the Rust
// test compares that with what it sent and with the server's state.
//
// Usage: node approver-ui.mjs run INPUT.json, where INPUT.json holds
//   {"base": URL, "shots": DIR, "eth": ID, "btc": ID, "doc": ID, "login": "dev"|"idp"}
// Prints one JSON line of observations.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const input = JSON.parse(readFileSync(process.argv[3], 'utf8'));
const { base, shots } = input;
const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const out = { axe: {}, errors: [], external: [] };
let lastPage = null;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});

// Serious and critical axe-core violations on the page as it is now.
async function axe(page, name) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length }));
  });
  out.axe[name] = result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
}

async function signIn(person, hash) {
  const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  // Nothing leaves the machine: requests to other hosts are refused and reported with the
  // page that made them (the provider's development forms link a web font).
  await context.route((url) => url.hostname !== '127.0.0.1' && url.protocol !== 'data:', (route) => {
    out.external.push({ url: route.request().url(), from: route.request().frame().url() });
    return route.abort();
  });
  const page = await context.newPage();
  lastPage = page;
  out.navigations = [];
  page.on('framenavigated', (f) => { if (f === page.mainFrame()) out.navigations.push(f.url()); });
  page.setDefaultTimeout(20000);
  page.on('console', (m) => { if (m.type() === 'error') out.errors.push(`${person.subject}: ${m.text()}`); });
  page.on('pageerror', (e) => out.errors.push(`${person.subject}: ${e.message}`));
  page.on('response', (r) => { if (r.status() >= 400) out.errors.push(`${person.subject}: ${r.status()} ${r.url()}`); });
  page.on('console', (m) => { if (m.type() === 'error' && m.text().includes('net::ERR_FAILED')) out.errors.pop(); });
  await page.goto(`${base}/ui/${hash ?? ''}`);
  await page.locator('#sign-in').click();
  if (input.login === 'idp') {
    // oidc-provider's development interactions: any login, then consent.
    await page.locator('input[name="login"]').fill(person.subject);
    await page.locator('input[name="password"]').fill('any');
    await page.locator('button[type="submit"]').click();
    await page.locator('button[type="submit"]').click();
  } else {
    if (!out.axe['dev-login']) await axe(page, 'dev-login');
    await page.locator('#subject').fill(person.subject);
    for (const role of person.roles) await page.locator(`input[name="role"][value="${role}"]`).check();
    await page.locator('#other_roles').fill(person.other ?? '');
    await page.locator('button[type="submit"]').click();
  }
  await page.locator('#who:not([hidden])').waitFor();
  out.signed_in_url ??= {};
  out.signed_in_url[person.subject] = page.url();
  return page;
}

async function openRequest(page, id) {
  await page.evaluate((h) => { location.hash = h; }, `#/requests/${id}`);
  await page.locator('#summary').waitFor();
  await page.locator(`text=${id}`).first().waitFor();
}

// Two approvers sign in through a real OpenID provider and approve one request.
async function idpScenario() {
  const alice = await signIn({ subject: 'alice' }, `#/requests/${input.eth}`);
  await alice.locator('#summary').waitFor();
  out.who_alice = await alice.locator('#who-name').innerText();
  out.eth_text = await alice.locator('main').innerText();
  await axe(alice, 'request-eth-idp');
  await alice.locator('#approve').click();
  await alice.locator('text=alice: approve').waitFor();
  const bob = await signIn({ subject: 'bob' }, `#/requests/${input.eth}`);
  await bob.locator('#summary').waitFor();
  await bob.locator('#approve').click();
  await bob.locator('#request-status', { hasText: 'signed' }).waitFor();
  out.eth_after_bob = await bob.locator('#request-status').innerText();
  out.storage = await bob.evaluate(() => JSON.stringify({ local: { ...localStorage }, session: { ...sessionStorage } }));
}

async function devScenario() {
  const alice = await signIn({ subject: 'alice', roles: ['approver'], other: 'treasury' });
  // The pending list shows the three requests.
  for (const id of [input.eth, input.btc, input.doc]) await alice.locator(`[data-request="${id}"]`).waitFor();
  out.pending_text = await alice.locator('main').innerText();
  await axe(alice, 'pending');
  await openRequest(alice, input.eth);
  out.eth_text = await alice.locator('main').innerText();
  await axe(alice, 'request-eth');
  await alice.locator('#comment').fill('checked the recipient');
  await alice.locator('#approve').click();
  await alice.locator('text=alice: approve').waitFor();
  out.eth_after_alice = await alice.locator('#request-status').innerText();

  // A second approver, in another browser, completes the quorum from a link to the request.
  const bob = await signIn({ subject: 'bob', roles: ['approver'], other: 'treasury' }, `#/requests/${input.eth}`);
  await bob.locator('#summary').waitFor();
  await bob.locator('#approve').click();
  await bob.locator('#request-status', { hasText: 'signed' }).waitFor();
  out.eth_after_bob = await bob.locator('#request-status').innerText();
  // Alice's page follows without a reload.
  await alice.locator('#request-status', { hasText: 'signed' }).waitFor();
  out.eth_alice_sees = await alice.locator('#request-status').innerText();

  await openRequest(alice, input.btc);
  out.btc_text = await alice.locator('main').innerText();
  await axe(alice, 'request-psbt');
  await openRequest(alice, input.doc);
  out.doc_text = await alice.locator('main').innerText();
  await axe(alice, 'request-document');

  // The requester, who is an approver too: sees the signed request and no approve button on
  // the one still waiting.
  const carol = await signIn({ subject: 'carol', roles: ['signer', 'approver'], other: 'treasury' });
  await carol.evaluate(() => { location.hash = '#/mine'; });
  for (const id of [input.eth, input.btc, input.doc]) await carol.locator(`[data-request="${id}"]`).waitFor();
  out.mine_text = await carol.locator('main').innerText();
  await axe(carol, 'mine');
  await openRequest(carol, input.eth);
  out.carol_eth_status = await carol.locator('#request-status').innerText();
  await openRequest(carol, input.btc);
  out.carol_btc_text = await carol.locator('main').innerText();
  out.carol_btc_approve_buttons = await carol.locator('#approve').count();

  // An approver without the treasury role follows a link to the PSBT: the API does not show
  // it to her, and the page says so, with nothing to vote on.
  const erin = await signIn({ subject: 'erin', roles: ['approver'] }, `#/requests/${input.btc}`);
  await erin.locator('[role="alert"]').waitFor();
  out.erin_error = await erin.locator('[role="alert"]').innerText();
  out.erin_buttons = await erin.locator('#approve, #reject').count();
  // Her refused read is expected: it is reported apart from the errors nobody expects.
  out.erin_errors = out.errors.filter((e) => e.startsWith('erin: '));
  out.errors = out.errors.filter((e) => !e.startsWith('erin: '));

  // Bob rejects the document with a comment; the page says so.
  await openRequest(bob, input.doc);
  await bob.locator('#comment').fill('wrong contract version');
  await bob.locator('#reject').click();
  await bob.locator('#request-status', { hasText: 'rejected' }).waitFor();
  out.doc_after_reject = await bob.locator('main').innerText();

  // An auditor's view of the log.
  const dave = await signIn({ subject: 'dave', roles: ['auditor'] });
  await dave.evaluate(() => { location.hash = '#/audit'; });
  await dave.locator('#chain').waitFor();
  out.audit_text = await dave.locator('main').innerText();
  await axe(dave, 'audit');
  // Nothing a token looks like sits in storage the page can reach.
  out.storage = await dave.evaluate(() => JSON.stringify({ local: { ...localStorage }, session: { ...sessionStorage }, cookie: document.cookie }));
}

try {
  if (input.login === 'idp') await idpScenario();
  else await devScenario();
} catch (e) {
  out.failure = String(e.stack ?? e);
  out.failure_page = JSON.stringify(out.navigations) + '\n' + (lastPage ? `${lastPage.url()}\n${await lastPage.innerText('body').catch(() => '')}` : null);
} finally {
  await browser.close();
}
process.stdout.write(`${JSON.stringify(out)}\n`);
