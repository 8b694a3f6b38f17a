// Debian's Chromium, headless, with the flags that keep it quiet and offline, and a browser's
// User-Agent (headless Chromium's own says `HeadlessChrome`, which the collector counts as a bot). `mapHost` makes a
// made-up domain resolve to loopback, so tracked pages are not on localhost (where the tracker
// deliberately stays silent).
import { chromium } from 'playwright-core';

export const USER_AGENT =
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36';

export function launch(mapHost) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      // Without this `navigator.webdriver` is true and the tracker reports an automated browser.
      '--disable-blink-features=AutomationControlled',
      ...(mapHost ? [`--host-resolver-rules=MAP ${mapHost} 127.0.0.1`] : []),
    ],
  });
}

/** For `page.waitForFunction`: every region of the dashboard has loaded or failed. */
export function dashboardSettled() {
  const regions = [...document.querySelectorAll('#stats, #chart, .panel-body')];
  return regions.length >= 7 && regions.every((r) => r.dataset.state === 'done' || r.dataset.state === 'failed');
}
