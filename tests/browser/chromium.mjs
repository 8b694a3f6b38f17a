// Debian's Chromium, headless, with the flags that keep it quiet and offline. `mapHost` makes a
// made-up domain resolve to loopback, so tracked pages are not on localhost (where the tracker
// deliberately stays silent).
import { chromium } from 'playwright-core';

export function launch(mapHost) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      ...(mapHost ? [`--host-resolver-rules=MAP ${mapHost} 127.0.0.1`] : []),
    ],
  });
}

/** For `page.waitForFunction`: every region of the dashboard has loaded or failed. */
export function dashboardSettled() {
  const regions = [...document.querySelectorAll('#stats, #chart, .panel-body')];
  return regions.length >= 7 && regions.every((r) => r.dataset.state === 'done' || r.dataset.state === 'failed');
}
