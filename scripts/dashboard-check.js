// Drives the dashboard of a running `wsgate dev` in headless Chromium, as a
// person would: opens 60 test clients, adds a backend, watches clients move
// to it, sends a push. Exits non-zero on any failure or page error.
// Usage: node scripts/dashboard-check.js http://127.0.0.1:8081/ out.png
const { chromium } = require('playwright-core');

(async () => {
  const [url, shot] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  const summary = () => page.textContent('#client-summary');
  const waitFor = (fn, arg) => page.waitForFunction(fn, arg, { timeout: 15000 });

  await page.goto(url);
  await page.waitForSelector('#nodes tr');
  const before = await page.$$eval('#nodes tr', (rows) => rows.length);
  await page.fill('#clients input[name=n]', '60');
  await page.click('#clients button:not([type])');
  await waitFor(() => /^60 open/.test(document.getElementById('client-summary').textContent) &&
    !/connecting/.test(document.getElementById('client-summary').textContent));
  console.log('clients:', await summary());

  await page.click('#scale button');
  await waitFor((n) => document.querySelectorAll('#nodes tr').length === n + 1, before);
  const newest = await page.$eval('#nodes tr:last-child td', (td) => td.textContent);
  await waitFor((id) => new RegExp(id + ': \\d+').test(document.getElementById('client-summary').textContent) &&
    /^60 open/.test(document.getElementById('client-summary').textContent) &&
    !/connecting/.test(document.getElementById('client-summary').textContent), newest);
  console.log('after adding', newest + ':', await summary());

  await page.fill('#send input[name=userId]', 'user-3');
  await page.fill('#send input[name=message]', 'hello from the dashboard');
  await page.click('#send button');
  await waitFor(() => /user-3 .* got: hello from the dashboard/.test(document.getElementById('log').textContent));
  console.log('push delivered');

  if (shot) await page.screenshot({ path: shot });
  await browser.close();
  if (errors.length) {
    console.error('page errors:', errors);
    process.exit(1);
  }
})().catch((e) => { console.error(e); process.exit(1); });
