// The chat page in a real browser: headless Chromium (Debian's) driven by puppeteer-core
// (pinned in package-lock.json) loads the page, enters the key, sends a message and sees the
// reply arrive in several steps (streamed), then saves a screenshot.
//
//   node browser.mjs http://127.0.0.1:PORT sk-cell-... /tmp/shot.png
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import puppeteer from 'puppeteer-core';

const [url, key, screenshot] = process.argv.slice(2);
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'cellgate-chromium-'));
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--headless', '--disable-gpu', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync',
         `--user-data-dir=${profile}`],
});
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 900, height: 620 });
  const failures = [];
  page.on('pageerror', (e) => failures.push(String(e)));
  page.on('requestfailed', (r) => { if (!r.url().includes('/v1/chat/completions')) failures.push('request failed: ' + r.url()); });
  await page.goto(url, { waitUntil: 'load' });
  assert.equal(await page.title(), 'cellhouse chat');

  await page.type('#key', key);
  await page.click('#connect');
  await page.waitForFunction(() => document.querySelectorAll('#model option').length > 0, { timeout: 20_000 });
  assert.equal(await page.$eval('#model', (s) => s.value), 'cellhouse');
  // The key lives in the tab's session storage, not in the page.
  assert.equal(await page.evaluate(() => sessionStorage.getItem('cellgate.key')), key);

  // Count the changes to the reply as it arrives.
  await page.evaluate(() => {
    window.__updates = 0;
    new MutationObserver((records) => { window.__updates += records.length; })
      .observe(document.getElementById('log'), { subtree: true, childList: true, characterData: true });
  });
  await page.type('#prompt', 'Once upon a time');
  await page.keyboard.press('Enter');
  try {
    await page.waitForFunction(() => {
      const a = document.querySelector('.msg.assistant .answer');
      const status = document.getElementById('status').textContent;
      // The end of the reply: the final line ("N tokens, X tokens/s, first token after ...").
      return a && a.textContent.length > 0 && status.includes('first token after') &&
             !document.getElementById('send').disabled;
    }, { timeout: 60_000 });
  } catch (e) {
    console.log('page status: ' + await page.$eval('#status', (s) => s.textContent));
    console.log('page log: ' + await page.$eval('#log', (s) => s.innerHTML));
    console.log('page errors: ' + failures.join('; '));
    throw e;
  }
  const reply = await page.$eval('.msg.assistant .answer', (e) => e.textContent);
  const status = await page.$eval('#status', (e) => e.textContent);
  const updates = await page.evaluate(() => window.__updates);
  assert.ok(reply.length > 0, 'no reply');
  assert.ok(updates > 3, `the reply arrived in ${updates} updates: not streamed`);
  assert.ok(!(await page.$eval('#send', (b) => b.disabled)), 'send stays disabled');
  assert.deepEqual(failures, []);
  if (screenshot) await page.screenshot({ path: screenshot });
  console.log(`ok: ${reply.length} characters in ${updates} updates; ${status}`);
} finally {
  await browser.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
