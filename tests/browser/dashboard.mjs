// Drives the dashboard in Debian's Chromium with Playwright (tests/dashboard.rs runs it):
// node dashboard.mjs URL STREAM CLIENTID SCREENSHOT
// Waits for STREAM's row to show its codecs and size, plays it in the page until the video's
// currentTime advances, saves a screenshot, then kicks session CLIENTID with its row's button
// and waits for the row to go. Prints what it saw as JSON; exits non-zero on any failure.
import { chromium } from "playwright-core";

const [url, stream, clientid, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
  ],
});
let failed = false;
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on("console", (m) => console.error(`page: ${m.text()}`));
  await page.goto(url);
  const row = page.locator(`tr[data-stream="${stream}"]`);
  await row.locator("td.video", { hasText: "x" }).waitFor({ timeout: 20000 });
  const video = (await row.locator("td.video").textContent()).trim();
  const audio = (await row.locator("td.audio").textContent()).trim();
  const players = (await row.locator("td.players").textContent()).trim();
  const urls = await row.locator(".urls code").allTextContents();

  await row.locator("button.watch").click();
  await page.waitForFunction(() => document.getElementById("video").currentTime > 0.5, null, {
    timeout: 30000,
  });
  const from = await page.evaluate(() => document.getElementById("video").currentTime);
  await page.waitForFunction(
    (t) => document.getElementById("video").currentTime > t + 1.0,
    from,
    { timeout: 30000 },
  );
  const to = await page.evaluate(() => document.getElementById("video").currentTime);
  await page.screenshot({ path: screenshot, fullPage: true });

  const session = page.locator(`tr[data-clientid="${clientid}"]`);
  await session.waitFor({ timeout: 10000 });
  await session.locator("button.kick").click();
  await session.waitFor({ state: "detached", timeout: 15000 });
  console.log(JSON.stringify({ video, audio, players, urls, from, to }));
} catch (e) {
  console.error(`dashboard: ${e.stack || e}`);
  failed = true;
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
