import { expect, test, type Locator, type Page } from "@playwright/test";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { ERROR_SENTENCES } from "../src/errors.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));
const dataset = `${root}examples/support-chats-v4.jsonl`;

/** A screenshot of the page where the run keeps its output (console/test-results). */
async function snap(page: Page, name: string) {
  await page.screenshot({ path: test.info().outputPath(`${name}.png`), fullPage: true });
}

async function signUp(page: Page, who: string) {
  await page.goto("/");
  await expect(page).toHaveURL(/\/signin$/);
  await page.getByRole("link", { name: "Create an account" }).click();
  await page.getByLabel("Name", { exact: true }).fill(who);
  await page.getByLabel("E-mail").fill(`${who}-${Date.now()}@example.com`);
  await page.getByLabel("Password").fill("a-long-password-1");
  await page.getByRole("button", { name: "Create account" }).click();
  await expect(page.getByRole("heading", { name: /^Welcome back, / })).toBeVisible();
}

/** Presses Tab until `target` has the focus, as someone on a keyboard reaches it, and checks
 * the focus can be seen there; fails if Tab never gets there. */
async function tabTo(page: Page, target: Locator, most = 60) {
  for (let i = 0; i <= most; i++) {
    if (i > 0) await page.keyboard.press("Tab");
    if (await target.evaluate((el) => el === document.activeElement).catch(() => false)) {
      const visible = await target.evaluate((el) => {
        const style = getComputedStyle(el);
        return (style.outlineStyle !== "none" && parseFloat(style.outlineWidth) > 0) || style.boxShadow !== "none";
      });
      expect(visible, "the focus can be seen").toBe(true);
      return;
    }
  }
  throw new Error(`Tab never reached ${target}`);
}

test("every error code the API documents has a sentence", () => {
  const doc = JSON.parse(readFileSync(`${root}openapi/openapi.json`, "utf8"));
  const codes: string[] = doc.components.schemas.ErrorBody.properties.code.enum;
  expect(codes.length).toBeGreaterThan(20);
  for (const code of codes) expect(ERROR_SENTENCES[code], code).toBeTruthy();
});

test("a new user uploads a dataset, trains on it live and downloads the model", async ({ page }) => {
  await signUp(page, "ada");
  for (const label of ["Datasets", "Active jobs", "Completed models", "Total cost"]) {
    await expect(page.locator(".stat", { hasText: label })).toBeVisible();
  }
  await snap(page, "01-dashboard");
  // A reload stays signed in.
  await page.reload();
  await expect(page.getByRole("heading", { name: /^Welcome back, / })).toBeVisible();

  // Upload: straight to the presigned URL, then confirm; the page follows validation live.
  await page.getByRole("link", { name: "Upload a dataset" }).click();
  await page.getByLabel("Dataset file").setInputFiles(dataset);
  await expect(page.getByLabel("Name", { exact: true })).toHaveValue("support-chats-v4");
  await page.getByRole("button", { name: "Upload and validate" }).click();
  await expect(page.getByRole("heading", { name: "support-chats-v4" })).toBeVisible();
  await expect(page.locator(".badge", { hasText: "ready" })).toBeVisible();
  await expect(page.locator(".stat", { hasText: "Conversations" })).toContainText(/\d/);
  await expect(page.getByRole("figure", { name: "Token length distribution" }).locator("canvas")).toBeVisible();
  await expect(page.getByRole("heading", { name: "Sample conversations" })).toBeVisible();
  await snap(page, "02-dataset");

  // Configure: presets and bounds from the API's catalogue, an estimate that follows the form.
  await page.getByRole("button", { name: "Start training" }).click();
  await expect(page.getByRole("heading", { name: "Configure a training job" })).toBeVisible();
  await expect(page.getByRole("radio", { name: /balanced/ })).toHaveAttribute("aria-checked", "true");
  const total = page.locator(".estimate .big");
  await expect(total).toHaveText(/\$\d/);
  // A small model, so that the simulated run takes seconds.
  await page.getByLabel("Base model").selectOption("smollm2-135m");
  await expect(total).toHaveText(/\$\d/);
  const before = await total.textContent();
  const count = page.getByLabel("GPU count");
  const gpus = await count.inputValue();
  await count.selectOption(gpus === "8" ? "4" : "8");
  await expect(total).not.toHaveText(before ?? "");
  await count.selectOption(gpus);
  await page.getByText("Advanced hyperparameters").click();
  await page.getByLabel("numEpochs", { exact: true }).fill("1");
  // A value the domain refuses is named next to its field, as a sentence.
  await page.getByLabel("learningRate", { exact: true }).fill("5");
  await expect(page.locator(".field.invalid", { hasText: "learningRate" })).toContainText("Please correct this value.");
  await page.getByLabel("learningRate", { exact: true }).fill("0.0002");
  await expect(page.locator(".field.invalid")).toHaveCount(0);
  await expect(total).toHaveText(/\$\d/);
  await snap(page, "03-configurator");
  await page.getByRole("button", { name: "Launch training" }).click();
  await expect(page.getByRole("dialog")).toContainText("Launch this job?");
  await page.getByRole("dialog").getByRole("button", { name: "Launch" }).click();

  // The monitor: stage, progress, the loss curve from the SSE stream, and the way to the model.
  await expect(page.getByRole("list", { name: "Stage" })).toBeVisible();
  await expect(page.getByRole("link", { name: "Open the model" })).toBeVisible({ timeout: 150_000 });
  // Watched to its end: a notice, and the page would open the model by itself.
  await expect(page.getByRole("status", { name: "Training complete" })).toContainText("Opening it in");
  await page.getByRole("button", { name: "Stay on this page" }).click();
  await expect(page.locator(".badge", { hasText: "completed" }).first()).toBeVisible();
  await expect(page.getByRole("progressbar", { name: "Training progress" })).toHaveAttribute("aria-valuenow", "100");
  await expect(page.getByRole("figure", { name: /loss by step/ }).locator("canvas")).toBeVisible();
  await expect(page.locator(".logs li").first()).toBeVisible();
  await snap(page, "04-monitor");

  // The model page: quality, downloads (a real presigned file), checkpoints.
  await page.getByRole("link", { name: "Open the model" }).click();
  await expect(page.locator(".stat", { hasText: "Final validation loss" })).toContainText(/\d\.\d/);
  const download = page.waitForEvent("download");
  await page.getByRole("button", { name: "Adapter weights" }).click();
  expect((await download).suggestedFilename()).toContain("adapter_model.safetensors");
  await expect(page.getByRole("heading", { name: "Checkpoints" })).toBeVisible();
  await snap(page, "05-model");

  // Costs: the spend chart; Settings: a budget, then the budget bar.
  await page.getByRole("link", { name: "Costs" }).click();
  await expect(page.getByRole("figure", { name: "Spend by day" }).locator("canvas")).toBeVisible();
  await snap(page, "06-costs");
  await page.getByRole("link", { name: "Settings" }).click();
  await page.getByLabel("Monthly budget (USD)").fill("-3");
  await page.getByRole("button", { name: "Save budget" }).click();
  await expect(page.locator(".field.invalid")).toContainText("Please correct this value.");
  await page.getByLabel("Monthly budget (USD)").fill("500");
  await page.getByRole("button", { name: "Save budget" }).click();
  await expect(page.getByRole("status")).toHaveText("Saved.");
  await page.getByRole("link", { name: "Costs" }).click();
  await expect(page.getByRole("meter", { name: "Budget used" })).toBeVisible();

  // The bell: the job's notifications, marked read.
  const bell = page.getByRole("button", { name: /Notifications, \d+ unread/ });
  await expect(bell).not.toHaveAccessibleName("Notifications, 0 unread");
  await bell.click();
  await page.getByRole("button", { name: "Mark all read" }).click();
  await expect(page.getByRole("button", { name: "Notifications, 0 unread" })).toBeVisible();
});

test("wrong credentials are a sentence, and a dead session brings the sign-in page back", async ({ page }) => {
  await page.goto("/signin");
  await page.getByLabel("E-mail").fill("nobody@example.com");
  await page.getByLabel("Password").fill("wrong-password");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("alert")).toContainText("That e-mail and password do not match an account.");

  await signUp(page, "grace");
  await page.evaluate(() => localStorage.setItem("brightrun.token", "not-a-valid-token"));
  await page.goto("/datasets");
  await expect(page).toHaveURL(/\/signin$/);
});

test("on a 375 px screen the sidebar folds into a menu", async ({ page }) => {
  await page.setViewportSize({ width: 375, height: 740 });
  await signUp(page, "linus");
  await expect(page.getByRole("navigation", { name: "Main" })).toBeHidden();
  await page.getByRole("button", { name: "Menu" }).click();
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Models" }).click();
  await expect(page.getByRole("heading", { name: "Models" })).toBeVisible();
  // Keyboard: on a fresh page the skip link is the first stop.
  await page.goto("/models");
  await expect(page.getByRole("heading", { name: "Models" })).toBeVisible();
  await page.keyboard.press("Tab");
  await expect(page.getByRole("link", { name: "Skip to content" })).toBeFocused();
});

test("a bad upload shows its errors by line, and another user's dataset is not found", async ({ page }) => {
  await signUp(page, "alan");
  await page.getByRole("link", { name: "Upload a dataset" }).click();
  await page.getByLabel("Dataset file").setInputFiles(`${root}examples/invalid-v4.jsonl`);
  await page.getByRole("button", { name: "Upload and validate" }).click();
  await expect(page.locator(".badge", { hasText: "error" })).toBeVisible();
  await expect(page.getByRole("heading", { name: /Validation: [1-9]\d* errors/ })).toBeVisible();
  // The unterminated line 2 is named by its number.
  const rows = page.locator("tr.error");
  await expect(rows.first()).toBeVisible();
  await expect(rows.locator("td").first()).toHaveText("2");
  await snap(page, "07-invalid-dataset");
  const mine = page.url();

  await page.getByRole("button", { name: "alan", exact: true }).click();
  await page.getByRole("menuitem", { name: "Sign out" }).click();
  await signUp(page, "mallory");
  await page.goto(mine);
  await expect(page.getByRole("alert")).toContainText("That dataset does not exist (or was deleted).");
});

test("an API key is made in Settings, shown once, works as a token, and stops when revoked", async ({ page, request }) => {
  await signUp(page, "ken");
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Settings" }).click();
  await expect(page.getByRole("heading", { name: "API keys" })).toBeVisible();
  await expect(page.getByText("No API keys yet.")).toBeVisible();
  await page.getByLabel("Key name").fill("notebook");
  await page.getByRole("button", { name: "Create key" }).click();
  const secret = (await page.getByLabel("New API key secret").textContent()) ?? "";
  expect(secret).toMatch(/^brk_/);
  const row = page.getByRole("row", { name: /notebook/ });
  await expect(row).toContainText(secret.slice(0, 8));
  await expect(row).not.toContainText(secret.slice(20));
  await snap(page, "08-api-keys");

  const me = await request.get("/v1/models", { headers: { Authorization: `Bearer ${secret}` } });
  expect(me.status()).toBe(200);

  page.once("dialog", (dialog) => dialog.accept());
  await page.getByRole("button", { name: "Revoke notebook" }).click();
  await expect(page.getByText("No API keys yet.")).toBeVisible();
  const refused = await request.get("/v1/models", { headers: { Authorization: `Bearer ${secret}` } });
  expect(refused.status()).toBe(401);
  // A second page of the same session no longer shows the secret anywhere.
  await page.reload();
  await expect(page.getByText(secret)).toHaveCount(0);
});

test("the journey works from the keyboard alone: sign up, upload, configure, launch, cancel", async ({ page }) => {
  await page.goto("/signin");
  await tabTo(page, page.getByRole("link", { name: "Create an account" }));
  await page.keyboard.press("Enter");
  await tabTo(page, page.getByLabel("Name", { exact: true }));
  await page.keyboard.type("keys");
  await tabTo(page, page.getByLabel("E-mail"));
  await page.keyboard.type(`keys-${Date.now()}@example.com`);
  await tabTo(page, page.getByLabel("Password"));
  await page.keyboard.type("a-long-password-1");
  await page.keyboard.press("Enter");
  await expect(page.getByRole("heading", { name: /^Welcome back, / })).toBeVisible();

  // Upload: the file picker opens from the keyboard.
  await tabTo(page, page.getByRole("link", { name: "Upload a dataset" }));
  await page.keyboard.press("Enter");
  await tabTo(page, page.getByLabel("Dataset file"));
  const chooser = page.waitForEvent("filechooser");
  await page.keyboard.press("Space");
  await (await chooser).setFiles(dataset);
  await tabTo(page, page.getByRole("button", { name: "Upload and validate" }));
  await page.keyboard.press("Enter");
  await expect(page.locator(".badge", { hasText: "ready" })).toBeVisible();

  // Configure: a preset, the GPU count, the launch and its confirmation.
  await tabTo(page, page.getByRole("button", { name: "Start training" }));
  await page.keyboard.press("Enter");
  await expect(page.getByRole("heading", { name: "Configure a training job" })).toBeVisible();
  const total = page.locator(".estimate .big");
  await expect(total).toHaveText(/\$\d/);
  await tabTo(page, page.getByRole("radio", { name: /conservative/ }));
  await page.keyboard.press("Enter");
  await expect(page.getByRole("radio", { name: /conservative/ })).toHaveAttribute("aria-checked", "true");
  // Type-ahead picks the small model, as in a native select.
  await tabTo(page, page.getByLabel("Base model"));
  await page.keyboard.type("smollm2-135m");
  await expect(page.getByLabel("Base model")).toHaveValue("smollm2-135m");
  // The estimate is asked again a moment after each change.
  await page.waitForTimeout(500);
  await page.waitForLoadState("networkidle");
  const before = await total.textContent();
  const count = page.getByLabel("GPU count");
  await tabTo(page, count);
  await page.keyboard.press((await count.inputValue()) === "8" ? "Home" : "End");
  await expect(total).not.toHaveText(before ?? "");
  await tabTo(page, page.getByRole("button", { name: "Launch training" }));
  await page.keyboard.press("Enter");
  const dialog = page.getByRole("dialog");
  await expect(dialog).toContainText("Launch this job?");
  // The dialog holds the focus; Escape closes it, and it opens again.
  await page.keyboard.press("Escape");
  await expect(dialog).toBeHidden();
  await expect(page.getByRole("button", { name: "Launch training" })).toBeFocused();
  await page.keyboard.press("Enter");
  await tabTo(page, dialog.getByRole("button", { name: "Launch" }), 5);
  await page.keyboard.press("Enter");

  // The monitor: cancel with its confirmation, from the keyboard.
  await expect(page.getByRole("list", { name: "Stage" })).toBeVisible();
  page.once("dialog", (d) => d.accept());
  await tabTo(page, page.getByRole("button", { name: "Cancel job" }));
  await page.keyboard.press("Enter");
  await expect(page.locator(".badge", { hasText: "cancelled" }).first()).toBeVisible();
  await snap(page, "09-keyboard-cancelled");
});
