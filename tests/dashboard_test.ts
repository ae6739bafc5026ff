/**
 * The dashboard in a real browser: playwright-core drives Debian's headless
 * chromium against the fake admin listener of `_fake_admin.ts`. The browser
 * steps (`openDashboard`, `rowOf`, `readAcceptedTotal`, `waitForState`) only
 * need a URL, so the real admin listener can replace the fake by changing the
 * `before` hook and the checks of `admin.calls` and `admin.statusRequests`.
 *
 * Skips, saying why, when chromium is missing and we are not root (root runs
 * `scripts/ensure-tools.sh chromium` first, through `npm test`'s pretest), and
 * under deno test without --allow-all, where playwright-core cannot load.
 *
 * @module
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { delimiter, join } from "node:path";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import type { Browser, Page } from "playwright-core";
import { ROOT, sleep } from "./_helpers.ts";
import { FAKE_TOKEN, type FakeAdmin, startFakeAdmin } from "./_fake_admin.ts";

const SCREENSHOT = join(ROOT, "docs", "dashboard.png");

/** The chromium on PATH, or `undefined`. */
function findChromium(): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    const path = join(dir, "chromium");
    if (dir && existsSync(path)) return path;
  }
  return undefined;
}

/**
 * playwright-core, or why it did not load: under deno test it probes
 * `/proc/sys/fs/binfmt_misc/WSLInterop` as it loads, which Deno allows only
 * with --allow-all (with it, this file passes under Deno too).
 */
const playwright = await import("playwright-core").catch((error: Error) => error);

function skipReason(): string | undefined {
  if (playwright instanceof Error && "Deno" in globalThis) {
    return `playwright-core cannot load without --allow-all: ${playwright.message}`;
  }
  if (findChromium()) return undefined;
  if (process.getuid?.() === 0) return undefined; // fails below, naming the fix
  return "chromium is not installed: run 'sudo bash scripts/ensure-tools.sh chromium'";
}

/** An open dashboard page, and the prompts it has shown. */
interface Dashboard {
  page: Page;
  /** Messages of the prompts shown so far. */
  prompts: string[];
  /** Answers for the next prompts, first first; an empty queue dismisses. */
  answers: string[];
}

/** Opens the dashboard at `url` and answers its token prompts from a queue. */
async function openDashboard(browser: Browser, url: string): Promise<Dashboard> {
  const page = await browser.newPage({ viewport: { width: 1100, height: 480 } });
  const dashboard: Dashboard = { page, prompts: [], answers: [] };
  page.on("dialog", (dialog) => {
    dashboard.prompts.push(dialog.message());
    const answer = dashboard.answers.shift();
    void (answer === undefined ? dialog.dismiss() : dialog.accept(answer));
  });
  await page.goto(url);
  return dashboard;
}

function rowOf(page: Page, frontend: string, backend: string) {
  return page.locator(`tr[data-frontend="${frontend}"][data-backend="${backend}"]`);
}

async function readAcceptedTotal(page: Page): Promise<number> {
  return Number(await page.locator("#accepted-total").textContent());
}

/** Waits, at most `ms`, until a backend's state cell reads `state`. */
async function waitForState(page: Page, backend: string, state: string, ms = 3_000) {
  const cell = rowOf(page, "default", backend).locator(".state");
  try {
    await cell.filter({ hasText: new RegExp(`^${state}$`) }).waitFor({ timeout: ms });
  } catch {
    assert.fail(
      `backend ${backend} still shows "${await cell.textContent()}" after ${ms} ms, not "${state}"`,
    );
  }
}

async function waitFor(condition: () => boolean, ms: number, what: string) {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(20);
  }
}

const skip = skipReason();
// deno test prints a skipped suite as "ignored" without its reason.
if (skip) console.log(`dashboard_test: skipped: ${skip}`);

describe("dashboard", { skip }, () => {
  let browser: Browser;
  let admin: FakeAdmin;
  let dashboard: Dashboard;

  before(async () => {
    const executablePath = findChromium();
    assert.ok(
      executablePath,
      "chromium is not installed: run 'bash scripts/ensure-tools.sh chromium'",
    );
    admin = await startFakeAdmin();
    if (playwright instanceof Error) throw playwright;
    browser = await playwright.chromium.launch({
      executablePath,
      headless: true,
      args: ["--no-sandbox"],
    });
    dashboard = await openDashboard(browser, admin.url);
  }, { timeout: 30_000 });

  after(async () => {
    await browser?.close();
    await admin?.close();
  });

  it(
    "polls the status about once a second and shows the counters moving",
    { timeout: 15_000 },
    async () => {
      const { page } = dashboard;
      await page.locator("tr[data-backend]").first().waitFor({ timeout: 3_000 });
      const first = await readAcceptedTotal(page);
      const requestsBefore = admin.statusRequests();
      const started = Date.now();
      let now = first;
      while (now === first) {
        if (Date.now() - started > 3_000) assert.fail(`#accepted-total stayed ${first} for 3 s`);
        await sleep(50);
        now = await readAcceptedTotal(page);
      }
      const elapsed = Date.now() - started;
      assert.ok(elapsed >= 500, `#accepted-total changed after ${elapsed} ms: faster than a poll`);
      assert.ok(now > first, `#accepted-total went from ${first} down to ${now}`);
      await sleep(3_000);
      const polls = admin.statusRequests() - requestsBefore;
      const seconds = (Date.now() - started) / 1000;
      assert.ok(
        polls >= Math.floor(seconds) - 1 && polls <= seconds * 1.5 + 1,
        `${polls} status polls in ${seconds.toFixed(1)} s, not one a second`,
      );
    },
  );

  it(
    "lists every backend with its state, weight and connections",
    { timeout: 10_000 },
    async () => {
      const { page } = dashboard;
      const expected = [
        ["app-1", "up", "2", "3"],
        ["app-2", "up", "1", "1"],
        ["app-3", "down", "1", "0"],
      ];
      for (const [backend, state, weight, active] of expected) {
        const row = rowOf(page, "default", backend!);
        assert.equal(await row.locator(".state").textContent(), state, `${backend} state`);
        assert.match((await row.locator(".state").getAttribute("class"))!, new RegExp(state!));
        assert.equal(
          await row.locator("td.num").first().textContent(),
          weight,
          `${backend} weight`,
        );
        assert.equal(await row.locator(".active").textContent(), active, `${backend} active`);
      }
      assert.equal(await page.locator("tr[data-backend]").count(), 3);
    },
  );

  it("drains a backend, asking the token again after a 401", { timeout: 10_000 }, async () => {
    const { page } = dashboard;
    dashboard.answers.push("wrong", FAKE_TOKEN);
    await rowOf(page, "default", "app-1").locator('button[data-action="drain"]').click();
    await waitFor(() => admin.calls.length >= 2, 3_000, "two drain requests (401, then 200)");
    const path = "/api/frontends/default/backends/app-1/drain";
    assert.deepEqual(admin.calls, [
      { path, authorization: "Bearer wrong", status: 401 },
      { path, authorization: `Bearer ${FAKE_TOKEN}`, status: 200 },
    ]);
    assert.equal(dashboard.prompts.length, 2, "the 401 did not make the page ask again");
    await waitForState(page, "app-1", "draining");
    assert.match((await page.locator("#message").textContent())!, /200/);
  });

  it("keeps the token for the session: disabling asks nothing", { timeout: 10_000 }, async () => {
    const { page } = dashboard;
    const callsBefore = admin.calls.length;
    await rowOf(page, "default", "app-2").locator('button[data-action="disable"]').click();
    await waitFor(() => admin.calls.length > callsBefore, 3_000, "the disable request");
    assert.deepEqual(admin.calls.at(-1), {
      path: "/api/frontends/default/backends/app-2/disable",
      authorization: `Bearer ${FAKE_TOKEN}`,
      status: 200,
    });
    assert.equal(dashboard.prompts.length, 2, "the page asked for the token again");
    await waitForState(page, "app-2", "disabled");
  });

  it(
    "draws both charts and saves a screenshot to docs/dashboard.png",
    { timeout: 10_000 },
    async () => {
      const { page } = dashboard;
      const points = await page.locator("polyline").evaluateAll((lines) =>
        lines.map((line) => (line.getAttribute("points") ?? "").split(" ").filter(Boolean).length)
      );
      assert.equal(points.length, 2, "one rate and one throughput chart");
      for (const count of points) assert.ok(count >= 3, `a chart has ${count} points after 5 s`);
      await mkdir(join(ROOT, "docs"), { recursive: true });
      await page.screenshot({ path: SCREENSHOT, fullPage: true });
      assert.ok(existsSync(SCREENSHOT));
    },
  );
});
