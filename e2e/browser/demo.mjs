// Drives the demo chat (/demo/) in headless Debian Chromium: alice and bob,
// each in a browser context of their own, chat over the real server.
//
//   node e2e/browser/demo.mjs http://127.0.0.1:<http-port>
//
// Run by bins/im-server/tests/it/demo.rs against a fresh server. Every wait
// is for DOM state and bounded (STEP_MS); on failure both pages are
// screenshotted into $IM_DEMO_ARTIFACTS (default: a temp dir) and the
// script exits 1. Never downloads a browser: /usr/bin/chromium (or
// $CHROMIUM) is launched.
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { chromium } from 'playwright-core';

const STEP_MS = 15000;
const base = process.argv[2];
if (!base || !/^https?:\/\/[^/]+$/.test(base)) {
  console.error('usage: node demo.mjs http://host:port');
  process.exit(2);
}
const artifacts = process.env.IM_DEMO_ARTIFACTS || mkdtempSync(join(tmpdir(), 'im-demo-'));
mkdirSync(artifacts, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true, // Playwright adds --headless and a fresh temporary --user-data-dir
  timeout: 60000,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--disable-dev-shm-usage',
  ],
});

const pages = {};
const problems = [];
let step = 'start';

async function user(name) {
  const ctx = await browser.newContext();
  ctx.setDefaultTimeout(STEP_MS);
  const page = await ctx.newPage();
  page.on('pageerror', (e) => problems.push(`${name}: uncaught ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') console.log(`[${name} console] ${m.text()}`); });
  pages[name] = page;
  return page;
}

function log(s) {
  step = s;
  console.log(`- ${s}`);
}

/** Waits until `selector` matches exactly `n` elements. */
async function count(page, selector, n) {
  await page.waitForFunction(
    ([s, k]) => document.querySelectorAll(s).length === k,
    [selector, n],
    { timeout: STEP_MS, polling: 50 },
  );
}

/** The element matching `selector` whose text contains `text`. */
function withText(page, selector, text) {
  return page.locator(selector, { hasText: text }).first();
}

async function visible(locator) {
  await locator.waitFor({ state: 'visible', timeout: STEP_MS });
}

async function register(page, name) {
  await page.goto(`${base}/demo/`);
  await page.fill('#username', name);
  await page.fill('#password', `${name}-password-1`);
  await page.fill('#nickname', name.toUpperCase());
  await page.click('#register');
  await visible(page.locator('#chat-view'));
  await visible(page.locator('#conn[data-state="online"]'));
}

async function say(page, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
  // Committed: "sent", or already "read" when the peer has the chat open.
  await visible(withText(page, '#messages .msg.own', text)
    .locator('.state[data-state="sent"], .state[data-state="read"]'));
}

const conv = (convId) => `#conversations li[data-conv="${convId}"]`;
const ONE = 'single_alice_bob';

try {
  const alice = await user('alice');
  const bob = await user('bob');

  log('both register and come online');
  await register(alice, 'alice');
  await register(bob, 'bob');

  log('a bad login is refused with a message and no session');
  {
    const eve = await user('eve');
    await eve.goto(`${base}/demo/`);
    await eve.fill('#username', 'alice');
    await eve.fill('#password', 'not-the-password');
    await eve.click('#login');
    await visible(eve.locator('#auth-error', { hasText: /./ }));
    if (await eve.locator('#chat-view').isVisible()) throw new Error('eve got in');
    await eve.context().close();
    delete pages.eve;
  }

  log('alice opens a 1:1 with bob (bob shown online) and sends');
  await alice.fill('#peer-id', 'bo');
  await count(alice, '#peer-suggestions option[value="bob"]', 1); // user search
  await alice.fill('#peer-id', 'bob');
  await alice.press('#peer-id', 'Enter');
  await visible(withText(alice, '#chat-title', 'bob'));
  await visible(alice.locator('#chat-presence[data-presence="online"]'));
  await say(alice, 'hello bob');

  log('bob sees the conversation with an unread badge, alice online');
  await visible(withText(bob, `${conv(ONE)} .badge`, '1'));
  await visible(bob.locator(`${conv(ONE)} .presence[data-presence="online"]`));
  await visible(withText(bob, `${conv(ONE)} .last`, 'hello bob'));

  log('bob opens it; the badge clears and alice sees the read mark');
  await bob.click(conv(ONE));
  await visible(withText(bob, '#messages .msg.other .text', 'hello bob'));
  await count(bob, `${conv(ONE)} .badge:not(:empty)`, 0);
  await visible(withText(alice, '#messages .msg.own', 'hello bob').locator('.state[data-state="read"]'));

  log('bob types; alice sees "typing"; bob sends and it clears');
  await bob.locator('#text').pressSequentially('hi al', { delay: 20 });
  await visible(withText(alice, '#typing', 'bob is typing'));
  await bob.locator('#text').pressSequentially('ice', { delay: 20 });
  await bob.press('#text', 'Enter');
  await visible(withText(alice, '#messages .msg.other .text', 'hi alice'));
  await count(alice, '#typing:empty', 1);

  log('user content is shown as text, never as markup');
  const markup = '<img src=x onerror="window.pwned=1"><b>bold</b>';
  await say(alice, markup);
  await visible(withText(bob, '#messages .msg.other .text', '<b>bold</b>'));
  await count(bob, '#messages img, #messages b', 0);
  if (await bob.evaluate(() => window.pwned === 1)) throw new Error('markup ran');

  log('alice recalls a message; both see it recalled');
  await say(alice, 'oops, wrong chat');
  await visible(withText(bob, '#messages .msg.other .text', 'oops, wrong chat'));
  // Bob's read of it is recorded before the recall (a read receipt racing
  // the recall leaves it unread on the server, and the badge after bob's
  // reload below would count it).
  await visible(withText(alice, '#messages .msg.own', 'oops, wrong chat').locator('.state[data-state="read"]'));
  await withText(alice, '#messages .msg.own', 'oops, wrong chat').locator('.recall').click();
  await count(alice, '#messages .msg.own.recalled', 1);
  await count(bob, '#messages .msg.other.recalled', 1);
  await visible(withText(bob, '#messages .msg.recalled .text', 'message recalled'));
  await count(bob, '#messages .msg', 4);

  log('alice creates a group with bob; bob gets it with an unread badge');
  await alice.fill('#group-name', 'team');
  await alice.fill('#group-members', 'bob');
  await alice.click('#new-group button');
  await visible(withText(alice, '#chat-title', 'team'));
  await say(alice, 'hello team');
  const group = bob.locator('#conversations li[data-conv^="group_"]');
  await visible(withText(bob, '#conversations li[data-conv^="group_"] .title', 'team'));
  await visible(withText(bob, '#conversations li[data-conv^="group_"] .badge', '1'));
  await group.click();
  await visible(withText(bob, '#messages .msg.other', 'hello team').locator('.from', { hasText: 'alice' }));
  await count(bob, '#conversations li[data-conv^="group_"] .badge:not(:empty)', 0);
  await say(bob, 'hi team');
  await visible(withText(alice, '#messages .msg.other .text', 'hi team'));
  await visible(withText(alice, '#messages .msg.own', 'hello team').locator('.state[data-state="read"]'));

  log('alice invites carol to the group; carol gets its messages from then on');
  {
    const carol = await user('carol');
    await register(carol, 'carol');
    await alice.fill('#invite-id', 'carol');
    await alice.press('#invite-id', 'Enter');
    await count(alice, '#invite-id:placeholder-shown', 1); // cleared on success
    await say(alice, 'welcome carol');
    await visible(withText(carol, '#conversations li[data-conv^="group_"] .title', 'team'));
    await visible(carol.locator('#conversations li[data-conv^="group_"] .badge:not(:empty)'));
    await carol.click('#conversations li[data-conv^="group_"]');
    await visible(withText(carol, '#messages .msg.other', 'welcome carol').locator('.from', { hasText: 'alice' }));
    await visible(withText(bob, '#messages .msg.other .text', 'welcome carol'));
    await carol.context().close();
    delete pages.carol;
  }

  log('bob reloads while alice sends; history syncs without duplicates');
  await alice.click(conv(ONE));
  await count(alice, '#messages .msg', 4);
  await Promise.all([
    bob.reload(),
    (async () => { await alice.fill('#text', 'sent during the reload'); await alice.press('#text', 'Enter'); })(),
  ]);
  await visible(bob.locator('#conn[data-state="online"]'));
  await visible(withText(bob, `${conv(ONE)} .badge`, '1'));
  await bob.click(conv(ONE));
  await visible(withText(bob, '#messages .msg.other .text', 'sent during the reload'));
  await count(bob, '#messages .msg', 5);
  await visible(withText(bob, '#messages .msg.other.recalled .text', 'message recalled'));
  await say(alice, 'after the reload');
  await visible(withText(bob, '#messages .msg.other .text', 'after the reload'));
  await count(bob, '#messages .msg', 6);
  const texts = await bob.locator('#messages .msg .text').allTextContents();
  const expected = ['hello bob', 'hi alice', markup, 'message recalled', 'sent during the reload', 'after the reload'];
  if (JSON.stringify(texts) !== JSON.stringify(expected)) {
    throw new Error(`bob's history after the reload: ${JSON.stringify(texts)}`);
  }
  const ids = await bob.locator('#messages .msg').evaluateAll((els) => els.map((e) => e.dataset.clientMsgId));
  if (new Set(ids).size !== ids.length) throw new Error(`duplicate messages: ${ids}`);
  await bob.click('#conversations li[data-conv^="group_"]');
  await count(bob, '#messages .msg', 3);

  log('bob goes offline; alice sees the presence change');
  await visible(alice.locator('#chat-presence[data-presence="online"]'));
  await bob.context().close();
  delete pages.bob;
  await visible(alice.locator('#chat-presence[data-presence="offline"]'));
  await visible(alice.locator(`${conv(ONE)} .presence[data-presence="offline"]`));

  if (problems.length) throw new Error(`page errors:\n${problems.join('\n')}`);
  console.log('demo e2e: all steps passed');
  await browser.close();
} catch (e) {
  console.error(`FAILED at step "${step}": ${e.message}`);
  for (const p of problems) console.error(p);
  for (const [name, page] of Object.entries(pages)) {
    const file = join(artifacts, `${name}.png`);
    try {
      await page.screenshot({ path: file, fullPage: true, timeout: 5000 });
      console.error(`screenshot: ${file}`);
    } catch (err) {
      console.error(`no screenshot of ${name}: ${err.message}`);
    }
  }
  await browser.close().catch(() => {});
  process.exit(1);
}
