import { expect, test } from "@playwright/test";
import { conversations, datasetByApi, openAs, signUpByApi, trainedByApi } from "./api.ts";

test("a trained model is deployed from its page, answers a prompt streamed in the playground beside the base model, and is undeployed", async ({ page, request }) => {
  test.setTimeout(300_000);
  const user = await signUpByApi(request, "playground");
  const datasetId = await datasetByApi(request, user, "playground-chats", conversations(20));
  const { modelId } = await trainedByApi(request, user, datasetId);

  // A real run's comparison (the simulator makes up none), added to this model's answer: the
  // page shows base and fine-tuned side by side.
  const comparison = {
    validationPairs: 3,
    generatedPairs: 3,
    base: { loss: 2.6431, perplexity: 14.06, bleu: 3.12, rougeL: 18.4 },
    adapter: { loss: 1.2045, perplexity: 3.34, bleu: 21.57, rougeL: 44.9 },
  };
  await page.route(`**/api/models/${modelId}`, async (route) => {
    const response = await route.fetch();
    const json = await response.json();
    json.data.model.qualityMetrics.comparison = comparison;
    await route.fulfill({ response, json });
  });
  await openAs(page, user, `/models/${modelId}`);
  const table = page.getByRole("table", { name: "Base model vs fine-tuned" });
  await expect(table.getByRole("row", { name: /Loss/ })).toHaveText(/Loss\s*2\.6431\s*1\.2045/);
  await expect(table.getByRole("row", { name: /BLEU/ })).toHaveText(/BLEU \(3 answers\)\s*3\.12\s*21\.57/);
  await expect(table.getByRole("row", { name: /ROUGE-L/ })).toHaveText(/ROUGE-L \(3 answers\)\s*18\.4\s*44\.9/);
  await page.unroute(`**/api/models/${modelId}`);

  await page.getByRole("button", { name: "Deploy" }).click();
  const playground = page.getByRole("form", { name: "Playground" });
  await expect(playground).toBeVisible();
  await expect(playground.getByText("serving")).toBeVisible({ timeout: 180_000 });
  await expect(playground.getByText(/\/v1$/)).toBeVisible();
  await playground.getByLabel("Prompt").fill("My order has not arrived. What can I do?");
  await playground.getByRole("button", { name: "Send" }).click();
  // The fine-tuned model's answer beside the base model's, both streamed.
  await expect(playground.getByTestId("answer")).not.toBeEmpty({ timeout: 60_000 });
  await expect(playground.getByRole("heading", { name: "Base model (smollm2-135m)" })).toBeVisible();
  await expect(playground.getByTestId("base-answer")).not.toBeEmpty({ timeout: 60_000 });
  await expect(playground.getByRole("button", { name: "Send" })).toBeEnabled({ timeout: 60_000 });
  await page.screenshot({ path: test.info().outputPath("playground.png"), fullPage: true });

  await playground.getByRole("button", { name: "Undeploy" }).click();
  await expect(playground).toBeHidden();
  await expect(page.locator(".badge", { hasText: "stopped" })).toBeVisible();
});
