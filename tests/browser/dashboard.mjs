// Drives the dashboard in headless Chromium as a new user would: sign in, add a site, install
// the snippet on a page, see the visits arrive, filter by clicking a source, change the range,
// share the dashboard (public and with a password), export CSV. Saves screenshots of the main
// views. Usage: node dashboard.mjs <plumb-url> <email> <password> <screenshot-dir>.
// Prints a JSON summary on success; any failed expectation throws (non-zero exit).
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { dashboardSettled, launch } from './chromium.mjs';

const [plumb, email, password, shots] = process.argv.slice(2);
if (!shots) throw new Error('usage: node dashboard.mjs <plumb-url> <email> <password> <screenshot-dir>');
fs.mkdirSync(shots, { recursive: true });
const domain = 'shop.test';
const summary = { screenshots: [] };

function expect(ok, what) {
  if (!ok) throw new Error(`expected: ${what}`);
}

// The tracked site: any path answers a page carrying the snippet.
const siteServer = http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
  res.end(`<!doctype html><html><head><title>Shop</title>
<script defer data-domain="${domain}" src="${plumb}/js/script.js"></script></head><body><h1>${req.url}</h1></body></html>`);
});
await new Promise((r) => siteServer.listen(0, '127.0.0.1', r));
const site = `http://${domain}:${siteServer.address().port}`;

const browser = await launch(domain);

async function shot(page, name) {
  const file = path.join(shots, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  summary.screenshots.push(file);
}

/** Waits until every region of the dashboard has loaded (or one failed: then throws). */
async function dashboardLoaded(page) {
  await page.waitForFunction(dashboardSettled, null, { timeout: 15000 });
  const failed = await page.$$eval('[data-state="failed"]', (els) => els.map((e) => `${e.id}: ${e.textContent}`));
  expect(failed.length === 0, `no region failed to load, got ${failed.join('; ')}`);
}

const statValue = (page, label) => page.$eval(`#stats`, (box, label) => {
  const stat = [...box.querySelectorAll('.stat')].find((s) => s.querySelector('.label').textContent === label);
  return stat ? stat.querySelector('.value').textContent : null;
}, label);

// ---- 1. Sign in.
const owner = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
const page = await owner.newPage();
await page.goto(`${plumb}/`);
expect(page.url().startsWith(`${plumb}/login`), `/ sends a signed-out visitor to /login, got ${page.url()}`);
await shot(page, 'login');
await page.fill('input[name=email]', email);
await page.fill('input[name=password]', 'not the password');
await page.click('button[type=submit]');
expect((await page.textContent('[role=alert]')).includes('Wrong e-mail or password'), 'a wrong password is refused');
await page.fill('input[name=email]', email);
await page.fill('input[name=password]', password);
await page.click('button[type=submit]');
await page.waitForURL(`${plumb}/sites`);

// ---- 2. Add a site; the installation check waits for a pageview.
await page.click('text=Add a site');
await page.fill('input[name=domain]', `https://www.${domain}/`);
await page.selectOption('select[name=timezone]', 'Europe/Berlin');
await page.click('button:has-text("Add site")');
await page.waitForURL(`${plumb}/sites/${domain}/snippet`);
const snippet = await page.textContent('#snippet');
expect(snippet.includes(`data-domain="${domain}"`) && snippet.includes('/js/script.js'), `the snippet names the site: ${snippet}`);
expect((await page.textContent('#verify')).includes('Waiting'), 'verification waits before any pageview');

// ---- 3. Two visitors arrive: one from Google, one from Twitter (different browsers).
async function visit(referer, userAgent, paths, purchase) {
  const ctx = await browser.newContext({ userAgent });
  const p = await ctx.newPage();
  for (const [i, at] of paths.entries()) {
    await p.goto(`${site}${at}`, i === 0 ? { referer } : {});
    await p.waitForFunction(() => typeof window.plausible === 'function');
    await p.waitForTimeout(200);
  }
  if (purchase) {
    await p.evaluate((amount) => window.plausible('Purchase', { revenue: { currency: 'EUR', amount } }), purchase);
    await p.waitForTimeout(300);
  }
  await ctx.close();
}
const chrome = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36';
const firefox = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0';
await visit('https://www.google.com/', chrome, ['/', '/pricing'], 25);
await visit('https://t.co/abc', firefox, ['/blog/hello']);
await page.waitForSelector('#verify.ok', { timeout: 15000 });
summary.verified = await page.textContent('#verify');

// ---- 4. The dashboard shows both visitors.
await page.click('text=Go to the dashboard');
await page.waitForURL(`${plumb}/sites/${domain}`);
for (let i = 0; i < 20; i++) {
  await dashboardLoaded(page);
  if ((await statValue(page, 'Unique visitors')) === '2') break;
  await page.waitForTimeout(500);
  await page.reload();
}
const shown = await page.$eval('#stats', (b) => b.textContent);
expect((await statValue(page, 'Unique visitors')) === '2', `the dashboard counts 2 visitors: ${shown}`);
expect((await statValue(page, 'Total pageviews')) === '3', 'and 3 pageviews');
summary.liveCount = await page.textContent('#live-count');
await page.click('#box-sources .tabs button:has-text("Sources")');
await dashboardLoaded(page);
const sources = await page.$$eval('#panel-sources td.name', (tds) => tds.map((t) => t.textContent));
expect(sources.includes('Google') && sources.includes('Twitter'), `sources list Google and Twitter: ${sources}`);
await shot(page, 'dashboard-light');

// ---- 5. Click a source to filter; the filter is in the URL.
await page.click('#panel-sources td.name button:has-text("Google")');
await page.waitForURL(/f=is%7Cvisit%3Asource%7CGoogle/);
await dashboardLoaded(page);
expect((await statValue(page, 'Unique visitors')) === '1', 'filtered by Google: 1 visitor');
const pages = await page.$$eval('#panel-pages td.name', (tds) => tds.map((t) => t.textContent));
expect(pages.includes('/pricing') && !pages.includes('/blog/hello'), `Google's visitor saw /pricing, not /blog: ${pages}`);
summary.filteredUrl = page.url();
// The URL alone restores the view.
await page.goto(summary.filteredUrl);
await dashboardLoaded(page);
expect((await page.textContent('#filters')).includes('Source is Google'), 'a bookmarked URL restores the filter');

// ---- 5b. Save the filter as a shared segment, pick it again; annotate the chart.
await page.click('#filters button:has-text("Save as segment")');
await page.fill('#filters input[aria-label="Segment name"]', 'From Google');
await page.check('#filters input[type=checkbox]');
await page.click('#filters .segments form button[type=submit]');
await page.waitForFunction(() => document.querySelector('#filters').textContent.includes('Segment: From Google'), null,
  { timeout: 10000 }).catch(async () => { throw new Error(`no segment chip: ${await page.textContent('#filters')}`); });
await dashboardLoaded(page);
expect((await statValue(page, 'Unique visitors')) === '1', 'the segment filters as its filters did');
await page.click('#filters .chip button');
await dashboardLoaded(page);
expect((await statValue(page, 'Unique visitors')) === '2', 'without the segment: both visitors');
const segmentId = await page.$eval('#filters select[aria-label=Segment]', (s) => [...s.options].find((o) => o.text === 'From Google').value);
await page.selectOption('#filters select[aria-label=Segment]', segmentId);
await page.waitForURL(new RegExp(`f=is%7Csegment%7C${segmentId}`));
await dashboardLoaded(page);
expect((await statValue(page, 'Unique visitors')) === '1', 'picking the segment again filters again');
await page.click('#notes button:has-text("+ Annotation")');
await page.fill('#notes input[aria-label=Annotation]', 'Launched the shop');
await page.click('#notes button:has-text("Add")');
await page.waitForSelector('#chart .mark');
expect((await page.textContent('#notes')).includes('Launched the shop'), 'the annotation is listed under the chart');
summary.marks = await page.$$eval('#chart .mark title', (ts) => ts.map((t) => t.textContent));
await shot(page, 'annotations-segments');
await page.goto(summary.filteredUrl);
await dashboardLoaded(page);

// ---- 6. Change the range: keyboard shortcut, then the picker.
await page.keyboard.press('w');
await page.waitForURL(/period=7d/);
await dashboardLoaded(page);
expect((await statValue(page, 'Unique visitors')) === '1', 'last 7 days still has the visit');
await page.selectOption('#range select', 'yesterday');
await page.waitForURL(/period=yesterday/);
await dashboardLoaded(page);
expect((await statValue(page, 'Unique visitors')) === '0', 'yesterday had no visitors');
await page.selectOption('#range select', 'day');
await dashboardLoaded(page);

// ---- 7. Export CSV: one panel, then the zip of all panels.
await page.click('#filters .chip button');
await dashboardLoaded(page);
const [csvDownload] = await Promise.all([page.waitForEvent('download'), page.click('#box-sources .panel-foot a')]);
const csv = fs.readFileSync(await csvDownload.path(), 'utf8');
expect(csv.startsWith('source,visitors,visits,bounce_rate,visit_duration'), `CSV header: ${csv.slice(0, 80)}`);
expect(/\r\nGoogle,1,1,/.test(csv) && /\r\nTwitter,1,1,/.test(csv), `CSV rows: ${csv}`);
summary.csv = csv;
const [zipDownload] = await Promise.all([page.waitForEvent('download'), page.click('#export-all')]);
const zip = fs.readFileSync(await zipDownload.path());
expect(zip.subarray(0, 2).toString() === 'PK' && zip.includes('imported_sources_') && zip.includes('imported_visitors_'), 'Plausible-format zip of CSVs');
summary.zipBytes = zip.length;

// ---- 8. Details view with search.
await page.click('#box-pages .panel-foot button');
await page.waitForSelector('#details[open] #details-table[data-state="done"]');
await page.fill('#details input[type=search]', 'PRIC');
await page.waitForFunction(() => {
  const names = [...document.querySelectorAll('#details td.name')].map((t) => t.textContent);
  return names.length === 1 && names[0] === '/pricing';
});
await shot(page, 'details');
await page.keyboard.press('Escape');

// ---- 9. Shared links: one public, one with a password.
await page.goto(`${plumb}/sites/${domain}/settings`);
await page.fill('form[action$="/shares"] input[name=name]', 'Public board');
await page.click('form[action$="/shares"] button');
await page.fill('form[action$="/shares"] input[name=name]', 'Investors');
await page.fill('form[action$="/shares"] input[name=password]', 'investor password');
await page.click('form[action$="/shares"] button');
const links = await page.$$eval('a.share-url', (as) => as.map((a) => a.href));
expect(links.length === 2, `two shared links: ${links}`);
await shot(page, 'settings');

// A revenue goal applies to events already stored.
await page.selectOption('form[action$="/goals"] select[name=kind]', 'event');
await page.fill('form[action$="/goals"] input[name=value]', 'Purchase');
await page.fill('form[action$="/goals"] input[name=currency]', 'eur');
await Promise.all([page.waitForNavigation(), page.click('form[action$="/goals"] button')]);
const settingsText = await page.textContent('main');
expect(settingsText.includes('revenue in EUR'), `the goal is a revenue goal: ${settingsText.slice(0, 300)}`);
await page.goto(`${plumb}/sites/${domain}`);
await dashboardLoaded(page);
const goals = await page.textContent('#panel-goals');
expect(goals.includes('Purchase') && goals.includes('€25.00'), `the goals panel shows the purchase and its revenue: ${goals}`);
summary.goals = goals;

const stranger = await browser.newContext({ viewport: { width: 1280, height: 900 } });
const sp = await stranger.newPage();
await sp.goto(links[0]);
await dashboardLoaded(sp);
expect((await statValue(sp, 'Unique visitors')) === '2', 'the public link shows the dashboard');
expect(!(await sp.$('a[href$="/settings"]')), 'a shared dashboard has no settings');
await sp.goto(links[1]);
expect(await sp.$('input[type=password]'), 'the protected link asks for its password');
expect(!(await sp.$('#stats')), 'and shows no stats before it');
await sp.fill('input[type=password]', 'wrong password!');
await sp.click('button[type=submit]');
expect((await sp.textContent('[role=alert]')).includes('Wrong password'), 'a wrong link password is refused');
await sp.fill('input[type=password]', 'investor password');
await sp.click('button[type=submit]');
await dashboardLoaded(sp);
expect((await statValue(sp, 'Unique visitors')) === '2', 'the right password opens the dashboard');
await sp.goto(`${links[0]}?embed=true`);
await dashboardLoaded(sp);
expect(!(await sp.$('header.top')), 'embed mode has no top bar');
await stranger.close();

// ---- 10. Screenshots: dark theme and phone.
const dark = await browser.newContext({ viewport: { width: 1280, height: 900 }, colorScheme: 'dark',
  storageState: await owner.storageState() });
const dp = await dark.newPage();
await dp.goto(`${plumb}/sites/${domain}`);
await dashboardLoaded(dp);
await shot(dp, 'dashboard-dark');
await dark.close();
const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true,
  hasTouch: true, storageState: await owner.storageState() });
const pp = await phone.newPage();
await pp.goto(`${plumb}/sites/${domain}`);
await dashboardLoaded(pp);
const overflow = await pp.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
expect(overflow <= 0, `no sideways scrolling on a phone (overflow ${overflow}px)`);
await shot(pp, 'dashboard-phone');
await phone.close();

// ---- 11. A funnel from two goals, made on the dashboard; it counts the visits after it.
await page.goto(`${plumb}/sites/${domain}/settings`);
await page.selectOption('form[action$="/goals"] select[name=kind]', 'page');
await page.fill('form[action$="/goals"] input[name=value]', '/pricing');
await Promise.all([page.waitForNavigation(), page.click('form[action$="/goals"] button')]);
await page.goto(`${plumb}/sites/${domain}`);
await dashboardLoaded(page);
await page.click('#funnels button:has-text("+ Funnel")');
await page.fill('#funnels input[aria-label="Funnel name"]', 'Checkout');
await page.selectOption('#funnels select[aria-label="Step 1"]', 'Visit /pricing');
await page.selectOption('#funnels select[aria-label="Step 2"]', 'Purchase');
await page.click('#funnels button:has-text("Save funnel")');
await page.waitForURL(/funnel=\d+/);
await page.waitForSelector('#funnels table.funnel');
const funnelText = () => page.textContent('#funnels');
expect((await funnelText()).includes('Counted as visits happen'), `the funnel says how it counts: ${await funnelText()}`);
const funnelVisitors = () => page.$$eval('#funnels tbody tr', (trs) => trs.map((tr) => tr.children[1].textContent));
expect((await funnelVisitors()).join() === '0,0', `the earlier visits are not in the funnel: ${await funnelVisitors()}`);
// It counts from 10 seconds after it was made.
await page.waitForTimeout(11000);
const edge = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.0.0';
await visit('https://www.google.com/', edge, ['/pricing'], 30);
await visit('https://t.co/abc', chrome, ['/pricing']);
for (let i = 0; i < 20 && (await funnelVisitors()).join() !== '2,1'; i++) {
  await page.waitForTimeout(500);
  await page.reload();
  await dashboardLoaded(page);
}
expect((await funnelVisitors()).join() === '2,1', `two visitors entered the funnel, one bought: ${await funnelVisitors()}`);
summary.funnel = await funnelText();
// The last 24 hours, by hour: the same three visitors, on the hours they came.
await page.selectOption('#range select', '24h');
await page.waitForURL(/period=24h/);
await dashboardLoaded(page);
expect((await statValue(page, 'Unique visitors')) === '3', `the last 24 hours have the three visitors: ${await statValue(page, 'Unique visitors')}`);
expect((await funnelVisitors()).join() === '2,1', `the funnel over the last 24 hours: ${await funnelVisitors()}`);
await page.$eval('#funnels', (e) => e.scrollIntoView());
await shot(page, 'funnel');

await owner.close();
await browser.close();
siteServer.close();
console.log(JSON.stringify(summary));
