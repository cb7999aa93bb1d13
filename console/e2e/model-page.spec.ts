import { expect, test } from "@playwright/test";
import { conversations, datasetByApi, getByApi, openAs, signUpByApi, trainedByApi } from "./api.ts";

test("the model page shows how it was trained, and renames, archives, restores and deletes it", async ({ page, request }) => {
  test.setTimeout(180_000);
  const user = await signUpByApi(request, "model-page");
  const datasetId = await datasetByApi(request, user, "model-page-chats", conversations(20));
  const { modelId } = await trainedByApi(request, user, datasetId, {
    presetId: "conservative",
    gpuConfig: { instanceType: "a100-80gb", numGPUs: 2 },
  });
  const { model } = await getByApi<{ model: { qualityMetrics: { finalTrainingLoss: number } } }>(request, user, `/api/models/${modelId}`);
  await openAs(page, user, `/models/${modelId}`);

  await expect(page.locator(".stat", { hasText: "Final training loss" })).toContainText(model.qualityMetrics.finalTrainingLoss.toFixed(4));
  const config = page.getByRole("region", { name: "Training configuration" });
  await expect(config).toContainText("Base modelsmollm2-135m");
  await expect(config).toContainText("Presetconservative");
  await expect(config).toContainText("GPUs2 × a100-80gb");
  await expect(config).toContainText("learningRate");

  const manage = page.getByRole("form", { name: "Manage" });
  await manage.getByLabel("Model name").fill("Support bot");
  await manage.getByRole("button", { name: "Rename" }).click();
  await expect(page.getByRole("heading", { level: 1 })).toContainText("Support bot");

  await manage.getByRole("button", { name: "Archive" }).click();
  await expect(page.locator(".title-row .badge")).toHaveText("archived");
  await expect(page.getByRole("button", { name: "Deploy" })).toBeDisabled();
  await manage.getByRole("button", { name: "Restore" }).click();
  await expect(page.locator(".title-row .badge")).toHaveText("stored");

  page.once("dialog", (dialog) => dialog.accept());
  await manage.getByRole("button", { name: "Delete" }).click();
  await expect(page).toHaveURL(/\/models$/);
  await expect(page.getByRole("link", { name: "Support bot" })).toHaveCount(0);
  const gone = await request.get(`/api/models/${modelId}`, { headers: { Authorization: `Bearer ${user.token}` } });
  expect(gone.status()).toBe(404);
});
