import { expect, test } from "@playwright/test";
import { conversations, datasetByApi, jobByApi, openAs, signUpByApi } from "./api.ts";

test("the seeds' URLs lead to the console's pages", async ({ page, request }) => {
  await page.goto("/login");
  await expect(page).toHaveURL(/\/signin$/);
  await expect(page.getByRole("heading", { name: "Sign in to BrightRun" })).toBeVisible();

  const user = await signUpByApi(request, "seed-urls");
  const datasetId = await datasetByApi(request, user, "seed-url-chats", conversations(20));
  await openAs(page, user, `/training/configure?dataset_id=${datasetId}`);
  await expect(page).toHaveURL(new RegExp(`/jobs/new\\?datasetId=${datasetId}$`));
  await expect(page.getByRole("heading", { name: "Configure a training job" })).toBeVisible();
  await expect(page.getByLabel("Dataset", { exact: true })).toHaveValue(datasetId);

  const job = await jobByApi(request, user, {
    datasetId,
    presetId: "balanced",
    baseModel: "smollm2-135m",
    gpuConfig: { instanceType: "a100-40gb", numGPUs: 1 },
  });
  await page.goto("/training/jobs");
  await expect(page).toHaveURL(/\/jobs$/);
  await expect(page.getByRole("heading", { name: "Training jobs" })).toBeVisible();
  await page.goto(`/training/jobs/${job}`);
  await expect(page).toHaveURL(new RegExp(`/jobs/${job}$`));
  await expect(page.getByRole("heading", { level: 1 })).toHaveText(/seed-url-chats/);
});
