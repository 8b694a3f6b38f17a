// Loads a page carrying the tracker in headless Chromium, navigates by pushState and by hash,
// fires custom events, leaves the page; then checks that a visitor with plumb_ignore set sends
// nothing. Usage: node tracker.mjs <plumb-url> <domain>. Prints a JSON summary on success.
import http from 'node:http';
import { USER_AGENT, launch } from './chromium.mjs';

const [plumb, domain] = process.argv.slice(2);
if (!plumb || !domain) throw new Error('usage: node tracker.mjs <plumb-url> <domain>');

const page = (title) => `<!doctype html><html><head><title>${title}</title>
<script>window.plausible = window.plausible || function () { (window.plausible.q = window.plausible.q || []).push(arguments) };
plausible('Queued');</script>
<script defer data-domain="${domain}" data-hash src="${plumb}/js/script.js"></script></head>
<body style="height:3000px"><h1>${title}</h1>
<button id="signup" onclick="plausible('Signup', {props: {plan: 'pro'}, revenue: {currency: 'EUR', amount: 9.5}})">Sign up</button>
</body></html>`;

const server = http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
  res.end(page(req.url));
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const site = `http://${domain}:${server.address().port}`;

const browser = await launch(domain);

async function visit(setup) {
  const context = await browser.newContext({ userAgent: USER_AGENT });
  const p = await context.newPage();
  const sent = [];
  p.on('requestfinished', async (req) => {
    if (req.url().startsWith(`${plumb}/api/event`)) {
      const res = await req.response();
      sent.push({ body: JSON.parse(req.postData()), status: res && res.status() });
    }
  });
  await setup(p);
  await context.close();
  return sent;
}

const wait = (ms) => new Promise((r) => setTimeout(r, ms));
const tracked = await visit(async (p) => {
  await p.goto(`${site}/app`);
  await p.waitForFunction(() => typeof window.plausible === 'function' && !window.plausible.q);
  await wait(300);
  await p.mouse.wheel(0, 1500);
  await p.click('#signup');
  await p.evaluate(() => history.pushState({}, '', '/app/settings'));
  await wait(300);
  await p.evaluate(() => { location.hash = 'tab2'; });
  await wait(300);
  // Leaving the page sends the engagement ping (pagehide).
  await p.goto('about:blank');
  await wait(500);
});

const ignored = await visit(async (p) => {
  await p.addInitScript(() => localStorage.setItem('plumb_ignore', 'true'));
  await p.goto(`${site}/private`);
  await p.click('#signup');
  await wait(800);
});

await browser.close();
server.close();
const bad = tracked.filter((s) => s.status !== 202);
if (bad.length) throw new Error(`non-202 answers: ${JSON.stringify(bad)}`);
console.log(JSON.stringify({
  sent: tracked.map((s) => `${s.body.n} ${new URL(s.body.u).pathname}${new URL(s.body.u).hash}`),
  ignoredSent: ignored.length,
}));
