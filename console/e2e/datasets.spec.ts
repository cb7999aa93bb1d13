import { expect, test } from "@playwright/test";
import { conversations, datasetByApi, openAs, signUpByApi } from "./api.ts";

const BROKEN = conversations(2) + '{"conversation_id": "cut", "turns": [\n' + conversations(2);

test("a file is previewed in its format before upload", async ({ page, request }) => {
  const user = await signUpByApi(request, "preview");
  await openAs(page, user, "/datasets?upload=1");
  const file = page.getByLabel("Dataset file");
  await file.setInputFiles({ name: "broken.jsonl", mimeType: "application/jsonl", buffer: Buffer.from(BROKEN) });
  const preview = page.getByRole("status", { name: "Format preview" });
  await expect(preview).toContainText("Not valid brightrun-lora-v4");
  await expect(preview).toContainText("Line 3");
  await file.setInputFiles({ name: "good.jsonl", mimeType: "application/jsonl", buffer: Buffer.from(conversations(20)) });
  await expect(preview).toContainText("Looks like brightrun-lora-v4: 20 conversations");
  // Read again in another format: these lines are not OpenAI chat.
  await page.getByRole("form", { name: "Upload a dataset" }).getByLabel("Format", { exact: true }).selectOption("openai-chat");
  await expect(preview).toContainText("Not valid openai-chat");
});

test("each dataset card starts training or says why not, deletes, and the list filters on training readiness", async ({ page, request }) => {
  const user = await signUpByApi(request, "cards");
  const ready = await datasetByApi(request, user, "cards-ready-chats", conversations(20));
  await datasetByApi(request, user, "cards-broken-chats", BROKEN);
  await openAs(page, user, "/datasets");
  const card = (name: string) => page.getByRole("listitem").filter({ has: page.getByRole("link", { name }) });

  const broken = card("cards-broken-chats");
  await expect(broken.getByRole("button", { name: "Start training" })).toBeDisabled();
  await expect(broken.getByRole("button", { name: "Start training" })).toHaveAccessibleDescription("The file has errors: fix them and upload it again.");

  await page.getByLabel("Training ready").selectOption("true");
  await expect(card("cards-broken-chats")).toHaveCount(0);
  await expect(card("cards-ready-chats")).toBeVisible();
  await page.getByLabel("Training ready").selectOption("false");
  await expect(card("cards-ready-chats")).toHaveCount(0);
  await expect(card("cards-broken-chats")).toBeVisible();

  page.once("dialog", (dialog) => dialog.accept());
  await card("cards-broken-chats").getByRole("button", { name: "Delete cards-broken-chats" }).click();
  await expect(page.getByText("No datasets match.")).toBeVisible();

  await page.getByLabel("Training ready").selectOption("all");
  await card("cards-ready-chats").getByRole("button", { name: "Start training" }).click();
  await expect(page).toHaveURL(new RegExp(`/jobs/new\\?datasetId=${ready}$`));
  await expect(page.getByLabel("Dataset", { exact: true })).toHaveValue(ready);
});
