import { fetchEventSource } from "@microsoft/fetch-event-source";
import { useRef, useState, type FormEvent } from "react";
import { api, ApiError, token } from "../api";
import { ERROR_SENTENCES } from "../errors";
import { usd } from "../format";
import { useApi } from "../hooks";
import type { ModelDetail } from "../types";
import { ErrorText, Field, fieldError } from "./ui";

/** Try the deployed model: a prompt, its answer streamed as the engine writes it, and what
 * the deployment is (status, URL, replicas) and has cost in chat tokens. */
export function Playground({ model, onChange }: { model: ModelDetail; onChange: () => void }) {
  const deployment = model.deployment;
  const [prompt, setPrompt] = useState("");
  const [answer, setAnswer] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const stop = useRef<AbortController | null>(null);
  const costs = useApi<{ costs: { apiCalls: number }[] }>("/api/costs", { jobId: model.jobId, groupBy: "month" });
  const spent = (costs.data?.costs ?? []).reduce((sum, p) => sum + p.apiCalls, 0);

  const send = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    setAnswer("");
    setBusy(true);
    const controller = new AbortController();
    stop.current = controller;
    try {
      await fetchEventSource(`/api/models/${model.id}/chat`, {
        method: "POST",
        headers: { Authorization: `Bearer ${token() ?? ""}`, "Content-Type": "application/json" },
        body: JSON.stringify({ messages: [{ role: "user", content: prompt }], max_tokens: 128, stream: true }),
        signal: controller.signal,
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
          if (piece) setAnswer((a) => a + piece);
        },
        onclose() {
          controller.abort();
        },
        onerror(err) {
          throw err;
        },
      });
    } catch (err) {
      if (!controller.signal.aborted || err instanceof ApiError) setError(err);
    } finally {
      setBusy(false);
      costs.reload();
    }
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
      <h3>Answer</h3>
      <p aria-live="polite" className="answer" data-testid="answer">
        {answer}
      </p>
      <ErrorText error={error} />
    </form>
  );
}
