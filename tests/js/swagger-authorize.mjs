// Drives Keyward's Swagger UI in headless Chromium as a person would: the Authorize button,
// the bearer token, then "Try it out" / "Execute" on GET /v1/whoami.
//
// Usage: node swagger-authorize.mjs BASE_URL TOKEN SCREENSHOT.png
// Prints one JSON line: {"status": "200", "body": "..."} (the response Swagger UI shows).
import { chromium } from 'playwright-core';

const [, , base, token, shot] = process.argv;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  page.setDefaultTimeout(30000);
  await page.goto(`${base}/docs`);
  // The Authorize button at the top of the page opens the dialog of security schemes.
  await page.locator('.auth-wrapper button.authorize').click();
  const dialog = page.locator('.modal-ux');
  await dialog.locator('#auth-bearer-value').fill(token);
  await dialog.locator('button.modal-btn.authorize').click();
  await dialog.locator('button.btn-done').click();
  // Open GET /v1/whoami, try it out, execute.
  const op = page.locator('.opblock', { hasText: '/v1/whoami' }).first();
  await op.locator('.opblock-summary').first().click();
  await op.locator('button.try-out__btn').click();
  await op.locator('button.execute').click();
  const row = op.locator('.live-responses-table .response').first();
  await row.waitFor();
  const status = (await row.locator('.response-col_status').textContent()).trim();
  const body = await row.locator('.response-col_description pre').first().textContent();
  await op.scrollIntoViewIfNeeded();
  await page.screenshot({ path: shot });
  process.stdout.write(`${JSON.stringify({ status, body })}\n`);
} finally {
  await browser.close();
}
