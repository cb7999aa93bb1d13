import { fetchEventSource } from "@microsoft/fetch-event-source";
import { useRef, useState, type FormEvent } from "react";
import { api, ApiError, token } from "../api";
import { ERROR_SENTENCES } from "../errors";
import { usd } from "../format";
import { useApi } from "../hooks";
import type { ModelDetail } from "../types";
import { ErrorText, Field, fieldError } from "./ui";

/** Streams a chat completion from `url`, handing each piece of the answer to `onPiece`. */
async function streamChat(url: string, prompt: string, signal: AbortSignal, onPiece: (piece: string) => void) {
  await fetchEventSource(url, {
    method: "POST",
    headers: { Authorization: `Bearer ${token() ?? ""}`, "Content-Type": "application/json" },
    body: JSON.stringify({ messages: [{ role: "user", content: prompt }], max_tokens: 128, stream: true }),
    signal,
    openWhenHidden: true,
    async onopen(response) {
      if (response.ok) return;
      const body = await response.json().catch(() => null);
      const code: string = body?.error?.code ?? "INTERNAL_ERROR";
      throw new ApiError(response.status, code, ERROR_SENTENCES[code] ?? body?.error?.message ?? "", body?.error?.field);
    },
    onmessage(message) {
      if (!message.data || message.data === "[DONE]") return;
      const chunk = JSON.parse(message.data);
      const piece: string | undefined = chunk.choices?.[0]?.delta?.content;
      if (piece) onPiece(piece);
    },
    onerror(err) {
      throw err;
    },
  });
}

/** Try the deployed model: a prompt, its answer streamed as the engine writes it beside the
 * base model's answer to the same prompt, and what the deployment is (status, URL, replicas)
 * and has cost in chat tokens. */
export function Playground({ model, onChange }: { model: ModelDetail; onChange: () => void }) {
  const deployment = model.deployment;
  const [prompt, setPrompt] = useState("");
  const [answer, setAnswer] = useState("");
  const [baseAnswer, setBaseAnswer] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const stop = useRef<AbortController | null>(null);
  const costs = useApi<{ costs: { apiCalls: number }[] }>("/api/costs", { jobId: model.jobId, groupBy: "month" });
  const spent = (costs.data?.costs ?? []).reduce((sum, p) => sum + p.apiCalls, 0);

  const send = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    setAnswer("");
    setBaseAnswer("");
    setBusy(true);
    stop.current?.abort();
    const controller = new AbortController();
    stop.current = controller;
    // Both engines answer at once; the first refusal is the one shown.
    const answers = await Promise.allSettled([
      streamChat(`/api/models/${model.id}/chat`, prompt, controller.signal, (p) => setAnswer((a) => a + p)),
      streamChat(`/api/models/${model.id}/chat/base`, prompt, controller.signal, (p) => setBaseAnswer((a) => a + p)),
    ]);
    const refused = answers.find((a): a is PromiseRejectedResult => a.status === "rejected");
    if (refused && (!controller.signal.aborted || refused.reason instanceof ApiError)) setError(refused.reason);
    setBusy(false);
    costs.reload();
  };

  const undeploy = async () => {
    setError(null);
    try {
      await api(`/api/models/${model.id}/undeploy`, { method: "POST", body: {} });
      onChange();
    } catch (err) {
      setError(err);
    }
  };

  if (!deployment || deployment.status === "stopped" || deployment.status === "failed") return null;
  return (
    <form className="card" onSubmit={send} aria-labelledby="playground-title">
      <h2 id="playground-title">Playground</h2>
      <dl className="inline">
        <div>
          <dt>Deployment</dt>
          <dd>{deployment.status === "deployed" ? "serving" : "starting…"}</dd>
        </div>
        <div>
          <dt>Endpoint</dt>
          <dd>{deployment.endpointUrl}</dd>
        </div>
        <div>
          <dt>Replicas</dt>
          <dd>
            {deployment.minReplicas}–{deployment.maxReplicas}
          </dd>
        </div>
        <div>
          <dt>Chat cost</dt>
          <dd>{usd(spent)}</dd>
        </div>
      </dl>
      <Field label="Prompt" error={fieldError(error, "messages")}>
        {(fid, d) => <textarea id={fid} aria-describedby={d} rows={3} value={prompt} onChange={(e) => setPrompt(e.target.value)} />}
      </Field>
      <div className="actions">
        <button className="primary" disabled={busy || !prompt.trim() || deployment.status !== "deployed"}>
          {busy ? "Answering…" : "Send"}
        </button>
        <button type="button" onClick={undeploy}>
          Undeploy
        </button>
      </div>
      <div className="answers">
        <section aria-labelledby="answer-title">
          <h3 id="answer-title">Fine-tuned</h3>
          <p aria-live="polite" className="answer" data-testid="answer">
            {answer}
          </p>
        </section>
        <section aria-labelledby="base-answer-title">
          <h3 id="base-answer-title">Base model ({model.configuration.baseModel})</h3>
          <p aria-live="polite" className="answer" data-testid="base-answer">
            {baseAnswer}
          </p>
        </section>
      </div>
      <ErrorText error={error} />
    </form>
  );
}
