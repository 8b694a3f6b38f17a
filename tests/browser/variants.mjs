// Every combination of Plausible's legacy script extensions (the names in a shuffled order), each
// with Plumb's own extensions on or off by turns, loaded in headless Chromium and probed for what
// its name promises. Requests are caught in the page (no events reach a server).
// Usage: node variants.mjs <plumb-url> <legacy,extensions> <plumb,extensions>. Prints a JSON
// summary; exits non-zero listing the variants that misbehave.
import http from 'node:http';
import { USER_AGENT, launch } from './chromium.mjs';

const [plumb, legacyList, ownList] = process.argv.slice(2);
if (!plumb || !legacyList || !ownList) throw new Error('usage: node variants.mjs <plumb-url> <legacy> <own>');
const [legacy, own] = [legacyList.split(','), ownList.split(',')];

// A fixed shuffle, so a failure repeats.
let seed = 42;
const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
const shuffled = (xs) => xs.map((x) => [random(), x]).sort((a, b) => a[0] - b[0]).map(([, x]) => x);

const variants = [];
for (let mask = 0; mask < 2 ** legacy.length; mask++) {
  // Plumb's extension j is on in every (j + 2)-th combination, so each is probed on and off
  // beside every legacy one.
  const names = [...legacy.filter((_, i) => mask & (1 << i)), ...own.filter((_, j) => mask % (j + 2) === 0)];
  variants.push({ names, file: ['script', ...shuffled(names), 'js'].join('.') });
}

// Fetch every variant from Plumb, a few at a time.
const code = new Map();
for (let i = 0; i < variants.length; i += 32) {
  await Promise.all(variants.slice(i, i + 32).map(async (v) => {
    const r = await fetch(`${plumb}/js/${v.file}`);
    if (r.status !== 200 || !/javascript/.test(r.headers.get('content-type'))) {
      throw new Error(`${v.file}: ${r.status} ${r.headers.get('content-type')}`);
    }
    code.set(v.file, await r.text());
  }));
}

let port;
// A frame: requests are posted to the parent instead of sent; served with status 404 so the
// `404` extension has something to see.
const frame = (file) => `<!doctype html><html><head>
<script>window.fetch = function (u, o) { parent.postMessage({ id: window.name, body: JSON.parse(o.body) }, '*'); return new Promise(function () {}); };</script>
<script id="plausible" data-domain="gen.test" data-api="/api/event" data-exclude="/frame/**" event-author="ann">${code.get(file)}</script>
<script>plausible('probe');</script></head><body>
<button id="tagged" class="plausible-event-name=Tag plausible-revenue-amount=5 plausible-revenue-currency=EUR">tag</button>
<a id="dl" href="/files/a.pdf">download</a>
<a id="out" href="http://elsewhere.test:${port}/x">out</a>
<a id="out2" href="http://elsewhere.test:${port}/y">out, followed</a>
<form id="f" action="/submitted"><button>send</button></form></body></html>`;

const server = http.createServer((req, res) => {
  const file = decodeURIComponent(req.url.split('?')[0]).replace('/frame/', '');
  if (req.url.startsWith('/frame/') && code.has(file)) {
    res.writeHead(404, { 'content-type': 'text/html; charset=utf-8' });
    return res.end(frame(file));
  }
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
  res.end('<!doctype html><title>blank</title>');
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
port = server.address().port;

const browser = await launch('*.test');
const context = await browser.newContext({ userAgent: USER_AGENT });
const page = await context.newPage();
await page.goto(`http://gen.test:${port}/`);
const started = Date.now();

// In the page: for each variant a frame on gen.test (probed) and one on localhost (sends only
// with `local`); what each sent is compared with what its names promise.
const failures = await page.evaluate(async ({ variants, port }) => {
  const sent = {};
  window.addEventListener('message', (m) => { (sent[m.data.id] = sent[m.data.id] || []).push(m.data.body); });
  const load = (name, src) => new Promise((resolve) => {
    const f = document.createElement('iframe');
    f.name = name;
    f.src = src;
    f.onload = () => resolve(f);
    document.body.appendChild(f);
  });
  const tick = () => new Promise((r) => setTimeout(r, 30));
  const failures = [];
  async function check(i) {
    const { names, file } = variants[i];
    const has = (e) => names.includes(e);
    const [f, l] = await Promise.all([load(`F${i}`, `/frame/${file}`), load(`L${i}`, `http://localhost:${port}/frame/${file}`)]);
    const d = f.contentDocument;
    const stop = (e) => e.preventDefault();
    d.getElementById('dl').addEventListener('click', stop);
    d.getElementById('out').addEventListener('click', stop);
    d.getElementById('f').addEventListener('submit', stop);
    d.getElementById('tagged').click();
    d.getElementById('dl').click();
    d.getElementById('out').click();
    d.getElementById('f').requestSubmit();
    let followed;
    f.contentWindow.addEventListener('click', (e) => { followed = !e.defaultPrevented; });
    d.getElementById('out2').click();
    await tick();
    const got = sent[`F${i}`] || [];
    const named = (n) => got.filter((b) => b.n === n);
    const probe = named('probe')[0] || {};
    const tag = named('Tag')[0];
    const expect = [
      ['automatic pageview', named('pageview').length, has('manual') || has('exclusions') ? 0 : 1],
      ['hash flag', probe.h, has('hash') ? 1 : 0],
      ['event-* attributes as props', !!(probe.p && probe.p.author === 'ann'), has('pageview-props')],
      ['tagged event', named('Tag').length, has('tagged-events') ? 1 : 0],
      ['tagged revenue', !!(tag && tag.$ && tag.$.amount === '5' && tag.$.currency === 'EUR'), has('tagged-events') && has('revenue')],
      ['file download', named('File Download').length, has('file-downloads') ? 1 : 0],
      ['outbound link', named('Outbound Link: Click').map((b) => b.p.url).join(), has('outbound-links') ? `http://elsewhere.test:${port}/x,http://elsewhere.test:${port}/y` : ''],
      ['form submission', named('Form: Submission').length, has('form-submissions') ? 1 : 0],
      ['404', named('404').map((b) => b.p.path).join(), has('404') ? `/frame/${file}` : ''],
      ['navigation held until sent', followed === false, has('compat') && has('outbound-links')],
      ['sent from localhost', (sent[`L${i}`] || []).some((b) => b.n === 'probe'), has('local')],
    ];
    for (const [what, actual, wanted] of expect) {
      if (actual !== wanted) failures.push(`${file}: ${what}: got ${JSON.stringify(actual)}, expected ${JSON.stringify(wanted)}`);
    }
    f.remove();
    l.remove();
    delete sent[`F${i}`];
    delete sent[`L${i}`];
  }
  // A few variants at once: each waits mostly for its frames.
  let next = 0;
  const worker = async () => { while (next < variants.length) await check(next++); };
  await Promise.all(Array.from({ length: 8 }, worker));
  return failures;
}, { variants, port });

await browser.close();
server.close();
if (failures.length) {
  console.error(failures.slice(0, 40).join('\n'));
  throw new Error(`${failures.length} promises broken`);
}
console.log(JSON.stringify({ variants: variants.length, seconds: Math.round((Date.now() - started) / 1000) }));
