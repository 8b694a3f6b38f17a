/* Plumb tracker: cookieless, nothing stored on the device, Plausible-compatible. */
// A variant keeps the lines from `//+ NAMES` to `//-` only if its file name has one of NAMES
// (`!NAME`: has not); comment lines and indentation are left out. See
// crates/plumb-collector/src/tracker.rs, which assembles and serves the variants.
(function (w, d) {
  'use strict';
  var l = w.location, stub = w.plausible || {}, v = {}, o = {}, s = d.currentScript;
  var api, domain, lastUrl, shownAt = 0, engaged = 0, depth = 0, started, q = stub.q || [];
//+ compat
  // Browsers without `currentScript` find the script by its id, as Plausible's compat one does.
  s = s || d.getElementById('plausible');
//-
  // What the file name switches on; `plausible.init({...})` options override it.
//+ hash
  v.hashBasedRouting = 1;
//-
//+ local
  v.captureOnLocalhost = 1;
//-
//+ manual
  v.autoCapturePageviews = 0;
//-
//+ !manual
  v.autoCapturePageviews = 1;
//-
//+ outbound-links
  v.outboundLinks = 1;
//-
//+ file-downloads
  v.fileDownloads = 1;
//-
//+ form-submissions
  v.formSubmissions = 1;
//-
//+ 404
  v.notFound = 1;
//-

  function attr(n) { return s && s.getAttribute(n); }
  function on(k) { return !!(k in o ? o[k] : v[k]); }

  function ignored() {
    if (!on('captureOnLocalhost') && (/^(localhost|127\.|\[::1\]$)/.test(l.hostname) || l.protocol === 'file:')) return 1;
    try { return w.localStorage.plumb_ignore === 'true' || w.localStorage.plausible_ignore === 'true'; } catch (e) { return 0; }
  }

  function post(body, cb) {
    if (ignored()) return cb && cb();
    var done = function () { if (cb) cb(); };
    // A string body goes as text/plain: a simple request, no CORS preflight. keepalive lets it
    // outlive the page.
    fetch(api, { method: 'POST', body: JSON.stringify(body), keepalive: true })
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
    if (lastUrl && engaged > 0) post({ n: 'engagement', u: lastUrl, d: domain, sd: depth, e: engaged, h: on('hashBasedRouting') ? 1 : 0 });
    engaged = 0;
  }

  function url() { return on('hashBasedRouting') ? l.href : l.href.split('#')[0]; }

  // Properties: the script's `event-*` attributes, then `customProperties`, then the call's own.
  function props(name, own) {
    var out = {}, n = 0, k, c = o.customProperties;
    if (typeof c === 'function') c = c(name);
//+ pageview-props
    var a = s ? s.attributes : [];
    for (k = 0; k < a.length; k++) if (a[k].name.indexOf('event-') === 0) { out[a[k].name.slice(6)] = a[k].value; n++; }
//-
    for (k in c) { out[k] = c[k]; n++; }
    for (k in own) { out[k] = own[k]; n++; }
    return n ? out : 0;
  }

//+ exclusions
  // `data-include` / `data-exclude`: comma-separated paths, `*` within a segment, `**` across.
  function matches(list, path) {
    return list && list.split(',').some(function (p) {
      return new RegExp('^' + p.trim().replace(/[.+?^${}()|[\]\\]/g, '\\$&')
        .replace(/\*\*|\*/g, function (m) { return m === '*' ? '[^/]*' : '.*'; }) + '/?$').test(path);
    });
  }
  function excluded() {
    var path = l.pathname + (on('hashBasedRouting') ? l.hash : ''), inc = attr('data-include');
    return (inc && !matches(inc, path)) || matches(attr('data-exclude'), path);
  }
//-

  function send(name, opts) {
    // Before `init` (a snippet that waits for it), calls wait their turn.
    if (!started) return q.push([name, opts]);
    opts = opts || {};
    var u = opts.u || url(), p = props(name, opts.props);
    var body = { n: name, u: u, d: domain, r: d.referrer || null, h: on('hashBasedRouting') ? 1 : 0, w: w.innerWidth };
    if (p) body.p = p;
    if (opts.revenue) body.$ = opts.revenue;
    if (opts.interactive === false) body.i = false;
    // Browsers driven by automation say so; the collector counts them as bots.
    if (navigator.webdriver) body.wd = true;
    if (name === 'pageview') {
//+ exclusions
      if (excluded()) return opts.callback && opts.callback();
//-
      engagement();
      lastUrl = u;
      depth = 0;
      scroll();
      shownAt = visible() ? Date.now() : 0;
    }
    post(body, opts.callback);
  }

  // Automatic pageviews skip a navigation that did not change the address.
  function page() { if (on('autoCapturePageviews') && url() !== lastUrl) send('pageview'); }

//+ outbound-links file-downloads tagged-events
//+ compat
  // A plain click that navigates this window (not a new tab, not one the page handles itself).
  function follows(e, a) {
    return !e.defaultPrevented && e.type === 'click' && !(e.ctrlKey || e.metaKey || e.shiftKey) &&
      (!a.target || /^_(self|parent|top)$/i.test(a.target));
  }
//-

  // Sends a click's or a submit's event. The request is sent with `keepalive`, so it outlives a
  // page the click leaves; the compat variant (older browsers) holds the navigation until it is sent.
  function fire(e, name, p, a, rev) {
    var opts = { props: p, revenue: rev }, done;
//+ compat
    if (a ? follows(e, a) : e.type === 'submit' && !e.defaultPrevented) {
      opts.callback = function () {
        if (!done) { done = 1; if (a) l.href = a.href; else e.target.submit(); }
      };
      setTimeout(opts.callback, 5000);
      e.preventDefault();
    }
//-
    send(name, opts);
  }
//-

//+ tagged-events
  // Plausible's class names: `plausible-event-name=Signup` (or `--`), `plausible-event-<prop>=<value>`
  // (`+` for a space), `plausible-revenue-amount=…` / `-currency=…`; on the element or up to 3 parents.
  // A click inside a form (up to 3 parents) is not one: its submit is.
  function tagged(el, clicked) {
    var t, i, c, m, k, e = {};
    for (i = 0; el && el.classList && i < 4; el = el.parentNode, i++) {
      if (clicked && el.tagName.toLowerCase() === 'form') return;
      for (c = el.classList, k = 0; !t && k < c.length; k++) {
        if ((m = c[k].match(/^plausible-(event|revenue)-(.+?)(=|--)(.+)$/))) e[m[1] + m[2]] = m[4];
      }
      if (!t && e.eventname) {
        t = { n: e.eventname.replace(/\+/g, ' '), p: {}, r: {} };
        for (k in e) {
          if (k.indexOf('revenue') === 0) {
//+ revenue
            t.r[k.slice(7)] = e[k];
//-
          } else if (k !== 'eventname') t.p[k.slice(5)] = e[k].replace(/\+/g, ' ');
        }
      }
      e = {};
    }
    return t;
  }
//-

//+ file-downloads
  function types() {
    var own = o.fileDownloads && o.fileDownloads.fileExtensions, add = attr('add-file-types');
    return own || (attr('file-types') || 'pdf,xlsx,docx,txt,rtf,csv,exe,key,pps,ppt,pptx,7z,pkg,rar,gz,zip,avi,mov,mp4,mpeg,wmv,midi,mp3,wav,wma,dmg').split(',').concat(add ? add.split(',') : []);
  }
//-

//+ outbound-links file-downloads tagged-events
  // Left and middle clicks (new tabs too); the one event a click makes: a tagged element's, else
  // an outbound link's, else a download's.
  function click(e) {
    if (e.type === 'auxclick' && e.button !== 1) return;
    var a = e.target, f;
    while (a && !(a.tagName && a.tagName.toLowerCase() === 'a' && typeof a.href === 'string' && a.href)) a = a.parentNode;
//+ tagged-events
    var t = tagged(e.target, 1);
    if (t) {
      if (a) t.p.url = a.href;
      return fire(e, t.n, t.p, a, t.r.amount ? { amount: t.r.amount, currency: t.r.currency } : 0);
    }
//-
    if (!a) return;
//+ outbound-links
    if (on('outboundLinks') && a.host && a.host !== l.host) return fire(e, 'Outbound Link: Click', { url: a.href }, a);
//-
//+ file-downloads
    f = a.href.split('?')[0];
    if (on('fileDownloads') && types().indexOf(f.split('.').pop()) >= 0) return fire(e, 'File Download', { url: f }, a);
//-
  }
//-

  function start() {
    if (started) return;
    started = 1;
    api = o.endpoint || attr('data-api') || new URL(s.src).origin + '/api/event';
    domain = o.domain || attr('data-domain') || l.hostname;
    if (attr('data-hash') != null) v.hashBasedRouting = 1;
    var push = w.history.pushState;
    if (push) {
      w.history.pushState = function () { push.apply(this, arguments); page(); };
      w.addEventListener('popstate', page);
    }
    w.addEventListener('hashchange', function () { if (on('hashBasedRouting')) page(); });
    d.addEventListener('visibilitychange', function () { if (visible()) shownAt = Date.now(); else engagement(); });
    w.addEventListener('pagehide', engagement);
    w.addEventListener('scroll', scroll, { passive: true });
//+ outbound-links file-downloads tagged-events
    d.addEventListener('click', click);
    d.addEventListener('auxclick', click);
//-
//+ tagged-events
    d.addEventListener('submit', function (e) {
      var t = tagged(e.target);
      if (t) fire(e, t.n, t.p);
    });
//-
//+ form-submissions
    // Plausible's "Form: Submission" (no properties), seen before the page's own handlers can
    // stop it; a tagged form sends its own event instead.
    d.addEventListener('submit', function (e) {
//+ tagged-events
      if (tagged(e.target)) return;
//-
      if (on('formSubmissions')) send('Form: Submission');
    }, true);
//-
    // The pageview goes first, so the visit starts on the page, as with Plausible.
    page();
//+ 404
    // A page served with status 404 (Navigation Timing), named as Plausible's 404 goal expects.
    var nav = w.performance && performance.getEntriesByType && performance.getEntriesByType('navigation')[0];
    if (on('notFound') && nav && nav.responseStatus === 404) send('404', { props: { path: l.pathname } });
//-
    for (var i = 0; i < q.length; i++) send.apply(null, q[i]);
  }

  // `plausible.init({domain, endpoint, hashBasedRouting, autoCapturePageviews, outboundLinks,
  // fileDownloads, formSubmissions, customProperties, captureOnLocalhost})`, as Plausible's
  // snippet and npm tracker take them; a snippet that defines `init` waits for its call.
  w.plausible = send;
  send.init = function (opts) {
    o = opts || {};
    // Called again once running: the new endpoint and domain apply from now on.
    if (started) { api = o.endpoint || api; domain = o.domain || domain; } else start();
  };
  if (stub.o) send.init(stub.o);
  else if (!stub.init) start();
})(window, document);
