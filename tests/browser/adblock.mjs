// First-party serving under an ad blocker: a site proxies Plumb under its own domain (this
// script's server plays the site and its reverse proxy), and headless Chromium blocks requests
// by an ABP-syntax filter list (Ghostery's engine): EasyPrivacy as the `ad-block` npm package
// ships it, plus `rules` below, written in the form lists use against self-hosted
// Plausible-style trackers (the current EasyPrivacy cannot be fetched here). A page loading the
// tracker at Plausible's paths is blocked; one loading it at the installation's own paths counts.
// Usage: node adblock.mjs <plumb-url> <script-path> <event-path>. Prints what was blocked and sent.
import http from 'node:http';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { FiltersEngine, Request } from '@ghostery/adblocker';
import { USER_AGENT, launch } from './chromium.mjs';

const [plumb, scriptPath, eventPath] = process.argv.slice(2);
if (!eventPath) throw new Error('usage: node adblock.mjs <plumb-url> <script-path> <event-path>');

// EasyPrivacy (GPLv3 / CC BY-SA 3.0, easylist.to), fetched from the npm registry once.
const cache = new URL('./node_modules/.cache/easyprivacy/', import.meta.url).pathname;
const list = `${cache}package/test/data/easyprivacy.txt`;
if (!existsSync(list)) {
  mkdirSync(cache, { recursive: true });
  const tgz = execFileSync('npm', ['pack', 'ad-block@4.1.7', '--silent', '--pack-destination', cache], { encoding: 'utf8' }).trim();
  execFileSync('tar', ['xzf', `${cache}${tgz}`, '-C', cache, 'package/test/data/easyprivacy.txt']);
}
const rules = [
  '/js/script.js$script',
  '/js/script.*.js$script',
  '/js/plausible.js$script',
  '/api/event$xmlhttprequest,ping,other',
];
const easyprivacy = readFileSync(list, 'utf8');
const engine = FiltersEngine.parse(`${easyprivacy}\n${rules.join('\n')}`);

const plumbUrl = new URL(plumb);
const server = http.createServer((req, res) => {
  const path = req.url.split('?')[0];
  // The site's reverse proxy: Plumb's paths go to Plumb, with the visitor's address.
  if (path.startsWith('/js/') || path.startsWith('/api/') || path === scriptPath || path.startsWith(scriptPath.replace(/[^/]+$/, '')) || path === eventPath) {
    const headers = { ...req.headers, 'x-forwarded-for': req.socket.remoteAddress, host: plumbUrl.host };
    const up = http.request({ host: plumbUrl.hostname, port: plumbUrl.port, path: req.url, method: req.method, headers }, (r) => {
      res.writeHead(r.statusCode, r.headers);
      r.pipe(res);
    });
    return req.pipe(up);
  }
  // Plausible's paths; the installation's; its script sending to Plausible's event path.
  const tag = {
    '/default': 'src="/js/script.js"',
    '/custom': `src="${scriptPath}"`,
    '/custom-script-only': `src="${scriptPath}" data-api="/api/event"`,
  }[path];
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
  res.end(`<!doctype html><title>${path}</title><script defer data-domain="site.test" ${tag}></script><h1>${path}</h1>`);
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const site = `http://site.test:${server.address().port}`;

const browser = await launch('site.test');
const context = await browser.newContext({ userAgent: USER_AGENT });
const blocked = [];
const sent = [];
await context.route('**/*', (route) => {
  const r = route.request();
  const { match } = engine.match(Request.fromRawDetails({ url: r.url(), sourceUrl: site, type: r.resourceType() }));
  if (match) {
    blocked.push(new URL(r.url()).pathname);
    return route.abort('blockedbyclient');
  }
  return route.continue();
});
context.on('requestfinished', async (r) => {
  if (r.method() === 'POST') sent.push({ path: new URL(r.url()).pathname, status: (await r.response()).status() });
});
const p = await context.newPage();
for (const path of ['/default', '/custom', '/custom-script-only']) {
  await p.goto(`${site}${path}`);
  await new Promise((r) => setTimeout(r, 800));
}
await browser.close();
server.close();
console.log(JSON.stringify({ blocked, sent, rules: engine.getFilters().networkFilters.length }));
