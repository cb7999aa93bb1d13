import { expect, test } from "@playwright/test";
import { conversations, datasetByApi, getByApi, openAs, signUpByApi, trainedByApi } from "./api.ts";

test("the budget alert shows on every page once 80 % of the month's budget is spent, and goes when the budget is raised", async ({ page, request }) => {
  test.setTimeout(180_000);
  const user = await signUpByApi(request, "budget-banner");
  const datasetId = await datasetByApi(request, user, "budget-chats", conversations(20));
  await trainedByApi(request, user, datasetId);
  const spent = async () => (await getByApi<{ currentMonth: { spent: number } }>(request, user, "/api/costs/summary")).currentMonth.spent;
  await expect.poll(spent).toBeGreaterThan(0);
  const setBudget = async (monthlyBudget: number) => {
    const answer = await request.patch("/api/auth/me", { headers: { Authorization: `Bearer ${user.token}` }, data: { monthlyBudget } });
    expect(answer.ok(), await answer.text()).toBeTruthy();
  };

  // Under 80 %: no banner.
  await setBudget(1000);
  await openAs(page, user, "/");
  await expect(page.getByRole("heading", { level: 1 })).toBeVisible();
  await expect(page.getByRole("alert", { name: "Budget" })).toHaveCount(0);

  // 80 % reached (the budget just above what was spent): on every page.
  await setBudget(Math.ceil(((await spent()) / 0.85) * 100) / 100);
  await page.reload();
  for (const [link, heading] of [
    ["Dashboard", /Welcome|Dashboard/],
    ["Datasets", /Datasets/],
    ["Training", /Training jobs/],
    ["Models", /Models/],
    ["Costs", /Costs/],
    ["Settings", /Settings/],
  ] as const) {
    await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: link }).click();
    await expect(page.getByRole("heading", { level: 1 })).toHaveText(heading);
    const banner = page.getByRole("alert", { name: "Budget" });
    await expect(banner, `the banner on ${link}`).toContainText("has reached 80 %");
    await expect(banner.getByRole("link", { name: "See costs" })).toBeVisible();
  }

  // Raised again: gone with the next page.
  await setBudget(1000);
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Datasets" }).click();
  await expect(page.getByRole("alert", { name: "Budget" })).toHaveCount(0);
});
