import { expect, test } from "@playwright/test";
import { conversations, datasetByApi, getByApi, injectFaults, jobByApi, openAs, postByApi, signUpByApi } from "./api.ts";

test("the dashboard welcomes the user back, lists the recent datasets and the active jobs, and reads them again on focus", async ({ page, request }) => {
  const user = await signUpByApi(request, "dashboard");
  const first = await datasetByApi(request, user, "dash-first-chats", conversations(20));
  // The job's clock slowed to a crawl, so it is still training while the page is read.
  await injectFaults(request, "0", { pace: { fromStep: 0, speed: 0.05 } });
  let job: string;
  try {
    job = await jobByApi(request, user, {
      datasetId: first,
      presetId: "balanced",
      baseModel: "smollm2-135m",
      gpuConfig: { instanceType: "a100-40gb", numGPUs: 1 },
    });
    await expect.poll(async () => (await getByApi<{ job: { status: string } }>(request, user, `/api/jobs/${job}`)).job.status, { timeout: 60_000 }).toMatch(/initializing|running/);
  } finally {
    await injectFaults(request, "0", {});
  }

  await openAs(page, user, "/");
  await expect(page.getByRole("heading", { level: 1 })).toHaveText("Welcome back, dashboard");
  const datasets = page.getByRole("region", { name: "Recent datasets" });
  await expect(datasets.getByRole("link", { name: "dash-first-chats" })).toBeVisible();
  const active = page.getByRole("region", { name: "Active jobs" });
  await expect(active.getByRole("link", { name: /dash-first-chats/ })).toBeVisible();

  // Changed elsewhere: the page shows it when the window has the focus again.
  await datasetByApi(request, user, "dash-second-chats", conversations(20));
  await postByApi(request, user, `/api/jobs/${job}/cancel`);
  await page.evaluate(() => window.dispatchEvent(new Event("focus")));
  await expect(datasets.getByRole("link", { name: "dash-second-chats" })).toBeVisible();
  await expect(active.getByText("No job is training now.")).toBeVisible();
});
