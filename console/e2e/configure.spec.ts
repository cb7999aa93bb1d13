import { expect, test } from "@playwright/test";
import { conversations, datasetByApi, getByApi, jobByApi, openAs, signUpByApi } from "./api.ts";

test("no preset warns about its own values; an unusual value is flagged, and goes once it is typical", async ({ page, request }) => {
  const user = await signUpByApi(request, "presets");
  const datasetId = await datasetByApi(request, user, "preset-chats", conversations(20));
  await openAs(page, user, `/jobs/new?datasetId=${datasetId}`);
  await expect(page.getByRole("heading", { name: "Configure a training job" })).toBeVisible();
  const total = page.locator(".estimate .big");
  await expect(total).toHaveText(/\$\d/);
  const warnings = page.getByRole("list", { name: "Warnings" });
  for (const preset of ["conservative", "balanced", "aggressive", "custom"]) {
    await page.getByRole("radio", { name: new RegExp(`^${preset}`) }).click();
    await expect(page.getByRole("radio", { name: new RegExp(`^${preset}`) })).toHaveAttribute("aria-checked", "true");
    await expect(total).toHaveText(/\$\d/);
    await expect(warnings, `${preset} shows no warning`).toHaveCount(0);
  }
  await page.getByRole("radio", { name: /^balanced/ }).click();
  await page.getByText("Advanced hyperparameters").click();
  // Allowed (the API takes it) but far from what fine-tuning usually takes.
  await page.getByLabel("batchSize", { exact: true }).fill("512");
  await expect(warnings.getByRole("listitem")).toHaveCount(1);
  await expect(warnings).toContainText("High for batchSize");
  await expect(total).toHaveText(/\$\d/);
  await page.getByLabel("learningRate", { exact: true }).fill("0.000001");
  await expect(warnings.getByRole("listitem")).toHaveCount(2);
  await expect(warnings).toContainText("Low for learningRate");
  await page.getByLabel("batchSize", { exact: true }).fill("16");
  await page.getByLabel("learningRate", { exact: true }).fill("0.0002");
  await expect(warnings).toHaveCount(0);
});

test("a job is named at launch or after its dataset, shown by that name in the lists, and renamed from its page", async ({ page, request }) => {
  const user = await signUpByApi(request, "names");
  const datasetId = await datasetByApi(request, user, "named-chats", conversations(20));
  const unnamed = await jobByApi(request, user, {
    datasetId,
    presetId: "balanced",
    baseModel: "smollm2-135m",
    gpuConfig: { instanceType: "a100-40gb", numGPUs: 1 },
  });

  // Launched from the configurator with a name of the user's.
  await openAs(page, user, `/jobs/new?datasetId=${datasetId}`);
  await expect(page.locator(".estimate .big")).toHaveText(/\$\d/);
  await expect(page.getByLabel("Job name")).toHaveAttribute("placeholder", "Training on named-chats");
  await page.getByLabel("Job name").fill("Support bot v1");
  await page.getByRole("button", { name: "Launch training" }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Launch" }).click();
  await expect(page.getByRole("heading", { name: "Support bot v1" })).toBeVisible();

  // Both jobs are links with their names on the Training page and the dashboard.
  for (const path of ["/jobs", "/"]) {
    await openAs(page, user, path);
    await expect(page.getByRole("link", { name: "Support bot v1" })).toBeVisible();
    await expect(page.getByRole("link", { name: "Training on named-chats" })).toBeVisible();
  }
  await page.getByRole("link", { name: "Training on named-chats" }).click();
  await expect(page).toHaveURL(new RegExp(`/jobs/${unnamed}$`));

  // Renamed from its page: a bad name is refused by its field, a good one shows everywhere.
  await page.getByRole("button", { name: "Rename" }).click();
  const field = page.getByLabel("Job name");
  await expect(field).toHaveValue("Training on named-chats");
  await field.fill("   ");
  await page.getByRole("button", { name: "Save name" }).click();
  await expect(page.locator(".field.invalid", { hasText: "Job name" })).toBeVisible();
  await field.fill("Support bot v0");
  await page.getByRole("button", { name: "Save name" }).click();
  await expect(page.getByRole("heading", { name: "Support bot v0" })).toBeVisible();
  const detail = await getByApi<{ job: { name: string } }>(request, user, `/api/jobs/${unnamed}`);
  expect(detail.job.name).toBe("Support bot v0");
  await page.getByRole("link", { name: "← Training" }).click();
  await expect(page.getByRole("link", { name: "Support bot v0" })).toBeVisible();
});

test("the configurator shows the dataset's validation, sets hyperparameters by slider, and cancels back", async ({ page, request }) => {
  const user = await signUpByApi(request, "sliders");
  const datasetId = await datasetByApi(request, user, "slider-chats", conversations(20));
  await openAs(page, user, "/datasets");
  await page.goto(`/jobs/new?datasetId=${datasetId}`);
  await expect(page.getByLabel("Dataset validation")).toContainText("ready");
  await expect(page.getByLabel("Dataset validation")).toContainText("validated, ready to train · 20 conversations");
  const total = page.locator(".estimate .big");
  await expect(total).toHaveText(/\$\d/);

  await page.getByText("Advanced hyperparameters").click();
  // A linear slider of whole numbers: its ends are the range fine-tuning usually takes.
  const epochs = page.getByLabel("numEpochs slider");
  await epochs.fill("1000");
  const most = Number(await page.getByLabel("numEpochs", { exact: true }).inputValue());
  await epochs.fill("0");
  const least = Number(await page.getByLabel("numEpochs", { exact: true }).inputValue());
  expect(Number.isInteger(most) && Number.isInteger(least) && most > least).toBeTruthy();
  await expect(page.getByRole("list", { name: "Warnings" })).toHaveCount(0);
  // The learning rate's slider is logarithmic: its middle is the geometric mean of its ends.
  const rate = page.getByLabel("learningRate slider");
  const rateValue = async () => Number(await page.getByLabel("learningRate", { exact: true }).inputValue());
  await rate.fill("0");
  const low = await rateValue();
  await rate.fill("1000");
  const high = await rateValue();
  await rate.fill("500");
  const middle = await rateValue();
  expect(Math.abs(Math.log10(middle) - (Math.log10(low) + Math.log10(high)) / 2)).toBeLessThan(0.05);
  await expect(total).toHaveText(/\$\d/);
  await expect(page.getByRole("list", { name: "Warnings" })).toHaveCount(0);

  await page.getByRole("button", { name: "Cancel" }).click();
  await expect(page).toHaveURL(/\/datasets$/);
});
