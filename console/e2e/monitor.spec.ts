import { expect, test } from "@playwright/test";
import { conversations, datasetByApi, getByApi, injectFaults, jobByApi, openAs, signUpByApi } from "./api.ts";

test("the monitor shows the configuration, learning rate and GPU utilisation, and moves to the model once the job it watched completes", async ({ page, request }) => {
  test.setTimeout(120_000);
  const user = await signUpByApi(request, "monitor");
  const datasetId = await datasetByApi(request, user, "monitor-chats", conversations(20));
  // Slowed so the page is open before the job ends (faults are taken at submission).
  await injectFaults(request, "0", { reportEvery: 1, pace: { fromStep: 0, speed: 2 } });
  let job: string;
  try {
    job = await jobByApi(request, user, {
      datasetId,
      presetId: "aggressive",
      baseModel: "smollm2-135m",
      gpuConfig: { instanceType: "a100-80gb", numGPUs: 2 },
    });
  } finally {
    await injectFaults(request, "0", {});
  }
  await openAs(page, user, `/jobs/${job}`);
  await expect(page.getByLabel("Configuration")).toContainText("aggressive preset · smollm2-135m · 2 × a100-80gb");
  await expect(page.getByLabel("Configuration")).toContainText("learningRate");
  await expect(page.locator(".stat", { hasText: "Learning rate" }).locator(".stat-value")).toHaveText(/\d\.\d\de[-+]\d/, { timeout: 60_000 });
  await expect(page.locator(".stat", { hasText: "GPU utilisation" }).locator(".stat-value")).toHaveText(/\d+ %/);

  await expect(page.getByRole("status", { name: "Training complete" })).toBeVisible({ timeout: 90_000 });
  const { job: done } = await getByApi<{ job: { artifactId: string } }>(request, user, `/api/jobs/${job}`);
  await expect(page).toHaveURL(new RegExp(`/models/${done.artifactId}$`), { timeout: 15_000 });

  // A job already complete when its page opens stays there.
  await openAs(page, user, `/jobs/${job}`);
  await expect(page.getByRole("link", { name: "Open the model" })).toBeVisible();
  await expect(page.getByRole("status", { name: "Training complete" })).toHaveCount(0);
});
