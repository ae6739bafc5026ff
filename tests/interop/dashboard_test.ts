/**
 * The dashboard in a real browser: playwright-core drives Debian's headless
 * chromium against a real balancer's admin listener while clients stream
 * through it, watches the numbers move, drains a backend and sees new
 * connections avoid it. The screenshot goes to a temporary file, and to
 * `docs/dashboard.png` (the README's) with UPDATE_SCREENSHOT=1. A second
 * page, over a stand-in balancer whose status has a UDP frontend beside a
 * TCP one, shows the UDP one's figures as flows.
 *
 * Under Deno, playwright-core needs --allow-all (it reads /proc as it
 * loads), so `deno task test` runs this file a second time with -A; the run
 * of every test file under the narrow permissions skips it.
 *
 * Skips, saying why, when chromium is missing and we are not root (root runs
 * `scripts/ensure-tools.sh chromium` first, through `npm test`'s pretest), and
 * under deno test without --allow-all, where playwright-core cannot load.
 *
 * @module
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { copyFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import type { Browser, Page } from "playwright-core";
import { DASHBOARD_HTML } from "../../src/admin/dashboard.ts";
import { Metrics } from "../../src/admin/metrics.ts";
import { startAdmin } from "../../src/admin/server.ts";
import { Balancer, type FrontendStatus } from "../../src/balancer/balancer.ts";
import { combineEvents, type FlowInfo, NO_EVENTS } from "../../src/balancer/events.ts";
import type { BackendState } from "../../src/balancer/upstream/backend.ts";
import { parseConfig } from "../../src/config/load.ts";
import type { HttpServer } from "../../src/runtime/types.ts";
import {
  bytes,
  closedPort,
  echoServer,
  exchange,
  findCommand,
  net,
  ROOT,
  sleep,
  tempDir,
  text,
} from "../_helpers/index.ts";

const TOKEN = "a-dashboard-token-0123";
const SCREENSHOT = join(ROOT, "docs", "dashboard.png");

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
  if (findCommand("chromium")) return undefined;
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
  let dashboard: Dashboard;
  let balancer: Balancer;
  let admin: HttpServer;
  const backends = [echoServer({ greeting: "app-1:" }), echoServer({ greeting: "app-2:" })];
  /** What each connection of the background traffic was greeted with, in order. */
  const served: string[] = [];
  let streaming = true;
  let traffic: Promise<void> = Promise.resolve();
  /** What the tests started, closed after the suite. */
  const cleanupsAfter: (() => void)[] = [];

  before(async () => {
    const executablePath = findCommand("chromium");
    assert.ok(
      executablePath,
      "chromium is not installed: run 'bash scripts/ensure-tools.sh chromium'",
    );
    const metrics = new Metrics(net.runtime);
    balancer = await Balancer.start(
      parseConfig(
        '[frontend]\nbind_on = "127.0.0.1:0"\n' +
          '[frontend.health]\ninterval = "200ms"\nfall = 1\n' +
          `[[frontend.backend]]\nname = "app-1"\nforward_to = "${
            backends[0]!.address
          }"\nweight = 2\n` +
          `[[frontend.backend]]\nname = "app-2"\nforward_to = "${backends[1]!.address}"\n` +
          `[[frontend.backend]]\nname = "app-3"\nforward_to = "127.0.0.1:${closedPort()}"\n`,
      ),
      { net, events: combineEvents(NO_EVENTS, metrics) },
    );
    metrics.attach(balancer);
    admin = startAdmin({
      hostname: "127.0.0.1",
      port: 0,
      token: TOKEN,
      net,
      balancer,
      metrics,
      dashboard: DASHBOARD_HTML,
      lastReload: () => null,
      reload: () => Promise.resolve({ success: false, error: "not in this test" }),
    });
    const port = balancer.addresses[0]!.port;
    // Clients streaming through the balancer for the whole test.
    traffic = (async () => {
      while (streaming) {
        served.push(text((await exchange(port, bytes("x"))).data).split(":")[0]!);
        await sleep(20);
      }
    })();
    if (playwright instanceof Error) throw playwright;
    browser = await playwright.chromium.launch({
      executablePath,
      headless: true,
      args: ["--no-sandbox"],
    });
    dashboard = await openDashboard(browser, `http://127.0.0.1:${admin.address.port}/`);
  }, { timeout: 30_000 });

  after(async () => {
    streaming = false;
    await traffic;
    await browser?.close();
    await admin?.close();
    await balancer?.stop({ graceMs: 0 });
    for (const backend of backends) backend.close();
    for (const cleanup of cleanupsAfter) cleanup();
  });

  it("shows the connection count moving once a second while clients stream", {
    timeout: 15_000,
  }, async () => {
    const { page } = dashboard;
    await page.locator("tr[data-backend]").first().waitFor({ timeout: 3_000 });
    const changes: { at: number; value: number }[] = [];
    let last = await readAcceptedTotal(page);
    const started = Date.now();
    while (changes.length < 3) {
      if (Date.now() - started > 6_000) {
        assert.fail(`#accepted-total changed ${changes.length} times in 6 s, stuck at ${last}`);
      }
      await sleep(20);
      const now = await readAcceptedTotal(page);
      if (now !== last) changes.push({ at: Date.now(), value: now });
      last = now;
    }
    assert.ok(changes[2]!.value > changes[0]!.value, "the count grows");
    // One poll a second: changes come about a second apart, not faster.
    for (let i = 1; i < changes.length; i++) {
      const gap = changes[i]!.at - changes[i - 1]!.at;
      assert.ok(gap >= 700 && gap <= 2_500, `a change ${gap} ms after the previous one`);
    }
  });

  it("lists every backend with its state and weight", { timeout: 10_000 }, async () => {
    const { page } = dashboard;
    await waitForState(page, "app-3", "down", 5_000);
    for (const [backend, state, weight] of [["app-1", "up", "2"], ["app-2", "up", "1"]]) {
      const row = rowOf(page, "default", backend!);
      assert.equal(await row.locator(".state").textContent(), state, `${backend} state`);
      assert.equal(await row.locator("td.num").first().textContent(), weight, `${backend} weight`);
    }
    assert.equal(await page.locator("tr[data-backend]").count(), 3);
  });

  it(
    "drains a backend from its button, asking the token again after a 401; new connections avoid it",
    {
      timeout: 15_000,
    },
    async () => {
      const { page } = dashboard;
      dashboard.answers.push("wrong", TOKEN);
      await rowOf(page, "default", "app-1").locator('button[data-action="drain"]').click();
      await waitForState(page, "app-1", "draining");
      assert.equal(dashboard.prompts.length, 2, "the 401 made the page ask again");
      assert.match((await page.locator("#message").textContent())!, /200/);
      const from = served.length;
      await waitFor(() => served.length >= from + 10, 10_000, "ten more connections");
      assert.deepEqual(
        [...new Set(served.slice(from + 1, from + 10))],
        ["app-2"],
        "new connections go to app-2 only",
      );
    },
  );

  it("keeps the token for the session: disabling asks nothing", { timeout: 10_000 }, async () => {
    const { page } = dashboard;
    await rowOf(page, "default", "app-1").locator('button[data-action="disable"]').click();
    await waitForState(page, "app-1", "disabled");
    assert.equal(dashboard.prompts.length, 2, "the page asked for the token again");
  });

  it("adds a backend from the frontend's form: it appears in the table, marked api", {
    timeout: 10_000,
  }, async () => {
    const { page } = dashboard;
    const extra = echoServer({ greeting: "app-4:" });
    cleanupsAfter.push(() => extra.close());
    const form = page.locator('section[data-frontend="default"] form.add-backend');
    await form.locator('input[name="forward_to"]').fill("nope");
    await form.locator("button").click();
    await page.locator("#message").filter({ hasText: "backend.forward_to must be host:port" })
      .waitFor({ timeout: 3_000 });
    assert.match(
      (await page.locator("#message").textContent())!,
      /400 Bad Request: backend\.forward_to must be host:port: current value is "nope"/,
    );
    await form.locator('input[name="name"]').fill("app-4");
    await form.locator('input[name="forward_to"]').fill(extra.address);
    await form.locator('input[name="weight"]').fill("3");
    await form.locator("button").click();
    const row = rowOf(page, "default", "app-4");
    await row.waitFor({ timeout: 3_000 });
    assert.equal(await row.locator("td.source-api").textContent(), "app-4 · api");
    assert.equal(await row.locator("td.num").first().textContent(), "3");
    assert.equal(dashboard.prompts.length, 2, "the token of the session was used");
    const added = balancer.status()[0]!.backends.find((b) => b.name === "app-4");
    assert.deepEqual([added?.source, added?.weight], ["api", 3]);
  });

  it("changes a weight from the backend's field and removes an API backend", {
    timeout: 10_000,
  }, async () => {
    const { page } = dashboard;
    const row = rowOf(page, "default", "app-2");
    await row.locator(".weight-input").fill("5");
    await row.locator('button[data-action="weight"]').click();
    await row.locator("td.num").first().filter({ hasText: /^5$/ }).waitFor({ timeout: 3_000 });
    assert.equal(balancer.status()[0]!.backends.find((b) => b.name === "app-2")?.weight, 5);
    assert.ok(await row.locator('button[data-action="remove"]').isHidden(), "a file backend");
    await rowOf(page, "default", "app-4").locator('button[data-action="remove"]').click();
    await rowOf(page, "default", "app-4").waitFor({ state: "detached", timeout: 3_000 });
    assert.equal(balancer.status()[0]!.backends.some((b) => b.name === "app-4"), false);
  });

  it("draws both charts and saves a screenshot", { timeout: 10_000 }, async () => {
    const { page } = dashboard;
    const points = await page.locator("polyline").evaluateAll((lines) =>
      lines.map((line) => (line.getAttribute("points") ?? "").split(" ").filter(Boolean).length)
    );
    assert.equal(points.length, 2, "one rate and one throughput chart");
    for (const count of points) assert.ok(count >= 3, `a chart has ${count} points`);
    const dir = await tempDir();
    const file = join(dir.path, "dashboard.png");
    await page.screenshot({ path: file, fullPage: true });
    assert.ok(existsSync(file));
    if (process.env.UPDATE_SCREENSHOT === "1") {
      await mkdir(join(ROOT, "docs"), { recursive: true });
      await copyFile(file, SCREENSHOT);
    }
    await dir.cleanup();
  });
});

describe("dashboard with a UDP frontend", { skip }, () => {
  let browser: Browser;
  let page: Page;
  let admin: HttpServer;
  const metrics = new Metrics(net.runtime);
  const ns1 = { config: { name: "ns-1", address: "127.0.0.2:53" } } as unknown as BackendState;
  const up = { state: "up", weight: 1, effectiveWeight: 1, backup: false } as const;
  /** Two flows open on ns-1 beside a TCP frontend, as a balancer's status says them. */
  const status: FrontendStatus[] = [
    {
      name: "dns",
      address: "udp:127.0.0.1:5353",
      transport: "udp",
      algorithm: "round_robin",
      active: 2,
      queued: 0,
      backends: [{ name: "ns-1", address: "127.0.0.2:53", active: 2, ...up }],
    },
    {
      name: "web",
      address: "127.0.0.1:7070",
      transport: "tcp",
      algorithm: "round_robin",
      active: 0,
      queued: 0,
      backends: [{ name: "app", address: "127.0.0.1:8080", active: 0, ...up }],
    },
  ];
  /** Opens (and serves) one flow more, as the datagram core tells it. */
  const openFlow = () => {
    const flow = {
      frontend: { name: "dns", localAddress: "udp:127.0.0.1:5353" },
      peerAddress: "10.0.0.1:4000",
      target: ns1,
      datagramsFromClient: 1,
      bytesFromClient: 64,
      datagramsFromBackend: 1,
      bytesFromBackend: 128,
      startedAt: performance.now(),
      outcome: "served",
      reason: "1 response",
    } satisfies FlowInfo;
    metrics.flowOpened(flow);
    metrics.flowClosed(flow);
  };
  let opening: ReturnType<typeof setInterval> | undefined;

  before(async () => {
    for (let i = 0; i < 3; i++) openFlow();
    admin = startAdmin({
      hostname: "127.0.0.1",
      port: 0,
      token: TOKEN,
      net,
      balancer: {
        status: () => status,
        backends: { subscribe: () => () => {}, snapshot: () => ({ version: 1, frontends: {} }) },
      } as unknown as Balancer,
      metrics,
      dashboard: DASHBOARD_HTML,
      lastReload: () => null,
      reload: () => Promise.resolve({ success: false, error: "not in this test" }),
    });
    // Flows keep opening, so the rate chart has something to show.
    opening = setInterval(openFlow, 50);
    if (playwright instanceof Error) throw playwright;
    browser = await playwright.chromium.launch({
      executablePath: findCommand("chromium")!,
      headless: true,
      args: ["--no-sandbox"],
    });
    page = (await openDashboard(browser, `http://127.0.0.1:${admin.address.port}/`)).page;
  }, { timeout: 30_000 });

  after(async () => {
    clearInterval(opening);
    await browser?.close();
    await admin?.close();
  });

  it("labels a UDP frontend's figures as flows and a TCP one's as connections", {
    timeout: 10_000,
  }, async () => {
    const dns = page.locator('section[data-frontend="dns"]');
    try {
      await page.locator('section[data-frontend="dns"][data-transport="udp"]').waitFor({
        timeout: 3_000,
      });
    } catch {
      const shown = await page.locator("section h2").allTextContents();
      assert.fail(`no section of frontend dns with data-transport="udp" in 3 s; shown: ${shown}`);
    }
    const web = page.locator('section[data-frontend="web"][data-transport="tcp"]');
    await web.waitFor({ timeout: 3_000 });
    assert.equal(await dns.locator("th.active").textContent(), "Flows");
    assert.equal(await dns.locator("th.total").textContent(), "Total flows");
    assert.equal(await dns.locator(".chart .title").first().textContent(), "New flows");
    assert.equal(await web.locator("th.active").textContent(), "Active");
    assert.equal(await web.locator("th.total").textContent(), "Total");
    assert.equal(await web.locator(".chart .title").first().textContent(), "New connections");
    const row = rowOf(page, "dns", "ns-1");
    assert.equal(await row.locator(".active").textContent(), "2", "flows open on ns-1");
    assert.match((await dns.locator(".meta").textContent())!, /· 2 flows open · \d+ opened$/);
    // After two polls the rate is flows per second, and flows did open (20 a second).
    const rate = dns.locator(".chart .value").first();
    await rate.filter({ hasText: /flows\/s$/ }).waitFor({ timeout: 3_000 });
    const perSecond = Number((await rate.textContent())!.split(" ")[0]);
    assert.ok(perSecond >= 5 && perSecond <= 40, `${perSecond} new flows a second, opening 20`);
    assert.ok(Number(await row.locator(".total").textContent()) >= 3, "flows opened to ns-1");
    assert.match(
      (await web.locator(".chart .value").first().textContent())!,
      /conn\/s$/,
    );
  });
});
