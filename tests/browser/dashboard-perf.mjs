// Measures the dashboard in headless Chromium against a running Plumb serving a large store
// (make one with `plumb-bench --dashboard-data DIR --rows N`). For each view it prints the time
// from navigation to first contentful paint and to each region's data being shown, cold (first
// load) and warm (median of three reloads). A benchmark, not a test: it prints numbers.
// Usage: node dashboard-perf.mjs <plumb-url> <domain> <email> <password> [screenshot-dir]
// With a screenshot directory it also saves the dashboard in light and dark and on a phone
// (how docs/*.png are made).
import { dashboardSettled, launch } from './chromium.mjs';

const [plumb, domain, email, password, shots] = process.argv.slice(2);
if (!password) throw new Error('usage: node dashboard-perf.mjs <plumb-url> <domain> <email> <password>');

const browser = await launch();
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
const page = await context.newPage();
await page.goto(`${plumb}/login`);
await page.fill('input[name=email]', email);
await page.fill('input[name=password]', password);
await page.click('button[type=submit]');
await page.waitForURL(/\/sites/);

async function measure(query) {
  await page.goto(`${plumb}/sites/${domain}${query}`);
  await page.waitForFunction(dashboardSettled, null, { timeout: 60000 });
  return page.evaluate(() => {
    const fcp = performance.getEntriesByName('first-contentful-paint')[0]?.startTime;
    const marks = Object.fromEntries(performance.getEntriesByType('mark')
      .filter((m) => m.name.startsWith('plumb:')).map((m) => [m.name.slice(6), Math.round(m.startTime)]));
    const failed = [...document.querySelectorAll('[data-state="failed"]')].map((e) => e.id);
    return { fcp: Math.round(fcp), ...marks, failed };
  });
}

const views = [['last 30 days', ''], ['last 12 months', '?period=12mo'],
  ['30 days, 2 filters', '?f=is%7Cvisit%3Asource%7CGoogle&f=is%7Cvisit%3Adevice%7CMobile']];
const out = {};
for (const [name, q] of views) {
  const cold = await measure(q);
  const warm = [await measure(q), await measure(q), await measure(q)];
  const median = Object.fromEntries(Object.keys(cold).filter((k) => k !== 'failed')
    .map((k) => [k, warm.map((w) => w[k]).sort((a, b) => a - b)[1]]));
  const slowest = (r) => Math.max(...Object.entries(r).filter(([k]) => k !== 'fcp' && k !== 'failed').map(([, v]) => v));
  out[name] = { cold, warmMedian: median, coldAllDoneMs: slowest(cold), warmAllDoneMs: slowest(median) };
  console.error(`${name}: first paint ${cold.fcp} ms cold / ${median.fcp} ms warm; every region done by ${slowest(cold)} ms cold / ${slowest(median)} ms warm`);
}
if (shots) {
  const state = await context.storageState();
  const views = [['dashboard-light', { colorScheme: 'light' }], ['dashboard-dark', { colorScheme: 'dark' }],
    ['dashboard-phone', { colorScheme: 'light', viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true }]];
  for (const [name, options] of views) {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 }, storageState: state, ...options });
    const p = await ctx.newPage();
    await p.goto(`${plumb}/sites/${domain}?tab.sources=visit%3Asource`);
    await p.waitForFunction(dashboardSettled, null, { timeout: 60000 });
    await p.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
    await ctx.close();
  }
}
await browser.close();
console.log(JSON.stringify(out, null, 1));
