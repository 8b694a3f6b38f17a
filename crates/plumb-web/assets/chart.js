// A small SVG line chart: the current period as a filled line, the comparison period dashed,
// a hover cursor with a tooltip, and keyboard access (arrow keys move the cursor).

const NS = 'http://www.w3.org/2000/svg';

function el(name, attrs, parent) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

/** Round axis maximum: 1, 2 or 5 times a power of ten. */
function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 5, 10].map((m) => m * p).find((m) => m >= v);
}

/**
 * Draws into `box`: `labels` (x), `values` and optional `previous` (y), `format` for numbers,
 * `describe(i)` for the tooltip's heading, and `marks` (`{ i, text }`: annotations) as flagged
 * vertical lines whose text the tooltip shows.
 */
export function lineChart(box, { labels, values, previous, format, describe, previousLabel, marks = [] }) {
  box.textContent = '';
  const width = Math.max(box.clientWidth, 280);
  const height = box.clientHeight || 240;
  const pad = { left: 44, right: 12, top: 10, bottom: 26 };
  const w = width - pad.left - pad.right;
  const h = height - pad.top - pad.bottom;
  const max = niceMax(Math.max(0, ...values, ...(previous || []).filter((v) => v != null)));
  const n = labels.length;
  const x = (i) => pad.left + (n <= 1 ? w / 2 : (i * w) / (n - 1));
  const y = (v) => pad.top + h - (v / max) * h;
  const svg = el('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', tabindex: '0',
    'aria-label': `Chart of ${n} points; use the arrow keys to read values` }, box);

  for (let t = 0; t <= 4; t++) {
    const v = (max * t) / 4;
    el('line', { class: 'grid', x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v) }, svg);
    el('text', { class: 'axis', x: pad.left - 6, y: y(v) + 4, 'text-anchor': 'end' }, svg).textContent = format(v, true);
  }
  const every = Math.max(1, Math.ceil(n / Math.max(2, Math.floor(w / 80))));
  labels.forEach((l, i) => {
    if (i % every === 0) el('text', { class: 'axis', x: x(i), y: height - 6, 'text-anchor': 'middle' }, svg).textContent = l;
  });

  const path = (vs) => vs.map((v, i) => (v == null ? null : `${x(i).toFixed(1)},${y(v).toFixed(1)}`)).filter(Boolean);
  if (previous && previous.length) el('polyline', { class: 'previous', points: path(previous).join(' ') }, svg);
  const points = path(values);
  if (points.length) {
    el('polygon', { class: 'area', points: `${x(0)},${y(0)} ${points.join(' ')} ${x(n - 1)},${y(0)}` }, svg);
    el('polyline', { class: 'line', points: points.join(' ') }, svg);
  }

  for (const m of marks) {
    const g = el('g', { class: 'mark' }, svg);
    el('line', { x1: x(m.i), x2: x(m.i), y1: pad.top, y2: pad.top + h }, g);
    el('circle', { cx: x(m.i), cy: pad.top, r: 4 }, g);
    el('title', {}, g).textContent = m.text;
  }

  const cursor = el('line', { class: 'cursor', y1: pad.top, y2: pad.top + h, visibility: 'hidden' }, svg);
  const dot = el('circle', { class: 'point', r: 4, visibility: 'hidden' }, svg);
  const tip = document.createElement('div');
  tip.className = 'tooltip';
  tip.hidden = true;
  box.appendChild(tip);

  const show = (i) => {
    if (i < 0 || i >= n) return;
    cursor.setAttribute('x1', x(i));
    cursor.setAttribute('x2', x(i));
    cursor.setAttribute('visibility', 'visible');
    dot.setAttribute('cx', x(i));
    dot.setAttribute('cy', y(values[i] || 0));
    dot.setAttribute('visibility', 'visible');
    tip.textContent = '';
    const head = document.createElement('strong');
    head.textContent = describe(i);
    tip.append(head, document.createElement('br'), format(values[i] || 0));
    if (previous && previous[i] != null) {
      tip.append(document.createElement('br'), `${previousLabel}: ${format(previous[i])}`);
    }
    for (const m of marks.filter((m) => m.i === i)) {
      const note = document.createElement('em');
      note.textContent = m.text;
      tip.append(document.createElement('br'), note);
    }
    tip.hidden = false;
    const left = Math.min(Math.max(x(i) - tip.offsetWidth / 2, 0), width - tip.offsetWidth);
    tip.style.left = `${left}px`;
    tip.style.top = '0px';
    svg.setAttribute('aria-valuetext', tip.textContent);
    current = i;
  };
  const hide = () => {
    cursor.setAttribute('visibility', 'hidden');
    dot.setAttribute('visibility', 'hidden');
    tip.hidden = true;
  };
  let current = n - 1;
  svg.addEventListener('mousemove', (e) => {
    const r = svg.getBoundingClientRect();
    const px = ((e.clientX - r.left) / r.width) * width;
    show(Math.round(((px - pad.left) / Math.max(w, 1)) * (n - 1)));
  });
  svg.addEventListener('mouseleave', hide);
  svg.addEventListener('focus', () => show(current));
  svg.addEventListener('blur', hide);
  svg.addEventListener('keydown', (e) => {
    if (e.key === 'ArrowLeft') { show(Math.max(0, current - 1)); e.preventDefault(); }
    if (e.key === 'ArrowRight') { show(Math.min(n - 1, current + 1)); e.preventDefault(); }
  });
}
