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
