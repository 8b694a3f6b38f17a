// Small helpers for the site pages: the browser's timezone as the default, copy buttons, and the
// installation check that polls until the first pageview arrives.

const tz = document.getElementById('timezone');
if (tz && tz.dataset.guess) {
  const guess = Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (guess && [...tz.options].some((o) => o.value === guess)) tz.value = guess;
}

for (const button of document.querySelectorAll('[data-copy]')) {
  button.addEventListener('click', async () => {
    const text = document.getElementById(button.dataset.copy).textContent;
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = 'Copied';
    } catch {
      const range = document.createRange();
      range.selectNodeContents(document.getElementById(button.dataset.copy));
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      button.textContent = 'Press Ctrl+C';
    }
    setTimeout(() => { button.textContent = 'Copy'; }, 2000);
  });
}

const verify = document.getElementById('verify');
if (verify) {
  const text = verify.querySelector('.text');
  const check = async () => {
    try {
      const r = await fetch(`/sites/${encodeURIComponent(verify.dataset.domain)}/verify`, { credentials: 'same-origin' });
      if (r.ok && (await r.json()).received) {
        verify.classList.add('ok');
        text.textContent = 'Pageviews are arriving. Plumb is installed.';
        return;
      }
    } catch { /* offline for a moment: try again */ }
    setTimeout(check, 2000);
  };
  check();
}

// Reports, alerts and webhooks on the settings page, through the Sites API with the session
// cookie (and the CSRF token for changes).
const notices = document.getElementById('notices');
if (notices) {
  const boot = JSON.parse(document.getElementById('boot').textContent);
  const base = `/api/v1/sites/${encodeURIComponent(notices.dataset.domain)}`;
  const api = async (path, method = 'GET', body) => {
    const r = await fetch(`${base}/${path}`, {
      method, credentials: 'same-origin', body: body && JSON.stringify(body),
      headers: { 'content-type': 'application/json', 'x-plumb-csrf': boot.csrf },
    });
    const data = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(data.error || `HTTP ${r.status}`);
    return data;
  };
  /** An element with text and attributes; children appended after. */
  const make = (tag, text, attrs = {}, children = []) => {
    const e = Object.assign(document.createElement(tag), attrs);
    if (text) e.textContent = text;
    e.append(...children);
    return e;
  };
  const button = (label, onclick, className = 'link') => make('button', label, { type: 'button', className, onclick });
  const field = (label, input) => make('label', `${label} `, {}, [input]);
  const error = make('p', '', { className: 'error', role: 'alert' });
  /** Runs a change, shows its error if any, then draws the card again. */
  const change = (work) => async (e) => {
    e?.preventDefault?.();
    error.textContent = '';
    try { await work(); } catch (err) { error.textContent = err.message; return; }
    draw();
  };

  const reportsPart = (reports, mail) => {
    const list = make('ul', '', { className: 'list' }, reports.map((r) => make('li', '', {}, [
      make('span', `${r.email} · every ${r.period}`),
      make('span', '', {}, [
        button('Send last period now', change(async () => {
          const { queued } = await api(`reports/${r.id}/send`, 'POST', {});
          error.textContent = queued ? `Sending the last ${r.period}'s report to ${r.email}.` : 'Already sent for that period.';
        })),
        button('Remove', change(() => api(`reports/${r.id}`, 'DELETE')), 'link danger'),
      ]),
    ])));
    if (!mail) return [make('h3', 'E-mail reports'), make('p', 'This Plumb sends no e-mail: its operator has not set --smtp-url.', { className: 'hint' }), list];
    const email = make('input', '', { type: 'email', name: 'email', required: true, value: boot.email || '' });
    const period = make('select', '', { name: 'period' }, [make('option', 'weekly', { value: 'week' }), make('option', 'monthly', { value: 'month' })]);
    const form = make('form', '', { className: 'row', onsubmit: change(() => api('reports', 'POST', { email: email.value, period: period.value })) },
      [field('E-mail', email), field('Every', period), make('button', 'Add report', { type: 'submit' })]);
    return [make('h3', 'E-mail reports'), list, form];
  };

  const alertsPart = (alerts, mail) => {
    const list = make('ul', '', { className: 'list' }, alerts.map((a) => make('li', '', {}, [
      make('span', `${a.kind === 'spike' ? `Spike: ${a.threshold}+ current visitors` : `Drop: no pageviews for ${a.threshold} min`}`
        + ` · cool-down ${a.cooldown_minutes} min${a.email ? ` · ${a.email}` : ''}`
        + ` · ${a.last_fired_at ? `last fired ${new Date(a.last_fired_at).toLocaleString()}` : 'never fired'}`),
      button('Remove', change(() => api(`alerts/${a.id}`, 'DELETE')), 'link danger'),
    ])));
    const kind = make('select', '', { name: 'kind' }, [make('option', 'Spike (current visitors at least)', { value: 'spike' }), make('option', 'Drop (minutes without pageviews)', { value: 'drop' })]);
    const threshold = make('input', '', { type: 'number', name: 'threshold', min: 1, required: true, size: 6 });
    const cooldown = make('input', '', { type: 'number', name: 'cooldown_minutes', min: 1, max: 10080, value: 60, size: 6 });
    const email = make('input', '', { type: 'email', name: 'email', placeholder: mail ? 'optional' : 'no e-mail here', disabled: !mail });
    const form = make('form', '', { className: 'row', onsubmit: change(() => api('alerts', 'POST', {
      kind: kind.value, threshold: Number(threshold.value), cooldown_minutes: Number(cooldown.value), email: email.value || null,
    })) }, [field('Alert on', kind), field('Threshold', threshold), field('Cool-down (min)', cooldown), field('E-mail', email), make('button', 'Add alert', { type: 'submit' })]);
    return [make('h3', 'Traffic alerts'), list, form, make('p', 'Alerts also go to the webhooks that take "alert".', { className: 'hint' })];
  };

  const webhooksPart = (hooks) => {
    const list = make('ul', '', { className: 'list' }, hooks.map((w) => {
      const log = make('ol', '', { className: 'deliveries' });
      return make('li', '', {}, [
        make('span', `${w.url} · ${w.events.join(', ')}`, {}, [log]),
        make('span', '', {}, [
          button('Deliveries', async () => {
            try {
              const { deliveries } = await api(`webhooks/${w.id}/deliveries`);
              log.replaceChildren(...(deliveries.length ? deliveries : [null]).map((d) => make('li', d
                ? `${new Date(d.created_at).toLocaleString()} · ${d.state} after ${d.attempts} attempt(s)${d.last_error ? ` · ${d.last_error}` : ''}`
                : 'No deliveries yet.')));
            } catch (err) { error.textContent = err.message; }
          }),
          button('Remove', change(() => api(`webhooks/${w.id}`, 'DELETE')), 'link danger'),
        ]),
      ]);
    }));
    const url = make('input', '', { type: 'url', name: 'url', required: true, placeholder: 'https://hooks.example.com/plumb', size: 36 });
    const boxes = ['alert', 'daily', 'goal'].map((e) => make('input', '', { type: 'checkbox', name: 'events', value: e, checked: true }));
    const secret = make('p', '', { className: 'hint webhook-secret' });
    const form = make('form', '', { className: 'row', onsubmit: async (e) => {
      e.preventDefault();
      error.textContent = '';
      try {
        const made = await api('webhooks', 'POST', { url: url.value, events: boxes.filter((b) => b.checked).map((b) => b.value) });
        await draw();
        notices.querySelector('.webhook-secret').replaceChildren('Signing secret (shown once, keep it): ', make('code', made.secret));
      } catch (err) { error.textContent = err.message; }
    } }, [field('URL', url), ...boxes.map((b) => field(b.value, b)), make('button', 'Add webhook', { type: 'submit' })]);
    return [make('h3', 'Webhooks'), list, form, secret,
      make('p', 'Each delivery is signed: Plumb-Signature: t=…,v1=HMAC-SHA256(secret, "t.body"). See the README.', { className: 'hint' })];
  };

  const draw = async () => {
    try {
      const [{ reports, mail_configured: mail }, { alerts }, { webhooks }] = await Promise.all([api('reports'), api('alerts'), api('webhooks')]);
      notices.querySelector('.notices-body').replaceChildren(error, ...reportsPart(reports, mail), ...alertsPart(alerts, mail), ...webhooksPart(webhooks));
    } catch (err) {
      error.textContent = err.message;
    }
  };
  draw();
}
