/* Plumb tracker: cookieless, no storage, Plausible-compatible. */
(function (w, d) {
  'use strict';
  var s = d.currentScript, l = w.location;
  var api = s.getAttribute('data-api') || new URL(s.src).origin + '/api/event';
  var domain = s.getAttribute('data-domain') || l.hostname;
  var hash = s.hasAttribute('data-hash');
  var lastUrl, shownAt = 0, engaged = 0, depth = 0;

  function ignored() {
    if (/^(localhost|127\.|\[::1\]$)/.test(l.hostname) || l.protocol === 'file:') return true;
    try { return w.localStorage.plumb_ignore === 'true'; } catch (e) { return false; }
  }

  function post(body, cb) {
    if (ignored()) return cb && cb();
    var done = function () { if (cb) cb(); };
    // text/plain keeps it a simple request: no CORS preflight.
    fetch(api, { method: 'POST', body: JSON.stringify(body), headers: { 'Content-Type': 'text/plain' }, keepalive: true })
      .then(done, done);
  }

  function scroll() {
    var h = d.documentElement, total = Math.max(h.scrollHeight, d.body ? d.body.scrollHeight : 0);
    var seen = (w.scrollY || h.scrollTop) + w.innerHeight;
    depth = Math.max(depth, total ? Math.min(100, Math.round(seen / total * 100)) : 100);
  }

  function visible() { return d.visibilityState === 'visible'; }

  // Time counts only while the page is visible.
  function tick() {
    if (shownAt) engaged += Date.now() - shownAt;
    shownAt = visible() ? Date.now() : 0;
  }

  function engagement() {
    tick();
    if (lastUrl && engaged > 0) post({ n: 'engagement', u: lastUrl, d: domain, sd: depth, e: engaged, h: hash ? 1 : 0 });
    engaged = 0;
  }

  function send(name, opts) {
    opts = opts || {};
    var u = hash ? l.href : l.href.split('#')[0];
    var body = { n: name, u: u, d: domain, r: d.referrer || null, h: hash ? 1 : 0, w: w.innerWidth };
    if (opts.props) body.p = opts.props;
    if (opts.revenue) body.$ = opts.revenue;
    if (opts.interactive === false) body.i = false;
    // Browsers driven by automation say so; the collector counts them as bots.
    if (navigator.webdriver) body.wd = true;
    if (name === 'pageview') {
      if (u === lastUrl) return;
      engagement();
      lastUrl = u;
      depth = 0;
      scroll();
      shownAt = visible() ? Date.now() : 0;
    }
    post(body, opts.callback);
  }

  function page() { send('pageview'); }

  var push = w.history.pushState;
  if (push) {
    w.history.pushState = function () { push.apply(this, arguments); page(); };
    w.addEventListener('popstate', page);
  }
  if (hash) w.addEventListener('hashchange', page);
  d.addEventListener('visibilitychange', function () { if (visible()) shownAt = Date.now(); else engagement(); });
  w.addEventListener('pagehide', engagement);
  w.addEventListener('scroll', scroll, { passive: true });

  // The pageview goes first, so the visit starts on the page, as with Plausible.
  var queued = (w.plausible && w.plausible.q) || [];
  w.plausible = send;
  page();
  for (var i = 0; i < queued.length; i++) send.apply(null, queued[i]);
})(window, document);
