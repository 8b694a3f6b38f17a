// The dashboard: reads its state from the URL (so every view can be bookmarked or shared), asks
// the Stats API v2 for each region on its own, and redraws only what a change touches.

import { lineChart } from './chart.js';

const boot = JSON.parse(document.getElementById('boot').textContent);
const $ = (id) => document.getElementById(id);

/** Element builder: never parses strings as HTML, so data cannot become markup. */
function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c != null) e.append(c);
  return e;
}

// ---------------------------------------------------------------- state in the URL

const PERIODS = [
  ['realtime', 'Realtime', null], ['24h', 'Last 24 hours', null], ['day', 'Today', 'd'], ['yesterday', 'Yesterday', 'y'],
  ['7d', 'Last 7 days', 'w'], ['30d', 'Last 30 days', 't'], ['month', 'Month to date', 'm'],
  ['lastmonth', 'Last month', 'l'], ['12mo', 'Last 12 months', 'r'], ['all', 'All time', 'a'],
  ['custom', 'Custom range', 'c'],
];
const DIMENSIONS = {
  'visit:channel': 'Channel', 'visit:source': 'Source', 'visit:referrer': 'Referrer',
  'visit:utm_medium': 'UTM medium', 'visit:utm_source': 'UTM source', 'visit:utm_campaign': 'UTM campaign',
  'visit:utm_content': 'UTM content', 'visit:utm_term': 'UTM term', 'event:page': 'Page',
  'visit:entry_page': 'Entry page', 'visit:exit_page': 'Exit page', 'visit:country_name': 'Country',
  'visit:region': 'Region', 'visit:city': 'City', 'visit:device': 'Device', 'visit:browser': 'Browser',
  'visit:browser_version': 'Browser version', 'visit:os': 'Operating system', 'visit:os_version': 'OS version',
  'event:goal': 'Goal', 'event:name': 'Event', 'event:hostname': 'Hostname',
};
const OPS = { is: 'is', is_not: 'is not', contains: 'contains' };
/** Visits without a referrer have an empty source; Plausible's dashboards call them this. */
const DIRECT = ['visit:source', 'visit:referrer'];

function readState() {
  const p = new URLSearchParams(location.search);
  return {
    period: PERIODS.some(([k]) => k === p.get('period')) ? p.get('period') : '30d',
    from: p.get('from') || '', to: p.get('to') || '',
    filters: p.getAll('f').map((f) => f.split('|')).filter((f) => f.length >= 3 && OPS[f[0]])
      .map(([op, dim, ...v]) => [op, dim, v.join('|')]),
    metric: p.get('metric') || 'visitors',
    interval: p.get('interval') || '',
    tabs: Object.fromEntries([...p.entries()].filter(([k]) => k.startsWith('tab.')).map(([k, v]) => [k.slice(4), v])),
    prop: p.get('prop') || '',
    funnel: p.get('funnel') || '',
  };
}

let state = readState();

function writeState(change) {
  state = { ...state, ...change };
  const p = new URLSearchParams();
  if (boot.share) p.set('share', boot.share);
  if (new URLSearchParams(location.search).get('embed') === 'true') p.set('embed', 'true');
  if (state.period !== '30d') p.set('period', state.period);
  if (state.period === 'custom') { p.set('from', state.from); p.set('to', state.to); }
  for (const [op, dim, v] of state.filters) p.append('f', `${op}|${dim}|${v}`);
  if (state.metric !== 'visitors') p.set('metric', state.metric);
  if (state.interval) p.set('interval', state.interval);
  for (const [k, v] of Object.entries(state.tabs)) p.set(`tab.${k}`, v);
  if (state.prop) p.set('prop', state.prop);
  if (state.funnel) p.set('funnel', state.funnel);
  const qs = p.toString();
  history.pushState(null, '', qs ? `?${qs}` : location.pathname);
  render();
}

window.addEventListener('popstate', () => { state = readState(); render(); });

// ---------------------------------------------------------------- dates

const day = (s) => new Date(`${s}T00:00:00Z`);
const iso = (d) => d.toISOString().slice(0, 10);
const addDays = (s, n) => { const d = day(s); d.setUTCDate(d.getUTCDate() + n); return iso(d); };

/**
 * The v2 `date_range` for the state (dates are the site's local dates). The dashboard's "last N
 * days" end today, so a visit shows up at once (the API's `7d`/`30d` are whole days before today).
 */
function dateRange() {
  const t = boot.today;
  switch (state.period) {
    case '7d': return [addDays(t, -6), t];
    case '30d': return [addDays(t, -29), t];
    case '12mo': {
      const d = day(`${t.slice(0, 8)}01`);
      d.setUTCMonth(d.getUTCMonth() - 11);
      return [iso(d), t];
    }
    case 'yesterday': return [addDays(t, -1), addDays(t, -1)];
    case 'lastmonth': {
      const first = `${t.slice(0, 8)}01`;
      const end = addDays(first, -1);
      return [`${end.slice(0, 8)}01`, end];
    }
    case 'custom': return state.from && state.to ? [state.from, state.to] : '30d';
    case 'realtime': return 'day';
    default: return state.period;
  }
}

function rangeDays() {
  const r = dateRange();
  if (Array.isArray(r)) return (day(r[1]) - day(r[0])) / 864e5 + 1;
  return { day: 1, '24h': 1, '7d': 7, '30d': 30, month: 31, '12mo': 366, all: 1000 }[r] || 30;
}

function intervals() {
  const n = rangeDays();
  const all = [['hour', 'Hours'], ['day', 'Days'], ['week', 'Weeks'], ['month', 'Months']];
  return all.filter(([k]) => (k === 'hour' ? n <= 7 : k === 'day' ? n <= 400 : k === 'week' ? n >= 14 : n >= 60));
}

function interval() {
  const ok = intervals().map(([k]) => k);
  if (ok.includes(state.interval)) return state.interval;
  const n = rangeDays();
  return n <= 2 ? 'hour' : n <= 62 ? 'day' : 'month';
}

// ---------------------------------------------------------------- numbers

const nf = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const compact = new Intl.NumberFormat(undefined, { notation: 'compact', maximumFractionDigits: 1 });
function duration(s) {
  s = Math.round(s || 0);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m}m ${String(s % 60).padStart(2, '0')}s` : `${Math.floor(m / 60)}h ${m % 60}m`;
}
const METRICS = {
  visitors: { label: 'Unique visitors', format: (v, axis) => (axis ? compact.format(v) : nf.format(v)) },
  visits: { label: 'Total visits', format: (v, axis) => (axis ? compact.format(v) : nf.format(v)) },
  pageviews: { label: 'Total pageviews', format: (v, axis) => (axis ? compact.format(v) : nf.format(v)) },
  views_per_visit: { label: 'Views per visit', format: (v) => nf.format(v) },
  bounce_rate: { label: 'Bounce rate', format: (v) => `${nf.format(v)}%`, lowerIsBetter: true },
  visit_duration: { label: 'Visit duration', format: duration },
  events: { label: 'Events', format: (v) => nf.format(v) },
  conversion_rate: { label: 'Conversion rate', format: (v) => `${nf.format(v)}%` },
  time_on_page: { label: 'Time on page', format: duration },
  percentage: { label: '%', format: (v) => `${nf.format(v)}%` },
  total_revenue: { label: 'Revenue', format: money },
  average_revenue: { label: 'Average revenue', format: money },
};
/** Revenue comes as `{value, currency}`; goals without a currency have none. */
function money(v) {
  if (!v || typeof v !== 'object') return '—';
  return new Intl.NumberFormat(undefined, { style: 'currency', currency: v.currency }).format(v.value);
}
const show = (m, v) => (v == null ? '—' : (METRICS[m]?.format || nf.format)(v));
/** A metric's number (revenue objects carry theirs in `value`), for bars. */
const amount = (v) => (typeof v === 'object' && v ? v.value : v) || 0;

// ---------------------------------------------------------------- the API

function filtersJson(extra = []) {
  // A segment is named by its id (see the Stats API's `["is", "segment", [id]]`).
  return [...state.filters, ...extra].map(([op, dim, v]) => [op, dim, [dim === 'segment' ? Number(v) : v]]);
}

const apiHeaders = { 'content-type': 'application/json', 'x-plumb-csrf': boot.csrf };
if (boot.share) apiHeaders['x-plumb-share'] = boot.share;

async function query(body, signal) {
  const r = await fetch('/api/v2/query', {
    method: 'POST', headers: apiHeaders, credentials: 'same-origin', signal,
    body: JSON.stringify({ site_id: boot.site, date_range: dateRange(), filters: filtersJson(), ...body }),
  });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.error || `HTTP ${r.status}`);
  return data;
}

/** The site's part of the Sites API: annotations and segments. */
async function siteApi(path, method = 'GET', body) {
  const r = await fetch(`/api/v1/sites/${encodeURIComponent(boot.site)}/${path}`, {
    method, headers: apiHeaders, credentials: 'same-origin', body: body && JSON.stringify(body),
  });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.error || `HTTP ${r.status}`);
  return data;
}

const shareParam = boot.share ? `&share=${encodeURIComponent(boot.share)}` : '';
const exportUrl = (body) => `/sites/${encodeURIComponent(boot.site)}/export.csv?q=${encodeURIComponent(JSON.stringify({
  date_range: dateRange(), filters: filtersJson(), ...body,
}))}${shareParam}`;

/** Runs `work` for a region, marking it busy, done or failed; aborts the previous run. */
const running = new Map();
async function load(region, work) {
  running.get(region.id)?.abort();
  const ctl = new AbortController();
  running.set(region.id, ctl);
  region.classList.add('loading');
  region.dataset.state = 'loading';
  try {
    await work(ctl.signal);
    region.dataset.state = 'done';
    performance.mark(`plumb:${region.id}`);
  } catch (e) {
    if (e.name === 'AbortError') return;
    region.dataset.state = 'failed';
    region.replaceChildren(h('p', { class: 'failed', role: 'alert' }, `Could not load: ${e.message}`));
  } finally {
    region.classList.remove('loading');
  }
}

// ---------------------------------------------------------------- date range and filters

function renderRange() {
  const box = $('range');
  const select = h('select', { 'aria-label': 'Date range', onchange: (e) => {
    if (e.target.value === 'custom') { custom.classList.add('open'); from.focus(); return; }
    writeState({ period: e.target.value });
  } }, PERIODS.map(([k, label, key]) => h('option', { value: k, selected: state.period === k }, key ? `${label} (${key})` : label)));
  const from = h('input', { type: 'date', 'aria-label': 'From', value: state.from || addDays(boot.today, -6), max: boot.today });
  const to = h('input', { type: 'date', 'aria-label': 'To', value: state.to || boot.today, max: boot.today });
  const custom = h('form', { class: `custom${state.period === 'custom' ? ' open' : ''}`, onsubmit: (e) => {
    e.preventDefault();
    if (from.value && to.value && from.value <= to.value) writeState({ period: 'custom', from: from.value, to: to.value });
  } }, from, to, h('button', { type: 'submit' }, 'Apply'));
  box.replaceChildren(select, custom);
}

/** Saved segments the caller sees (shared ones and their own), loaded once and after changes. */
let segments = [];
async function loadSegments() {
  try { segments = (await siteApi('segments')).segments; } catch { segments = []; }
  renderFilters();
}

const filterText = ([op, dim, v]) => (dim === 'segment'
  ? `Segment: ${segments.find((s) => String(s.id) === v)?.name ?? `#${v}`}`
  : `${DIMENSIONS[dim] || dim} ${OPS[op]} ${v}`);

/** Pick a segment, save the current filters as one, delete the one picked. */
function segmentControls() {
  const active = state.filters.find(([, dim]) => dim === 'segment')?.[2];
  const pick = h('select', { 'aria-label': 'Segment', onchange: (e) => e.target.value && addFilter('segment', e.target.value) },
    h('option', { value: '' }, segments.length ? 'Segments…' : 'No segments'),
    segments.map((s) => h('option', { value: String(s.id), selected: String(s.id) === active }, `${s.name}${s.shared ? '' : ' (mine)'}`)));
  const own = state.filters.filter(([, dim]) => dim !== 'segment');
  const out = [pick];
  if (boot.canSave && own.length) {
    const name = h('input', { 'aria-label': 'Segment name', placeholder: 'segment name', required: true, maxlength: 100 });
    const shared = h('input', { type: 'checkbox', 'aria-label': 'Shared with everyone who can see this site' });
    const error = h('span', { class: 'error', role: 'alert' });
    const form = h('form', { hidden: true, onsubmit: async (e) => {
      e.preventDefault();
      try {
        const s = await siteApi('segments', 'POST', {
          name: name.value, shared: shared.checked, filters: own.map(([op, dim, v]) => [op, dim, [v]]),
        });
        segments.push(s);
        writeState({ filters: [['is', 'segment', String(s.id)]] });
      } catch (err) { error.textContent = err.message; }
    } }, name, ...(boot.canEdit ? [h('label', {}, shared, ' shared')] : []), h('button', { type: 'submit' }, 'Save'), error);
    out.push(h('button', { type: 'button', class: 'link', onclick: () => { form.hidden = !form.hidden; if (!form.hidden) name.focus(); } },
      'Save as segment'), form);
  }
  const picked = segments.find((s) => String(s.id) === active);
  if (picked && (picked.shared ? boot.canEdit : boot.canSave)) {
    out.push(h('button', { type: 'button', class: 'link', onclick: async () => {
      await siteApi(`segments/${picked.id}`, 'DELETE');
      segments = segments.filter((s) => s !== picked);
      writeState({ filters: state.filters.filter(([, dim]) => dim !== 'segment') });
    } }, 'Delete segment'));
  }
  return h('span', { class: 'segments' }, ...out);
}

function renderFilters() {
  const box = $('filters');
  const chips = state.filters.map((f, i) => h('span', { class: 'chip' },
    filterText(f),
    h('button', { type: 'button', 'aria-label': `Remove filter ${filterText(f)}`,
      onclick: () => writeState({ filters: state.filters.filter((_, j) => j !== i) }) }, '×')));
  const dim = h('select', { 'aria-label': 'Filter by' }, Object.entries(DIMENSIONS).map(([k, v]) => h('option', { value: k }, v)));
  const op = h('select', { 'aria-label': 'Operator' }, Object.entries(OPS).map(([k, v]) => h('option', { value: k }, v)));
  const value = h('input', { 'aria-label': 'Value', placeholder: 'value', required: true });
  const form = h('form', { class: 'filter-form', hidden: true, onsubmit: (e) => {
    e.preventDefault();
    if (value.value.trim()) writeState({ filters: [...state.filters, [op.value, dim.value, value.value.trim()]] });
  } }, dim, op, value, h('button', { type: 'submit' }, 'Apply'));
  const add = h('button', { type: 'button', class: 'link', 'aria-expanded': 'false', onclick: () => {
    form.hidden = !form.hidden;
    add.setAttribute('aria-expanded', String(!form.hidden));
    if (!form.hidden) value.focus();
  } }, '+ Filter');
  const clear = state.filters.length > 1
    ? h('button', { type: 'button', class: 'link', onclick: () => writeState({ filters: [] }) }, 'Clear all') : null;
  box.replaceChildren(...chips, add, ...(clear ? [clear] : []), form, ...(boot.share ? [] : [segmentControls()]));
}

function addFilter(dim, value) {
  if (state.filters.some(([op, d, v]) => op === 'is' && d === dim && v === value)) return;
  writeState({ filters: [...state.filters.filter(([op, d]) => !(op === 'is' && d === dim)), ['is', dim, value]] });
}

// ---------------------------------------------------------------- top stats and chart

const STATS = ['visitors', 'visits', 'pageviews', 'views_per_visit', 'bounce_rate', 'visit_duration'];
const comparing = () => state.period !== 'all';

function renderStats() {
  const box = $('stats');
  load(box, async (signal) => {
    const data = await query({ metrics: STATS, include: comparing() ? { comparisons: { mode: 'previous_period' } } : {} }, signal);
    // Nothing shown through a link that hides small groups is not a zero.
    const row = data.results[0] || { metrics: STATS.map(() => (data.meta.rows_hidden_below_visitors ? null : 0)) };
    box.replaceChildren(...STATS.map((m, i) => {
      const change = row.comparison?.change?.[i];
      const dir = change > 0 ? 'up' : change < 0 ? 'down' : '';
      const cls = `change ${dir}${METRICS[m].lowerIsBetter ? ' bad' : ''}`;
      return h('button', { type: 'button', role: 'tab', class: 'stat', 'aria-selected': String(state.metric === m),
        onclick: () => writeState({ metric: m }) },
      h('span', { class: 'label' }, METRICS[m].label),
      h('span', { class: 'value' }, show(m, row.metrics[i])),
      change == null ? h('span', { class: 'change' }, ' ')
        : h('span', { class: cls, title: 'Against the previous period' }, `${change > 0 ? '↑' : change < 0 ? '↓' : ''} ${Math.abs(change)}%`));
    }));
  });
}

/// What an answer says of imported history it left out (imported from another tool; see the
/// Stats API's `imports_warning`), if anything.
function importsNote(meta) {
  if (!meta.imports_warning) return null;
  const text = meta.imports_included ? `Partly imported data: ${meta.imports_warning}.` : `Imported data not shown: ${meta.imports_warning}.`;
  return h('p', { class: 'note imports-note' }, text);
}

function renderChart() {
  const box = $('chart');
  const every = interval();
  const sel = $('interval');
  sel.replaceChildren(...intervals().map(([k, label]) => h('option', { value: k, selected: k === every }, label)));
  sel.onchange = () => writeState({ interval: sel.value });
  const metric = STATS.includes(state.metric) ? state.metric : 'visitors';
  $('chart-title').textContent = `${METRICS[metric].label} by ${every}`;
  load(box, async (signal) => {
    const data = await query({
      metrics: [metric], dimensions: [`time:${every}`],
      include: { time_labels: true, ...(comparing() ? { comparisons: { mode: 'previous_period' } } : {}) },
    }, signal);
    const labels = data.meta.time_labels || [];
    $('chart-note').replaceChildren(...[importsNote(data.meta)].filter(Boolean));
    const byLabel = new Map(data.results.map((r) => [r.dimensions[0], r]));
    const values = labels.map((l) => byLabel.get(l)?.metrics[0] ?? 0);
    const previous = comparing() ? labels.map((l) => byLabel.get(l)?.comparison?.metrics?.[0] ?? null) : null;
    const short = (l) => (every === 'hour' ? l.slice(11, 16) : every === 'month' ? l.slice(0, 7) : l.slice(5, 10));
    const shown = (await annotationsLoaded).map((a) => ({ ...a, i: bucketOf(labels, every, a.date) })).filter((a) => a.i >= 0);
    lineChart(box, {
      labels: labels.map(short), values, previous, previousLabel: 'Previous period',
      format: (v, axis) => (METRICS[metric].format ? METRICS[metric].format(v, axis) : nf.format(v)),
      describe: (i) => labels[i],
      marks: shown.map((a) => ({ i: a.i, text: `${a.date}: ${a.text}` })),
    });
    renderNotes(shown);
  });
}

// ---------------------------------------------------------------- annotations

let annotationsLoaded = siteApi('annotations').then((d) => d.annotations, () => []);

/** The chart point a date falls in (time labels start with the bucket's first date), or -1. */
function bucketOf(labels, every, date) {
  const starts = labels.map((l) => l.slice(0, 10));
  if (every === 'hour' || every === 'day') return starts.indexOf(date);
  let i = -1;
  starts.forEach((s, j) => { if (s <= date) i = j; });
  if (i < 0) return -1;
  const end = every === 'week' ? addDays(starts[i], 7)
    : iso(new Date(Date.UTC(Number(starts[i].slice(0, 4)), Number(starts[i].slice(5, 7)), 1)));
  return date < end ? i : -1;
}

/** The chart's annotations as chips (removable by editors), and a form to add one. */
function renderNotes(shown) {
  const box = $('notes');
  const chips = shown.map((a) => h('span', { class: 'chip note' }, `${a.date} · ${a.text}`,
    ...(boot.canEdit ? [h('button', { type: 'button', 'aria-label': `Remove annotation ${a.text}`, onclick: async () => {
      await siteApi(`annotations/${a.id}`, 'DELETE');
      annotationsLoaded = siteApi('annotations').then((d) => d.annotations, () => []);
      renderChart();
    } }, '×')] : [])));
  if (!boot.canEdit) return box.replaceChildren(...chips);
  const date = h('input', { type: 'date', 'aria-label': 'Annotation date', value: boot.today, required: true });
  const text = h('input', { 'aria-label': 'Annotation', placeholder: 'e.g. Deployed v2', maxlength: 300, required: true });
  const error = h('span', { class: 'error', role: 'alert' });
  const form = h('form', { hidden: true, onsubmit: async (e) => {
    e.preventDefault();
    try {
      await siteApi('annotations', 'POST', { date: date.value, text: text.value });
      annotationsLoaded = siteApi('annotations').then((d) => d.annotations, () => []);
      renderChart();
    } catch (err) { error.textContent = err.message; }
  } }, date, text, h('button', { type: 'submit' }, 'Add'), error);
  const add = h('button', { type: 'button', class: 'link', onclick: () => { form.hidden = !form.hidden; if (!form.hidden) text.focus(); } },
    '+ Annotation');
  box.replaceChildren(...chips, add, form);
}

// ---------------------------------------------------------------- panels

const VISIT = ['visitors', 'visits', 'bounce_rate', 'visit_duration'];
const PANELS = [
  { id: 'sources', title: 'Top sources', tabs: [
    ['visit:channel', 'Channels'], ['visit:source', 'Sources'], ['visit:referrer', 'Referrers'],
    ['visit:utm_medium', 'Medium'], ['visit:utm_source', 'Source'], ['visit:utm_campaign', 'Campaign'],
    ['visit:utm_content', 'Content'], ['visit:utm_term', 'Term']], details: VISIT },
  { id: 'pages', title: 'Top pages', tabs: [['event:page', 'Pages'], ['visit:entry_page', 'Entry'], ['visit:exit_page', 'Exit']],
    details: { 'event:page': ['visitors', 'pageviews', 'bounce_rate', 'time_on_page'], 'visit:exit_page': ['visitors', 'visits'] } },
  { id: 'locations', title: 'Locations', tabs: [['visit:country_name', 'Countries'], ['visit:region', 'Regions'], ['visit:city', 'Cities']], details: VISIT },
  { id: 'devices', title: 'Devices', tabs: [['visit:device', 'Devices'], ['visit:browser', 'Browsers'],
    ['visit:browser_version', 'Versions'], ['visit:os', 'OS'], ['visit:os_version', 'OS versions']], details: VISIT },
  { id: 'goals', title: 'Goals & events', tabs: [['event:goal', 'Goals'], ['event:name', 'Events'], ['props', 'Properties']],
    details: { 'event:goal': ['visitors', 'events', 'conversion_rate', ...(boot.revenue ? ['total_revenue', 'average_revenue'] : [])],
      'event:name': ['visitors', 'events'], props: ['visitors', 'events'] } },
];

function panelMetrics(panel, dim) {
  const d = Array.isArray(panel.details) ? panel.details : panel.details[dim] || VISIT;
  if (dim === 'event:goal') return ['visitors', 'conversion_rate', ...(boot.revenue ? ['total_revenue'] : [])];
  return d === VISIT || dim === 'event:page' ? ['visitors'] : [d[0]];
}
const detailMetrics = (panel, dim) => (Array.isArray(panel.details) ? panel.details : panel.details[dim] || VISIT);
const currentTab = (panel) => state.tabs[panel.id] || panel.tabs[0][0];
const dimensionOf = (tab) => (tab === 'props' ? (state.prop ? `event:props:${state.prop}` : null) : tab);

function rowsTable(dim, metrics, results, { sortable, onSort, order } = {}) {
  const max = Math.max(1, ...results.map((r) => amount(r.metrics[0])));
  const label = dim ? DIMENSIONS[dim] || dim.replace('event:props:', '') : '';
  const head = h('tr', {}, h('th', { scope: 'col' }, label), metrics.map((m) => {
    const name = METRICS[m]?.label || m;
    if (!sortable) return h('th', { scope: 'col' }, name);
    const dir = order?.[0] === m ? order[1] : null;
    return h('th', { scope: 'col', 'aria-sort': dir ? (dir === 'desc' ? 'descending' : 'ascending') : null },
      h('button', { type: 'button', onclick: () => onSort(m) }, `${name}${dir ? (dir === 'desc' ? ' ↓' : ' ↑') : ''}`));
  }));
  const body = results.map((r) => {
    const value = r.dimensions[0];
    const fill = h('span', { class: 'fill' });
    fill.style.width = `${(amount(r.metrics[0]) / max) * 100}%`;
    const filterable = dim && !dim.startsWith('event:props:') && dim !== 'event:name';
    return h('tr', {},
      h('td', { class: 'name' }, h('button', { type: 'button', title: filterable ? `Filter by ${label} ${value}` : value,
        onclick: filterable ? () => { $('details').close?.(); addFilter(dim, value); } : null },
      fill, h('span', {}, value === '' ? (DIRECT.includes(dim) ? 'Direct / None' : '(none)') : value))),
      r.metrics.map((v, i) => h('td', {}, show(metrics[i], v))));
  });
  return h('table', { class: 'rows' }, h('thead', {}, head), h('tbody', {}, body));
}

function renderPanel(panel, box) {
  const tab = currentTab(panel);
  const dim = dimensionOf(tab);
  const tabs = h('div', { class: 'tabs', role: 'tablist', 'aria-label': panel.title }, panel.tabs.map(([k, label]) =>
    h('button', { type: 'button', role: 'tab', 'aria-selected': String(k === tab),
      onclick: () => writeState({ tabs: { ...state.tabs, [panel.id]: k } }) }, label)));
  const title = h('h2', {}, panel.tabs.find(([k]) => k === tab)?.[1] || panel.title);
  const content = h('div', { class: 'panel-body', id: `panel-${panel.id}` });
  const foot = h('div', { class: 'panel-foot' });
  box.replaceChildren(h('div', { class: 'panel-head' }, title, tabs), content, foot);
  if (tab === 'props') {
    const key = h('input', { 'aria-label': 'Property name', placeholder: 'property name, e.g. plan', value: state.prop });
    content.before(h('form', { class: 'filter-form', onsubmit: (e) => { e.preventDefault(); writeState({ prop: key.value.trim() }); } },
      key, h('button', { type: 'submit' }, 'Show')));
    if (!dim) { content.replaceChildren(h('p', { class: 'empty' }, 'Name a custom property to break it down.')); content.dataset.state = 'done'; return; }
  }
  if (dim === 'event:goal' && !boot.goals.length) {
    content.replaceChildren(h('p', { class: 'empty' }, boot.canEdit ? 'No goals yet: add them in the settings.' : 'No goals set up.'));
    content.dataset.state = 'done';
    return;
  }
  const metrics = panelMetrics(panel, dim);
  load(content, async (signal) => {
    const body = { metrics, dimensions: [dim], pagination: { limit: 9 }, include: { total_rows: true } };
    const data = await query(body, signal);
    content.replaceChildren(data.results.length ? rowsTable(dim, metrics, data.results)
      : h('p', { class: 'empty' }, 'No data for this range yet.'));
    foot.replaceChildren(
      h('a', { href: exportUrl({ metrics: detailMetrics(panel, dim), dimensions: [dim] }), download: '' }, 'CSV'),
      h('button', { type: 'button', onclick: () => openDetails(panel, dim) }, `Details${data.meta.total_rows > 9 ? ` (${data.meta.total_rows})` : ''}`));
    const note = importsNote(data.meta);
    if (note) content.append(note);
  });
}

function renderPanels() {
  const grid = $('panels');
  if (!grid.children.length || grid.dataset.mode !== 'panels') {
    grid.dataset.mode = 'panels';
    grid.replaceChildren(...PANELS.map((p) => h('section', { class: 'card panel', id: `box-${p.id}`, 'aria-label': p.title })));
  }
  for (const p of PANELS) renderPanel(p, $(`box-${p.id}`));
}

// ---------------------------------------------------------------- funnels

/** The site's funnels, loaded once and after changes; the one shown is in the URL. */
let funnels = [];
async function loadFunnels() {
  try { funnels = (await siteApi('funnels')).funnels; } catch { funnels = []; }
  renderFunnel();
}

function funnelForm() {
  const name = h('input', { 'aria-label': 'Funnel name', placeholder: 'e.g. Sign-up', maxlength: 100, required: true });
  const steps = h('div', { class: 'funnel-steps' });
  const addStep = () => {
    if (steps.children.length >= 8) return;
    steps.append(h('select', { 'aria-label': `Step ${steps.children.length + 1}`, required: true },
      h('option', { value: '' }, `Step ${steps.children.length + 1}…`), boot.goals.map((g) => h('option', { value: g }, g))));
  };
  addStep(); addStep();
  const error = h('span', { class: 'error', role: 'alert' });
  return h('form', { class: 'funnel-form', onsubmit: async (e) => {
    e.preventDefault();
    try {
      const f = await siteApi('funnels', 'POST', { name: name.value, steps: [...steps.children].map((s) => s.value) });
      funnels.push(f);
      writeState({ funnel: String(f.id) });
    } catch (err) { error.textContent = err.message; }
  } }, name, steps, h('button', { type: 'button', class: 'link', onclick: addStep }, '+ Step'),
  h('button', { type: 'submit' }, 'Save funnel'), error, h('p', { class: 'hint' },
    'Funnels count visits from the moment they are saved: Plumb keeps no visitor paths to look back through.'));
}

function renderFunnel() {
  const box = $('funnels');
  if (boot.hiddenBelow || state.period === 'realtime') { box.hidden = true; return; }
  box.hidden = false;
  const picked = funnels.find((f) => String(f.id) === state.funnel) || funnels[0];
  const pick = funnels.length ? h('select', { 'aria-label': 'Funnel', onchange: (e) => writeState({ funnel: e.target.value }) },
    funnels.map((f) => h('option', { value: String(f.id), selected: f === picked }, f.name))) : null;
  const body = h('div', { class: 'panel-body', id: 'funnel-body' });
  const actions = [];
  if (boot.canEdit) {
    actions.push(h('button', { type: 'button', class: 'link', onclick: () => body.replaceChildren(funnelForm()) }, '+ Funnel'));
    if (picked) {
      actions.push(h('button', { type: 'button', class: 'link', onclick: async () => {
        await siteApi(`funnels/${picked.id}`, 'DELETE');
        funnels = funnels.filter((f) => f !== picked);
        writeState({ funnel: '' });
      } }, 'Delete funnel'));
    }
  }
  box.replaceChildren(h('div', { class: 'panel-head' }, h('h2', {}, 'Funnels'), pick, ...actions), body);
  if (!picked) {
    body.replaceChildren(h('p', { class: 'empty' }, boot.canEdit
      ? (boot.goals.length >= 2 ? 'No funnels yet: add one from two or more goals.' : 'Add two or more goals in the settings to make a funnel.')
      : 'No funnels set up.'));
    body.dataset.state = 'done';
    return;
  }
  load(body, async (signal) => {
    const r = await fetch('/api/v2/funnel', {
      method: 'POST', headers: apiHeaders, credentials: 'same-origin', signal,
      body: JSON.stringify({ site_id: boot.site, funnel_id: picked.id, date_range: dateRange(),
        filters: filtersJson().filter(([, dim]) => dim.startsWith('visit:') || dim === 'segment') }),
    });
    const data = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(data.error || `HTTP ${r.status}`);
    const max = Math.max(1, data.steps[0]?.visitors || 0);
    const rows = data.steps.map((s, i) => {
      const fill = h('i', { class: 'fill' });
      fill.style.width = `${(s.visitors / max) * 100}%`;
      return h('tr', {}, h('td', { class: 'name' }, h('span', { class: 'bar' }, fill, h('span', {}, `${i + 1}. ${s.name}`))),
        h('td', {}, nf.format(s.visitors)), h('td', {}, `${nf.format(s.conversion_rate)}%`),
        h('td', {}, i ? `${nf.format(s.dropoff)} (${nf.format(s.dropoff_percentage)}%)` : '—'));
    });
    const head = h('tr', {}, ['Step', 'Visitors', 'Conversion', 'Drop-off'].map((t) => h('th', { scope: 'col' }, t)));
    const since = new Date(data.funnel.counting_since).toLocaleString();
    body.replaceChildren(
      h('p', { class: 'hint' }, `${nf.format(data.entering_visitors)} of ${nf.format(data.all_visitors)} visitors entered `
        + `(${nf.format(data.entering_visitors_percentage)}%). Counted as visits happen, since ${since}; `
        + 'filters on pages and events do not apply to funnels.'),
      h('table', { class: 'rows funnel' }, h('thead', {}, head), h('tbody', {}, rows)));
  });
}

// ---------------------------------------------------------------- details view

function openDetails(panel, dim) {
  const dialog = $('details');
  const metrics = detailMetrics(panel, dim);
  const size = 20;
  let page = 0;
  let search = '';
  let order = [metrics[0], 'desc'];
  const search_box = h('input', { type: 'search', 'aria-label': 'Search', placeholder: 'Search' });
  const table = h('div', { id: 'details-table' });
  const pager = h('div', { class: 'pager' });
  const csv = h('a', { class: 'button', download: '' }, 'CSV');
  const refresh = () => load(table, async (signal) => {
    const filters = search ? [...filtersJson(), ['contains', dim, [search], { case_sensitive: false }]] : filtersJson();
    const body = { metrics, dimensions: [dim], order_by: [order], pagination: { limit: size, offset: page * size },
      include: { total_rows: true }, filters };
    csv.href = exportUrl({ metrics, dimensions: [dim], order_by: [order], filters: body.filters });
    const data = await query(body, signal);
    const total = data.meta.total_rows || 0;
    table.replaceChildren(data.results.length ? rowsTable(dim, metrics, data.results, {
      sortable: true, order, onSort: (m) => { order = [m, order[0] === m && order[1] === 'desc' ? 'asc' : 'desc']; page = 0; refresh(); },
    }) : h('p', { class: 'empty' }, 'Nothing matches.'));
    const pages = Math.max(1, Math.ceil(total / size));
    pager.replaceChildren(
      h('button', { type: 'button', disabled: page === 0, onclick: () => { page--; refresh(); } }, '← Previous'),
      h('span', {}, `Page ${page + 1} of ${pages} · ${nf.format(total)} rows`),
      h('button', { type: 'button', disabled: page + 1 >= pages, onclick: () => { page++; refresh(); } }, 'Next →'));
  });
  let timer;
  search_box.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(() => { search = search_box.value.trim(); page = 0; refresh(); }, 250); });
  dialog.replaceChildren(
    h('div', { class: 'dialog-head' }, h('h2', { id: 'details-title' }, DIMENSIONS[dim] || dim), search_box, csv,
      h('button', { type: 'button', onclick: () => dialog.close() }, 'Close')),
    table, pager);
  dialog.showModal();
  search_box.focus();
  refresh();
}

// ---------------------------------------------------------------- realtime

/** The latest snapshot from the server-sent stream (it reconnects by itself). */
let lastSnap = null;
function connectLive() {
  const url = `/api/v1/stats/realtime/stream?site_id=${encodeURIComponent(boot.site)}${shareParam}`;
  const live = new EventSource(url, { withCredentials: true });
  live.addEventListener('realtime', (e) => {
    lastSnap = JSON.parse(e.data);
    $('live-count').textContent = nf.format(lastSnap.visitors);
    $('live').classList.toggle('on', lastSnap.visitors > 0);
    if (state.period === 'realtime') renderRealtime(lastSnap);
  });
}

function renderRealtime(snap) {
  const grid = $('panels');
  grid.dataset.mode = 'realtime';
  const list = (title, rows) => h('section', { class: 'card panel' }, h('div', { class: 'panel-head' }, h('h2', {}, title)),
    rows.length ? rowsTable(null, ['visitors'], rows.map((r) => ({ dimensions: [r.name], metrics: [r.visitors] })))
      : h('p', { class: 'empty' }, 'Nobody right now.'));
  grid.replaceChildren(h('div', { class: 'realtime-list' }, list('Current pages', snap.pages), list('Current sources', snap.sources)));
  $('stats').replaceChildren(h('div', { class: 'stat' }, h('span', { class: 'label' }, 'Current visitors (last 5 minutes)'),
    h('span', { class: 'value' }, nf.format(snap.visitors))));
}

// ---------------------------------------------------------------- everything

function render() {
  renderRange();
  renderFilters();
  const realtime = state.period === 'realtime';
  $('chart').parentElement.querySelector('.chart-head').hidden = realtime;
  $('chart').hidden = realtime;
  $('export-all').href = `/sites/${encodeURIComponent(boot.site)}/export.zip?date_range=${encodeURIComponent(JSON.stringify(dateRange()))}&filters=${encodeURIComponent(JSON.stringify(filtersJson()))}${shareParam}`;
  renderFunnel();
  if (realtime) {
    if (lastSnap) renderRealtime(lastSnap);
    else { $('stats').replaceChildren(h('p', { class: 'hint' }, 'Connecting…')); $('panels').replaceChildren(); }
    return;
  }
  renderStats();
  renderChart();
  renderPanels();
}

$('live').addEventListener('click', () => writeState({ period: 'realtime' }));
$('site-switch')?.addEventListener('change', (e) => { location.href = `/sites/${encodeURIComponent(e.target.value)}`; });

document.addEventListener('keydown', (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey || e.target.closest?.('input, select, textarea, dialog')) return;
  const hit = PERIODS.find(([, , key]) => key === e.key.toLowerCase());
  if (!hit) return;
  e.preventDefault();
  if (hit[0] === 'custom') {
    const select = $('range').querySelector('select');
    select.value = 'custom';
    select.dispatchEvent(new Event('change'));
  } else {
    writeState({ period: hit[0] });
  }
});

let resizeTimer;
window.addEventListener('resize', () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(() => state.period !== 'realtime' && renderChart(), 200); });

if (boot.hiddenBelow) {
  $('export-all').hidden = true;
  $('filters').after(h('p', { class: 'note' },
    `Rows with fewer than ${boot.hiddenBelow} visitors are not shown on this shared dashboard.`));
}
render();
connectLive();
if (!boot.share) loadSegments();
if (!boot.hiddenBelow) loadFunnels();
