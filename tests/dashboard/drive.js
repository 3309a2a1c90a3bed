// drive.js: runnel serve's dashboard in the system's headless Chromium, over the DevTools
// protocol (puppeteer-core, pinned in package-lock.json). Usage: node drive.js URL JOB [SCREENSHOT.png]
// Prints one line per step ("ok STEP" or "failed STEP: why") and exits 1 at the first failure.
// Every wait polls the page for a condition (a generous timeout, never a fixed sleep).
"use strict";
const puppeteer = require("puppeteer-core");
const [url, job, screenshot] = process.argv.slice(2);
const WAIT = { timeout: 60000, polling: 100 };

async function step(name, fn) {
  try {
    await fn();
    console.log("ok " + name);
  } catch (e) {
    console.log("failed " + name + ": " + (e && e.message ? e.message : e));
    throw e;
  }
}

(async () => {
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: "new",
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage"],
  });
  let code = 0;
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1180, height: 650 });
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    const row = `tr[data-job="${job}"]`;
    await step("the page loads and its first poll succeeds", async () => {
      await page.goto(url, { waitUntil: "load" });
      await page.waitForSelector('body[data-ready="yes"]', WAIT);
    });
    await step(`${job} is RUNNING in the table`, () => page.waitForSelector(`${row}[data-state="RUNNING"]`, WAIT));
    await step("its records/s and read columns show numbers", () =>
      page.waitForFunction((r) => {
        const cells = document.querySelectorAll(r + " td");
        return cells.length > 4 && /^[0-9.,]+$/.test(cells[3].textContent) && /^[0-9,]+$/.test(cells[4].textContent);
      }, WAIT, row));
    await step("the donut of its labels is drawn", () =>
      page.waitForFunction(() => {
        const d = document.getElementById("donut");
        return +d.getAttribute("data-records") > 0 && d.querySelectorAll("svg .mark-arc path").length > 0;
      }, WAIT));
    await step("the word cloud is drawn", () =>
      page.waitForFunction(() => document.querySelectorAll("#cloud svg .mark-text text").length > 3, WAIT));
    const before = await page.$eval("#donut", (d) => +d.getAttribute("data-records"));
    await step(`the donut grows while the stream runs (from ${before})`, () =>
      page.waitForFunction((n) => +document.getElementById("donut").getAttribute("data-records") > n, WAIT, before));
    if (screenshot) await step("screenshot " + screenshot, () => page.screenshot({ path: screenshot }));
    await step("clicking stop stops it", async () => {
      await page.click(`${row} button[data-verb="stop"]`);
      await page.waitForSelector(`${row}[data-state="STOPPED"]`, WAIT);
    });
    await step("clicking start starts it again", async () => {
      await page.waitForSelector(`${row} button[data-verb="start"]:not([disabled])`, WAIT);
      await page.click(`${row} button[data-verb="start"]`);
      await page.waitForSelector(`${row}[data-state="RUNNING"]`, WAIT);
    });
    await step("no script error on the page", async () => {
      if (errors.length) throw new Error(errors.join("; "));
    });
  } catch (e) {
    code = 1;
  } finally {
    await browser.close();
  }
  process.exit(code);
})();
