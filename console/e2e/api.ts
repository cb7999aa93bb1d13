// What the browser tests and the benchmark set up through the public API (faster than the
// pages, which the journey test already covers), and the faults they inject into their own
// simulator (scripts/console-test.sh starts it: CLUSTER_SIM_URL, CLUSTER_SIM_KEY).
import { expect, type APIRequestContext, type Page } from "@playwright/test";

export interface User {
  token: string;
  email: string;
}

async function ok(response: Awaited<ReturnType<APIRequestContext["get"]>>, what: string) {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const body: any = await response.json().catch(() => null);
  expect(response.ok(), `${what}: ${response.status()} ${JSON.stringify(body)}`).toBeTruthy();
  return body.data;
}

export async function signUpByApi(request: APIRequestContext, who: string): Promise<User> {
  const email = `${who}-${Date.now()}-${Math.floor(Math.random() * 1e6)}@example.com`;
  const data = await ok(
    await request.post("/api/auth/signup", { data: { email, password: "a-long-password-1", name: who } }),
    "sign-up",
  );
  return { token: data.token, email };
}

/** Opens the console signed in as `user` (at `origin`, the service's by default). */
export async function openAs(page: Page, user: User, path: string, origin = "") {
  await page.goto(`${origin}/signin`);
  await page.evaluate((t) => localStorage.setItem("brightrun.token", t), user.token);
  await page.goto(`${origin}${path}`);
}

const auth = (user: User) => ({ Authorization: `Bearer ${user.token}` });

/** Registers, uploads (to the presigned URL) and confirms `content`; waits until validated. */
export async function datasetByApi(request: APIRequestContext, user: User, name: string, content: string): Promise<string> {
  const bytes = Buffer.from(content);
  const created = await ok(
    await request.post("/api/datasets", {
      headers: auth(user),
      data: { name, format: "brightrun-lora-v4", fileSize: bytes.length, fileName: `${name}.jsonl` },
    }),
    "register",
  );
  const put = await request.put(created.uploadUrl, { data: bytes });
  expect(put.ok(), `upload: ${put.status()}`).toBeTruthy();
  await ok(await request.post(`/api/datasets/${created.datasetId}/confirm`, { headers: auth(user), data: {} }), "confirm");
  await expect
    .poll(
      async () => (await ok(await request.get(`/api/datasets/${created.datasetId}`, { headers: auth(user) }), "dataset")).dataset.status,
      { timeout: 60_000 },
    )
    .not.toBe("validating");
  return created.datasetId;
}

/** `n` short support conversations in the brightrun-lora-v4 format, one a line. */
export function conversations(n: number): string {
  const lines = [];
  for (let i = 0; i < n; i++) {
    lines.push(
      JSON.stringify({
        conversation_id: `order-${i}`,
        turns: [
          { role: "system", content: "You are a helpful support agent." },
          { role: "user", content: `My order ${1000 + i} has not arrived. What can I do?` },
          { role: "assistant", content: `Sorry about order ${1000 + i}. I have sent a replacement; it arrives in two days.` },
        ],
      }),
    );
  }
  return lines.join("\n") + "\n";
}

export async function jobByApi(request: APIRequestContext, user: User, body: Record<string, unknown>): Promise<string> {
  const data = await ok(await request.post("/api/jobs", { headers: auth(user), data: body }), "create job");
  return data.jobId;
}

/** A smollm2-135m job on `datasetId` (the `balanced` preset, one A100 40 GB unless `body`
 * says otherwise), waited for until it completed: its id and its model's. */
export async function trainedByApi(
  request: APIRequestContext,
  user: User,
  datasetId: string,
  body: Record<string, unknown> = {},
): Promise<{ jobId: string; modelId: string }> {
  const jobId = await jobByApi(request, user, {
    datasetId,
    presetId: "balanced",
    baseModel: "smollm2-135m",
    gpuConfig: { instanceType: "a100-40gb", numGPUs: 1 },
    ...body,
  });
  await expect
    .poll(async () => (await getByApi<{ job: { status: string } }>(request, user, `/api/jobs/${jobId}`)).job.status, { timeout: 120_000 })
    .toBe("completed");
  const { job } = await getByApi<{ job: { artifactId: string } }>(request, user, `/api/jobs/${jobId}`);
  return { jobId, modelId: job.artifactId };
}

export async function getByApi<T = Record<string, unknown>>(request: APIRequestContext, user: User, path: string): Promise<T> {
  return ok(await request.get(path, { headers: auth(user) }), path);
}

export async function postByApi(request: APIRequestContext, user: User, path: string, data: unknown = {}) {
  return ok(await request.post(path, { headers: auth(user), data }), path);
}

/** Faults (openapi/cluster.yaml) for every job whose idempotency key starts with `prefix`
 * (job ids are UUID v7: "0" is all of them for years). `{}` clears them. */
export async function injectFaults(request: APIRequestContext, prefix: string, faults: Record<string, unknown>) {
  const url = process.env.CLUSTER_SIM_URL;
  expect(url, "CLUSTER_SIM_URL: run this through scripts/console-test.sh").toBeTruthy();
  const response = await request.put(`${url}/v1/sim/faults/${prefix}`, {
    headers: { Authorization: `Bearer ${process.env.CLUSTER_SIM_KEY}` },
    data: faults,
  });
  expect(response.status()).toBe(204);
}
