// The tracker's automatic events in headless Chromium, with Plumb's own script and with
// Plausible's npm tracker (@plausible-analytics/tracker) pointed at Plumb: outbound links (a new
// tab, a middle click, and one that leaves the page at once), a file download, a tagged button, a
// form submission and a 404 page. Then manual mode, and `plausible.init` options on Plumb's
// script. The Stats API side is checked by crates/plumb/tests/browser.rs.
// Usage: node extensions.mjs <plumb-url>. Prints, per site, what the page sent and how it was answered.
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { USER_AGENT, launch } from './chromium.mjs';

const [plumb] = process.argv.slice(2);
if (!plumb) throw new Error('usage: node extensions.mjs <plumb-url>');
const npmTracker = readFileSync(createRequire(import.meta.url).resolve('@plausible-analytics/tracker'));

let port;
const links = (host) => `
<a id="out" href="http://elsewhere.test:${port}/blank" target="_blank">new tab</a>
<a id="out-mid" href="http://elsewhere.test:${port}/middle">middle</a>
<a id="out-leave" href="http://elsewhere.test:${port}/leave">leave</a>
<a id="dl" href="/files/report.pdf?v=2">report</a>
<button id="tagged" class="big plausible-event-name=Signup+Click plausible-event-plan=pro">Sign up</button>
<form id="contact" action="/thanks" method="get"><input name="q" value="hello"><button id="send" type="submit">Send</button></form>
<p>${host}</p>`;

// Each site's pages: Plumb's script with extensions, the npm tracker, manual mode, init options.
const head = {
  'ext.test': () => `<script defer data-domain="ext.test"
    src="${plumb}/js/script.outbound-links.file-downloads.tagged-events.form-submissions.404.js"></script>`,
  'npm.test': () => `<script type="module">
    import { init, track } from '/npm/plausible.js';
    init({ domain: 'npm.test', endpoint: '${plumb}/api/event', outboundLinks: true, fileDownloads: true, formSubmissions: true });
    if (document.title === 'missing') track('404', { props: { path: location.pathname } });
  </script>`,
  'manual.test': () => `<script defer data-domain="manual.test" src="${plumb}/js/script.manual.js"></script>
    <script>window.plausible = window.plausible || function () { (window.plausible.q = window.plausible.q || []).push(arguments) };
    plausible('pageview', { u: 'http://manual.test:${port}/custom/virtual', props: { author: 'ann' } });</script>`,
  'init.test': () => `<script async src="${plumb}/js/script.outbound-links.js"></script>
    <script>window.plausible = window.plausible || function () { (plausible.q = plausible.q || []).push(arguments) };
    plausible.init = plausible.init || function (i) { plausible.o = i || {} };
    plausible.init({ domain: 'init.test', customProperties: { tier: 'gold' }, hashBasedRouting: true });</script>`,
};

const server = http.createServer((req, res) => {
  const host = req.headers.host.split(':')[0];
  const path = req.url.split('?')[0];
  if (path === '/npm/plausible.js') {
    res.writeHead(200, { 'content-type': 'text/javascript' });
    return res.end(npmTracker);
  }
  if (path.startsWith('/files/')) {
    res.writeHead(200, { 'content-type': 'application/pdf', 'content-disposition': 'attachment; filename=report.pdf' });
    return res.end('%PDF-1.4\n');
  }
  const missing = path.endsWith('/missing');
  res.writeHead(missing ? 404 : 200, { 'content-type': 'text/html; charset=utf-8' });
  const title = missing ? 'missing' : path;
  res.end(`<!doctype html><html><head><title>${title}</title>${head[host] ? head[host]() : ''}</head>
<body style="height:2000px">${links(host)}</body></html>`);
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
port = server.address().port;

const browser = await launch('*.test');
const wait = (ms) => new Promise((r) => setTimeout(r, ms));

async function visit(steps) {
  const context = await browser.newContext({ userAgent: USER_AGENT, acceptDownloads: true });
  const sent = [];
  context.on('requestfinished', async (req) => {
    if (req.url().startsWith(plumb) && req.method() === 'POST') {
      const res = await req.response();
      const body = JSON.parse(req.postData());
      const u = new URL(body.u);
      sent.push({ n: body.n, path: u.pathname + u.hash, p: body.p, status: res && res.status() });
    }
  });
  const p = await context.newPage();
  await steps(p);
  await wait(700);
  await context.close();
  return sent;
}

// Every automatic event, on a site whose pages carry `tracker` ('ext.test' or 'npm.test').
async function everything(site) {
  return visit(async (p) => {
    const base = `http://${site}:${port}`;
    await p.goto(`${base}/`);
    await wait(300);
    await p.click('#out');
    await p.click('#out-mid', { button: 'middle' });
    await p.click('#dl');
    await p.click('#tagged');
    await wait(200);
    await Promise.all([p.waitForURL(/\/thanks/), p.click('#send')]);
    await wait(300);
    await p.goto(`${base}/missing`);
    await wait(300);
    await p.goto(`${base}/`);
    await wait(300);
    // Leaves at once: the event must survive the navigation.
    await Promise.all([p.waitForURL(/elsewhere\.test.*\/leave/), p.click('#out-leave')]);
  });
}

const out = {};
out['ext.test'] = await everything('ext.test');
out['npm.test'] = await everything('npm.test');
out['manual.test'] = await visit(async (p) => {
  await p.goto(`http://manual.test:${port}/real`);
  await wait(300);
  await p.evaluate(() => history.pushState({}, '', '/pushed'));
  await p.click('#out');
  await wait(300);
});
out['init.test'] = await visit(async (p) => {
  await p.goto(`http://init.test:${port}/start`);
  await wait(300);
  await p.evaluate(() => { location.hash = 'tab'; });
  await wait(300);
  await p.click('#out');
});

await browser.close();
server.close();
for (const [site, sent] of Object.entries(out)) {
  const bad = sent.filter((s) => s.status !== 202);
  if (bad.length) throw new Error(`${site}: answers other than 202: ${JSON.stringify(bad)}`);
}
console.log(JSON.stringify({ port, sites: out }));
