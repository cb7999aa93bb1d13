// The console's performance figures, each with a baseline measured in the same
// run: what the browser downloads, the dashboard's first meaningful paint, the monitor drawing
// a job's 10,000 recorded metric points, then keeping up with 20 live events a second.
// Run by scripts/console-bench.sh; prints a table and writes bench.json beside the run's output.
import { expect, test, type Page } from "@playwright/test";
import { writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { conversations, datasetByApi, getByApi, injectFaults, jobByApi, openAs, signUpByApi } from "../e2e/api.ts";

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;

/** Milliseconds from navigation until `ready` holds in the page (checked every frame). */
async function timeTo(page: Page, path: string, ready: string): Promise<number> {
  await page.goto(path);
  await page.waitForFunction(ready, null, { polling: "raf", timeout: 120_000 });
  return page.evaluate(() => performance.now());
}

/** Frame intervals over `ms` (requestAnimationFrame), and long tasks (> 50 ms). */
async function frames(page: Page, ms: number) {
  return page.evaluate(async (ms) => {
    let long = 0;
    const observer = new PerformanceObserver((list) => (long += list.getEntries().length));
    observer.observe({ type: "longtask" });
    const gaps: number[] = [];
    await new Promise<void>((done) => {
      let last = performance.now();
      const end = last + ms;
      const tick = (t: number) => {
        gaps.push(t - last);
        last = t;
        if (t < end) requestAnimationFrame(tick);
        else done();
      };
      requestAnimationFrame(tick);
    });
    observer.disconnect();
    const sorted = [...gaps].sort((a, b) => a - b);
    // A frame is dropped when its interval spans more than one and a half 60 Hz frames.
    return {
      frames: gaps.length,
      dropped: gaps.filter((g) => g > 25).length,
      p99: sorted[Math.floor(sorted.length * 0.99)],
      longTasks: long,
    };
  }, ms);
}

const points = (page: Page) => page.locator("figure[data-points]").first().getAttribute("data-points").then(Number);

test("console performance", async ({ page, request }) => {
  test.setTimeout(900_000);
  const figures: Record<string, unknown> = {};

  // 1. What the browser downloads: every script and stylesheet index.html names, gzipped.
  const html = await (await request.get("/")).text();
  const assets = [...html.matchAll(/(?:src|href)="(\/assets\/[^"]+\.(?:js|css))"/g)].map((m) => m[1]);
  expect(assets.length).toBeGreaterThan(0);
  let gzipped = 0;
  let raw = 0;
  for (const a of assets) {
    const body = await (await request.get(a)).body();
    raw += body.length;
    gzipped += gzipSync(body, { level: 9 }).length;
  }
  figures.bundle = { assets, rawKB: round(raw / 1024, 1), gzipKB: round(gzipped / 1024, 1), budgetKB: 300, ofBudget: round(gzipped / 1024 / 300) };

  // 2. The dashboard's first meaningful paint (its stat cards with their figures), against
  //    the first paint of the service's plain health answer: five loads each, medians.
  const user = await signUpByApi(request, "bench");
  await openAs(page, user, "/");
  const health: number[] = [];
  const dashboard: number[] = [];
  for (let i = 0; i < 5; i++) {
    health.push(await timeTo(page, "/healthz", "document.body && document.body.innerText.length > 0"));
    dashboard.push(
      await timeTo(page, "/", "[...document.querySelectorAll('.stat .stat-value')].filter((e) => /\\d/.test(e.textContent)).length >= 4"),
    );
  }
  figures.dashboard = { medianMs: round(median(dashboard), 1), baselineHealthMs: round(median(health), 1), ratio: round(median(dashboard) / median(health)) };

  // 3. A small job (a few dozen points) as the monitor's baseline, and a job that records
  //    10,000+ points quickly, then trains on at 20 steps (20 metric events) a second.
  const small = await datasetByApi(request, user, "bench-small", conversations(18));
  const baselineJob = await jobByApi(request, user, {
    datasetId: small, presetId: "balanced", baseModel: "smollm2-135m",
    hyperparameters: { numEpochs: 2, batchSize: 1, gradientAccumulationSteps: 1 },
    gpuConfig: { instanceType: "a100-40gb", numGPUs: 1 },
  });
  const big = await datasetByApi(request, user, "bench-big", conversations(150));
  await expect.poll(async () => (await getByApi<{ job: { status: string } }>(request, user, `/api/jobs/${baselineJob}`)).job.status, { timeout: 120_000 }).toBe("completed");
  // 135 training pairs x 100 epochs = 13,500 steps: 10,000 at 1,000x, then 20 a second.
  await injectFaults(request, "0", { reportEvery: 1, pace: { fromStep: 10_000, speed: 20 } });
  let liveJob: string;
  let liveSmallJob: string;
  try {
    liveJob = await jobByApi(request, user, {
      datasetId: big, presetId: "balanced", baseModel: "smollm2-135m",
      hyperparameters: { numEpochs: 100, batchSize: 1, gradientAccumulationSteps: 1 },
      gpuConfig: { instanceType: "a100-40gb", numGPUs: 1 },
    });
    await expect.poll(async () => (await getByApi<{ job: { status: string } }>(request, user, `/api/jobs/${liveJob}`)).job.status, { timeout: 60_000 }).toBe("running");
    // The live baseline: a job with a short history at the same 20 events a second from its
    // first step (27 pairs x 100 epochs = 2,700 steps, over two minutes).
    await injectFaults(request, "0", { reportEvery: 1, pace: { fromStep: 1, speed: 20 } });
    liveSmallJob = await jobByApi(request, user, {
      datasetId: await datasetByApi(request, user, "bench-live-small", conversations(30)), presetId: "balanced", baseModel: "smollm2-135m",
      hyperparameters: { numEpochs: 100, batchSize: 1, gradientAccumulationSteps: 1 },
      gpuConfig: { instanceType: "a100-40gb", numGPUs: 1 },
    });
    await expect.poll(async () => (await getByApi<{ job: { status: string } }>(request, user, `/api/jobs/${liveSmallJob}`)).job.status, { timeout: 60_000 }).toBe("running");
  } finally {
    await injectFaults(request, "0", {});
  }
  const started = Date.now();
  await expect
    .poll(async () => (await getByApi<{ totalPoints: number }>(request, user, `/api/jobs/${liveJob}/metrics?fromStep=1&points=2`)).totalPoints, {
      timeout: 600_000,
      intervals: [2_000],
    })
    .toBeGreaterThanOrEqual(10_000);
  figures.ingest = { points: 10_000, seconds: round((Date.now() - started) / 1000, 1) };

  const drawn = (n: number) => `Number(document.querySelector('figure[data-points]')?.getAttribute('data-points')) >= ${n}`;
  const baselineCount = (await getByApi<{ totalPoints: number }>(request, user, `/api/jobs/${baselineJob}/metrics`)).totalPoints;
  // 4. Live (first, while the jobs train on): ten seconds of frames on the monitor of the
  //    10,000-point job as points arrive, against ten seconds on the short-history job's
  //    monitor at the same rate, and ten on a finished job's (nothing arriving). Then
  //    5. how long the monitor takes to draw 10,000 recorded points.
  await page.goto(`/jobs/${baselineJob}`);
  await page.waitForFunction(drawn(baselineCount), null, { polling: "raf" });
  const idle = await frames(page, 10_000);
  await page.goto(`/jobs/${liveSmallJob}`);
  await expect(page.locator(".live.on")).toBeVisible();
  const smallBefore = await points(page);
  const liveSmall = await frames(page, 10_000);
  const liveSmallRate = ((await points(page)) - smallBefore) / 10;
  await page.goto(`/jobs/${liveJob}`);
  await page.waitForFunction(drawn(10_000), null, { polling: "raf" });
  await expect(page.locator(".live.on")).toBeVisible();
  const before = await points(page);
  const cdp = process.env.BENCH_PROFILE ? await page.context().newCDPSession(page) : null;
  if (cdp) {
    await cdp.send("Profiler.enable");
    await cdp.send("Profiler.start");
  }
  const live = await frames(page, 10_000);
  if (cdp) {
    // Where the live frames' script time goes (BENCH_PROFILE=1): self time per function.
    const { profile } = await cdp.send("Profiler.stop");
    const self = new Map<string, number>();
    const dt = (profile.endTime - profile.startTime) / Math.max(profile.samples?.length ?? 1, 1);
    const byId = new Map(profile.nodes.map((n) => [n.id, n]));
    for (const id of profile.samples ?? []) {
      const f = byId.get(id)?.callFrame;
      const key = `${f?.functionName || "(anon)"} ${f?.url.split("/").pop()}:${f?.lineNumber}`;
      self.set(key, (self.get(key) ?? 0) + dt / 1000);
    }
    figures.profileMs = Object.fromEntries([...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, 15).map(([k, v]) => [k, round(v, 1)]));
  }
  const after = await points(page);
  figures.live = {
    eventsPerSecond: round((after - before) / 10, 1), curvePoints: after, ...live,
    // The same stream on a short history: what 10,000 points add to keeping up.
    shortHistory: { eventsPerSecond: round(liveSmallRate, 1), curvePoints: await getByApi<{ totalPoints: number }>(request, user, `/api/jobs/${liveSmallJob}/metrics?points=2`).then((m) => m.totalPoints), ...liveSmall },
    idle,
    droppedVsShortHistory: round((live.dropped + 1) / (liveSmall.dropped + 1)),
    p99VsShortHistory: round(live.p99 / liveSmall.p99),
  };
  const smallMs: number[] = [];
  const bigMs: number[] = [];
  for (let i = 0; i < 3; i++) {
    smallMs.push(await timeTo(page, `/jobs/${baselineJob}`, drawn(baselineCount)));
    bigMs.push(await timeTo(page, `/jobs/${liveJob}`, drawn(10_000)));
  }
  figures.monitorLoad = {
    points: 10_000, medianMs: round(median(bigMs), 1),
    baselinePoints: baselineCount, baselineMs: round(median(smallMs), 1), ratio: round(median(bigMs) / median(smallMs)),
  };

  await page.screenshot({ path: test.info().outputPath("monitor-10k-live.png") });
  for (const job of [liveJob, liveSmallJob]) await request.post(`/api/jobs/${job}/cancel`, { headers: { Authorization: `Bearer ${user.token}` }, data: {} });

  console.log(JSON.stringify(figures, null, 2));
  writeFileSync(test.info().outputPath("bench.json"), JSON.stringify(figures, null, 2));
});
