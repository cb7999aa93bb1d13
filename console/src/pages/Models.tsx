import { useState, type FormEvent } from "react";
import { Link, useNavigate, useParams } from "react-router";
import { api, type Pagination } from "../api";
import { LossChart } from "../components/charts";
import { Playground } from "../components/Playground";
import { Badge, ErrorText, Field, fieldError, Loading, Pager } from "../components/ui";
import { bytes, duration, num, usd, when } from "../format";
import { useApi, useInterval, useListParams } from "../hooks";
import type { Model, ModelDetail } from "../types";

export function Models() {
  const { query, set } = useListParams(["status", "sortBy"], 12);
  const list = useApi<{ models: Model[] }>("/api/models", query);
  return (
    <section aria-labelledby="models-title">
      <h1 id="models-title">Models</h1>
      <div className="filters">
        <label>
          Status
          <select value={query.status ?? "all"} onChange={(e) => set("status", e.target.value)}>
            {["all", "stored", "deployed", "archived"].map((s) => (
              <option key={s}>{s}</option>
            ))}
          </select>
        </label>
        <label>
          Sort
          <select value={query.sortBy ?? "created-desc"} onChange={(e) => set("sortBy", e.target.value)}>
            <option value="created-desc">Newest first</option>
            <option value="quality-desc">Best quality first</option>
            <option value="size-desc">Largest first</option>
          </select>
        </label>
      </div>
      <ErrorText error={list.error} />
      {list.loading && !list.data ? <Loading /> : null}
      {list.data?.models.length === 0 ? <p className="muted">No models yet: a completed training job makes one.</p> : null}
      <ul className="cards">
        {list.data?.models.map((m) => (
          <li key={m.id} className="card">
            <div className="title-row">
              <h2>
                <Link to={`/models/${m.id}`}>{m.name}</Link>
              </h2>
              <Badge status={m.status} />
            </div>
            <p className="muted">
              v{m.version} · {m.configuration.baseModel} · {bytes(m.sizeBytes)}
            </p>
            <p>
              Validation loss {num(m.qualityMetrics.finalValidationLoss, 4)} · {m.qualityMetrics.convergenceQuality ?? "—"}
            </p>
          </li>
        ))}
      </ul>
      <Pager pagination={list.meta?.pagination as Pagination | undefined} onPage={(p) => set("page", String(p))} />
    </section>
  );
}

const DOWNLOADS: [string, string][] = [
  ["all", "Everything (ZIP)"],
  ["adapter-model", "Adapter weights"],
  ["adapter-config", "Adapter config"],
  ["tokenizer", "Tokenizer"],
];

export function ModelPage() {
  const { id } = useParams();
  const { data, error, reload } = useApi<{ model: ModelDetail }>(`/api/models/${id}`);
  const [actionError, setActionError] = useState<unknown>(null);
  const [environment, setEnvironment] = useState("staging");
  const [message, setMessage] = useState<string | null>(null);
  const m = data?.model;
  // A deployment in progress is read again until its engine serves (or fails).
  useInterval(reload, 2000, m?.deployment?.status === "deploying");
  if (error) return <ErrorText error={error} />;
  if (!m) return <Loading />;
  const download = async (artifact: string, checkpointId?: string) => {
    setActionError(null);
    try {
      const { data: d } = await api<{ downloadUrl: string; fileName: string; transferCost: number }>(`/api/models/${m.id}/download`, {
        query: { artifact, checkpointId },
      });
      setMessage(`${d.fileName}: download started (transfer billed ${usd(d.transferCost)}).`);
      window.location.assign(d.downloadUrl);
    } catch (e) {
      setActionError(e);
    }
  };
  const deploy = async (e: FormEvent) => {
    e.preventDefault();
    setActionError(null);
    try {
      // The deployment's badge and the playground say how it goes from here.
      await api(`/api/models/${m.id}/deploy`, { method: "POST", body: { environment } });
      setMessage(null);
      reload();
    } catch (err) {
      setActionError(err);
    }
  };
  const q = m.qualityMetrics;
  const sorted = [...m.metricsHistory].sort((a, b) => a.step - b.step);
  return (
    <section aria-labelledby="model-title">
      <p>
        <Link to="/models">← Models</Link>
      </p>
      <div className="title-row">
        <h1 id="model-title">
          {m.name} <small>v{m.version}</small>
        </h1>
        <Badge status={m.status} />
      </div>
      <p className="muted">
        Trained by <Link to={`/jobs/${m.jobId}`}>its job</Link> on <Link to={`/datasets/${m.datasetId}`}>{m.configuration.datasetName}</Link> · {when(m.createdAt)}
      </p>
      <div className="stats">
        <div className="card stat">
          <span className="stat-label">Final training loss</span>
          <span className="stat-value">{num(q.finalTrainingLoss, 4)}</span>
        </div>
        <div className="card stat">
          <span className="stat-label">Final validation loss</span>
          <span className="stat-value">{num(q.finalValidationLoss, 4)}</span>
        </div>
        <div className="card stat">
          <span className="stat-label">Perplexity</span>
          <span className="stat-value">{num(q.perplexity, 2)}</span>
        </div>
        <div className="card stat">
          <span className="stat-label">Convergence</span>
          <span className="stat-value">
            {q.convergenceQuality ?? "—"} ({num(q.convergenceScore, 2)})
          </span>
        </div>
        <div className="card stat">
          <span className="stat-label">Training</span>
          <span className="stat-value">
            {num(m.trainingSummary.totalSteps)} steps · {duration(m.trainingSummary.trainingDuration)} · {usd(m.trainingSummary.totalCost)}
          </span>
        </div>
        {q.adapterStep != null && (
          <div className="card stat">
            <span className="stat-label">Adapter from step</span>
            <span className="stat-value">
              {num(q.adapterStep)}
            </span>
          </div>
        )}
      </div>
      <TrainingConfiguration model={m} />
      {q.comparison ? (
        <div className="card">
          <h2>Base model vs fine-tuned</h2>
          <table aria-label="Base model vs fine-tuned">
            <thead>
              <tr>
                <th scope="col">On {q.comparison.validationPairs} validation pairs</th>
                <th scope="col">Base model</th>
                <th scope="col">Fine-tuned</th>
              </tr>
            </thead>
            <tbody>
              {(
                [
                  ["Loss", "loss", 4],
                  ["Perplexity", "perplexity", 2],
                  [`BLEU (${q.comparison.generatedPairs} answers)`, "bleu", 2],
                  [`ROUGE-L (${q.comparison.generatedPairs} answers)`, "rougeL", 2],
                ] as const
              ).map(([label, key, digits]) => (
                <tr key={key}>
                  <th scope="row">{label}</th>
                  <td>{num(q.comparison!.base[key], digits)}</td>
                  <td>{num(q.comparison!.adapter[key], digits)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      {q.validationScores ? (
        <div className="card">
          <h2>Validation scores</h2>
          <dl className="inline">
            {Object.entries(q.validationScores).map(([k, v]) => (
              <div key={k}>
                <dt>{k}</dt>
                <dd>{num(v, 3)}</dd>
              </div>
            ))}
          </dl>
        </div>
      ) : null}
      <div className="card">
        <h2>Metrics</h2>
        <LossChart
          label="Loss by step"
          series={[
            { label: "training loss", color: "#4f46e5", points: sorted.map((p) => ({ x: p.step, y: p.trainingLoss })) },
            { label: "validation loss", color: "#f59e0b", points: sorted.map((p) => ({ x: p.step, y: p.validationLoss })) },
          ]}
        />
      </div>
      <div className="columns">
        <div className="card">
          <h2>Download</h2>
          <div className="actions">
            {DOWNLOADS.map(([artifact, label]) => (
              <button key={artifact} onClick={() => download(artifact)}>
                {label}
              </button>
            ))}
          </div>
          {m.artifacts.checkpoints.length > 0 ? (
            <>
              <h3>Checkpoints</h3>
              <ul className="plain">
                {m.artifacts.checkpoints.map((c) => (
                  <li key={c.id}>
                    <button className="link" onClick={() => download("checkpoint", c.id)}>
                      {c.id}
                    </button>{" "}
                    step {c.step}, epoch {c.epoch}, loss {num(c.loss, 4)} · {bytes(c.size)}
                  </li>
                ))}
              </ul>
            </>
          ) : null}
          {message ? <p aria-live="polite">{message}</p> : null}
        </div>
        <form className="card" onSubmit={deploy} aria-labelledby="deploy-title">
          <h2 id="deploy-title">Deploy</h2>
          {m.deployment ? (
            <p>
              {m.deployment.environment}: <Badge status={m.deployment.status} /> {m.deployment.endpointUrl ?? ""}
              {m.deployment.failureReason ? <span role="status"> {m.deployment.failureReason}</span> : null}
            </p>
          ) : null}
          <Field label="Environment" error={fieldError(actionError, "environment")}>
            {(fid, d) => (
              <select id={fid} aria-describedby={d} value={environment} onChange={(e) => setEnvironment(e.target.value)}>
                <option>staging</option>
                <option>production</option>
              </select>
            )}
          </Field>
          <button className="primary" disabled={m.status === "archived" || m.deployment?.status === "deploying" || m.deployment?.status === "deployed"}>
            Deploy
          </button>
        </form>
      </div>
      <ErrorText error={actionError} />
      <Playground model={m} onChange={reload} />
      <ManageModel model={m} onChange={reload} />
      <div className="card">
        <h2>Version history</h2>
        <ul className="plain">
          {m.parentModelId ? (
            <li>
              Retrained from <Link to={`/models/${m.parentModelId}`}>its parent</Link>
            </li>
          ) : (
            <li>First version</li>
          )}
          {m.childModelIds.map((c) => (
            <li key={c}>
              Newer version: <Link to={`/models/${c}`}>{c}</Link>
            </li>
          ))}
        </ul>
        <Link className="button" to={`/jobs/new?datasetId=${m.datasetId}`}>
          Train again on this dataset
        </Link>
      </div>
    </section>
  );
}

/** How the model was trained: base model, preset, GPUs and every hyperparameter. */
function TrainingConfiguration({ model }: { model: ModelDetail }) {
  const c = model.configuration;
  return (
    <div className="card" role="region" aria-labelledby="config-title">
      <h2 id="config-title">Training configuration</h2>
      <dl className="inline">
        <div>
          <dt>Base model</dt>
          <dd>{c.baseModel}</dd>
        </div>
        <div>
          <dt>Preset</dt>
          <dd>{c.presetUsed}</dd>
        </div>
        <div>
          <dt>GPUs</dt>
          <dd>
            {c.gpuConfig.numGPUs} × {c.gpuConfig.instanceType}
          </dd>
        </div>
        {Object.entries(c.hyperparameters).map(([k, v]) => (
          <div key={k}>
            <dt>{k}</dt>
            <dd>{Array.isArray(v) ? v.join(", ") : String(v)}</dd>
          </div>
        ))}
      </dl>
    </div>
  );
}

/** Rename, archive (or restore) and delete the model. */
function ManageModel({ model, onChange }: { model: ModelDetail; onChange: () => void }) {
  const navigate = useNavigate();
  const [name, setName] = useState(model.name);
  const [error, setError] = useState<unknown>(null);
  const [saved, setSaved] = useState<string | null>(null);
  const patch = async (body: Record<string, string>, done: string) => {
    setError(null);
    setSaved(null);
    try {
      await api(`/api/models/${model.id}`, { method: "PATCH", body });
      setSaved(done);
      onChange();
    } catch (err) {
      setError(err);
    }
  };
  const rename = (e: FormEvent) => {
    e.preventDefault();
    void patch({ name }, "Renamed.");
  };
  const remove = async () => {
    if (!window.confirm(`Delete ${model.name}? Its files and download links go with it.`)) return;
    setError(null);
    try {
      await api(`/api/models/${model.id}`, { method: "DELETE" });
      navigate("/models");
    } catch (err) {
      setError(err);
    }
  };
  const archived = model.status === "archived";
  return (
    <form className="card" onSubmit={rename} aria-labelledby="manage-title">
      <h2 id="manage-title">Manage</h2>
      <Field label="Model name" error={fieldError(error, "name")}>
        {(fid, d) => <input id={fid} aria-describedby={d} value={name} onChange={(e) => setName(e.target.value)} />}
      </Field>
      <div className="actions">
        <button className="primary" disabled={!name.trim() || name === model.name}>
          Rename
        </button>
        <button type="button" disabled={model.status === "deployed"} onClick={() => patch({ status: archived ? "stored" : "archived" }, archived ? "Restored." : "Archived.")}>
          {archived ? "Restore" : "Archive"}
        </button>
        <button type="button" className="danger" disabled={model.status === "deployed"} onClick={remove}>
          Delete
        </button>
      </div>
      {saved ? <p aria-live="polite">{saved}</p> : null}
      {error && !fieldError(error, "name") ? <ErrorText error={error} /> : null}
    </form>
  );
}
