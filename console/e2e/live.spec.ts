import { expect, test } from "@playwright/test";
import { conversations, datasetByApi, getByApi, injectFaults, jobByApi, openAs, signUpByApi } from "./api.ts";
import { startProxy } from "./proxy.ts";

test("the monitor's loss curve grows live and resumes without a gap after a dropped connection", async ({ page, request }) => {
  const user = await signUpByApi(request, "live");
  const datasetId = await datasetByApi(request, user, "live-chats", conversations(40));
  // A point every step, and from step 10 on the job's clock at 5 cluster seconds a real one:
  // with the simulator's 1-s steps, 5 points a second for the 144 steps (36 pairs x 4
  // epochs at batch size 1), about 30 s to watch.
  await injectFaults(request, "0", { reportEvery: 1, pace: { fromStep: 10, speed: 5 } });
  let job: string;
  try {
    job = await jobByApi(request, user, {
      datasetId,
      presetId: "balanced",
      baseModel: "smollm2-135m",
      hyperparameters: { numEpochs: 4, batchSize: 1, gradientAccumulationSteps: 1 },
      gpuConfig: { instanceType: "a100-40gb", numGPUs: 1 },
    });
    // Faults are taken at submission: once the job runs, the other tests' jobs are left alone.
    await expect.poll(async () => (await getByApi<{ job: { status: string } }>(request, user, `/api/jobs/${job}`)).job.status, { timeout: 60_000 }).toBe("running");
  } finally {
    await injectFaults(request, "0", {});
  }

  // Every stream the page opens, with the Last-Event-ID it resumes from.
  const streams: (string | undefined)[] = [];
  page.on("request", (r) => {
    if (r.url().endsWith(`/api/jobs/${job}/stream`)) streams.push(r.headers()["last-event-id"]);
  });
  // The page goes through a proxy that can cut its connections.
  const proxy = await startProxy(test.info().project.use.baseURL ?? "");
  test.info().attach("proxy", { body: proxy.url });
  await openAs(page, user, `/jobs/${job}`, proxy.url);
  const chart = page.getByRole("figure", { name: /loss by step/ });
  const points = async () => Number(await chart.getAttribute("data-points"));
  await expect(page.locator(".live.on")).toBeVisible();
  await expect.poll(points).toBeGreaterThan(10);
  const seen = await points();
  await expect.poll(points, { message: "the curve gains points from the stream" }).toBeGreaterThan(seen + 4);

  // The network goes away and comes back: the page says so, then resumes where it was.
  proxy.offline = true;
  proxy.drop();
  await expect(page.locator(".live.off")).toBeVisible();
  const cut = await points();
  await page.waitForTimeout(3_000);
  proxy.offline = false;
  await expect(page.locator(".live.on")).toBeVisible({ timeout: 15_000 });
  await expect.poll(points, { message: "points recorded while cut off arrive" }).toBeGreaterThan(cut + 8);
  // The README's picture of the monitor (docs/console-monitor.png is one of these).
  await expect.poll(points).toBeGreaterThan(90);
  await page.screenshot({ path: test.info().outputPath("monitor-live.png") });
  expect(streams.length).toBeGreaterThanOrEqual(2);
  expect(streams[0], "the first stream starts fresh").toBeUndefined();
  expect(streams.at(-1), "the reconnection resumes from the last event").toMatch(/^\d+/);

  // To the end: the curve holds every recorded point, none lost in the gap, none twice.
  await expect(page.getByRole("link", { name: "Open the model" })).toBeVisible({ timeout: 120_000 });
  await page.getByRole("button", { name: "Stay on this page" }).click();
  const recorded = await getByApi<{ totalPoints: number }>(request, user, `/api/jobs/${job}/metrics`);
  const { totalSteps } = (await getByApi<{ job: { totalSteps: number } }>(request, user, `/api/jobs/${job}`)).job;
  expect(recorded.totalPoints, "a point a step").toBe(totalSteps);
  await expect.poll(points).toBe(recorded.totalPoints);
  await proxy.close();
});
