import { fetchEventSource } from "@microsoft/fetch-event-source";
import { useCallback, useEffect, useRef, useState, type FormEvent } from "react";
import { Link, useNavigate, useParams } from "react-router";
import { api, token, type Pagination } from "../api";
import { LossChart } from "../components/charts";
import { Badge, ErrorText, Field, fieldError, Loading, Pager, Progress } from "../components/ui";
import { duration, num, usd, when } from "../format";
import { useLiveCurve } from "../curve";
import { useApi, useInterval, useListParams } from "../hooks";
import type { Checkpoint, Job, JobDetail, MetricPoint } from "../types";

const STATUSES = ["all", "queued", "initializing", "running", "completed", "failed", "cancelled"];
const STAGES = ["queued", "initializing", "training", "validating", "saving", "completed"];
const ACTIVE = ["queued", "initializing", "running"];
/** Seconds the monitor waits, once it saw the job complete, before it opens the model. */
const MOVE_AFTER = 5;

/** Once the job this page watched complete has its model: a notice, then a move to the model
 * after `MOVE_AFTER` seconds, unless the user stays. Jobs already complete when the page
 * opened stay where they are. */
function Completed({ modelId }: { modelId: string }) {
  const navigate = useNavigate();
  const [left, setLeft] = useState(MOVE_AFTER);
  const [staying, setStaying] = useState(false);
  useEffect(() => {
    if (staying) return;
    if (left <= 0) {
      navigate(`/models/${modelId}`);
      return;
    }
    const id = window.setTimeout(() => setLeft((n) => n - 1), 1000);
    return () => window.clearTimeout(id);
  }, [left, staying, modelId, navigate]);
  return (
    <div className="banner success" role="status" aria-label="Training complete">
      Training complete: the model is ready.{" "}
      {staying ? null : (
        <>
          Opening it in {left} s.{" "}
          <button className="link" onClick={() => setStaying(true)}>
            Stay on this page
          </button>
        </>
      )}
    </div>
  );
}

export function Jobs() {
  const { query, set } = useListParams(["status", "sortBy"], 20);
  const list = useApi<{ jobs: Job[] }>("/api/jobs", query);
  return (
    <section aria-labelledby="jobs-title">
      <div className="title-row">
        <h1 id="jobs-title">Training jobs</h1>
        <Link className="button primary" to="/jobs/new">
          New training job
        </Link>
      </div>
      <div className="filters">
        <label>
          Status
          <select value={query.status ?? "all"} onChange={(e) => set("status", e.target.value)}>
            {STATUSES.map((s) => (
              <option key={s}>{s}</option>
            ))}
          </select>
        </label>
        <label>
          Sort
          <select value={query.sortBy ?? "created-desc"} onChange={(e) => set("sortBy", e.target.value)}>
            <option value="created-desc">Newest first</option>
            <option value="created-asc">Oldest first</option>
            <option value="cost-desc">Most expensive first</option>
          </select>
        </label>
      </div>
      <ErrorText error={list.error} />
      {list.loading && !list.data ? <Loading /> : null}
      {list.data?.jobs.length === 0 ? <p className="muted">No jobs yet. Start one from a ready dataset.</p> : null}
      <div className="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">Job</th>
              <th scope="col">Status</th>
              <th scope="col">Progress</th>
              <th scope="col">Model</th>
              <th scope="col">Cost</th>
              <th scope="col">Created</th>
            </tr>
          </thead>
          <tbody>
            {list.data?.jobs.map((j) => (
              <tr key={j.id}>
                <td>
                  <Link to={`/jobs/${j.id}`}>{j.name}</Link>
                  <br />
                  <small className="muted">{j.datasetName}</small>
                </td>
                <td>
                  <Badge status={j.status} />
                </td>
                <td>{num(j.progress, 0)} %</td>
                <td>{j.baseModel}</td>
                <td>{usd(j.finalCost ?? j.currentCost)}</td>
                <td>{when(j.createdAt)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <Pager pagination={list.meta?.pagination as Pagination | undefined} onPage={(p) => set("page", String(p))} />
    </section>
  );
}

type Live = Partial<Job> & { estimatedTimeRemaining?: number | null };

export function JobMonitor() {
  const { id } = useParams();
  const detail = useApi<{ job: JobDetail }>(`/api/jobs/${id}`);
  const [live, setLive] = useState<Live>({});
  const [curve, addPoints] = useLiveCurve();
  const [logs, setLogs] = useState<{ timestamp: string; level: string; message: string }[]>([]);
  const [checkpoints, setCheckpoints] = useState<Checkpoint[]>([]);
  const [connected, setConnected] = useState(false);
  const [cancelError, setCancelError] = useState<unknown>(null);
  const [renaming, setRenaming] = useState(false);
  const [newName, setNewName] = useState("");
  const [renameError, setRenameError] = useState<unknown>(null);
  const job = detail.data?.job;
  const { reload } = detail;
  // Whether this page saw the job before it ended (then its completion moves to the model).
  const watched = useRef(false);
  if (job && ACTIVE.includes(job.status)) watched.current = true;

  // The whole recorded curve (the detail carries a thinned one).
  useEffect(() => {
    if (!id) return;
    const controller = new AbortController();
    api<{ metricsHistory: MetricPoint[] }>(`/api/jobs/${id}/metrics`, { signal: controller.signal })
      .then((a) => addPoints(a.data.metricsHistory))
      .catch(() => undefined);
    return () => controller.abort();
  }, [id, addPoints]);

  useEffect(() => {
    if (!job) return;
    setLogs((old) => (old.length > job.logs.length ? old : job.logs));
    setCheckpoints((old) => (old.length > job.checkpoints.length ? old : job.checkpoints));
  }, [job]);

  // The job's own answer ends it: once it says the job ended, no live status keeps it going.
  const active = job ? ACTIVE.includes(job.status) && ACTIVE.includes(live.status ?? job.status) : false;
  // While the stream is down the job is read again, so a job that ended meanwhile shows its
  // end even if the stream never comes back.
  useInterval(reload, 5000, active && !connected);
  // The live stream: resumed with Last-Event-ID after a dropped connection (the library
  // sends the last id it saw when it reconnects).
  useEffect(() => {
    if (!id || !active) return;
    const controller = new AbortController();
    fetchEventSource(`/api/jobs/${id}/stream`, {
      headers: { Authorization: `Bearer ${token() ?? ""}` },
      signal: controller.signal,
      openWhenHidden: true,
      async onopen(response) {
        if (!response.ok) throw new Error(`stream answered ${response.status}`);
        setConnected(true);
      },
      onmessage(message) {
        if (!message.data) return;
        const data = JSON.parse(message.data);
        switch (message.event) {
          case "progress":
            setLive((l) => ({ ...l, ...data, status: "running" }));
            break;
          case "metrics":
            addPoints([{ ...data, timestamp: new Date().toISOString() }]);
            break;
          case "stage":
            setLive((l) => ({ ...l, currentStage: data.stage, status: data.stage === "initializing" ? "initializing" : "running" }));
            setLogs((old) => [...old, { timestamp: new Date().toISOString(), level: "info", message: data.message }]);
            break;
          case "cost":
            setLive((l) => ({ ...l, currentCost: data.currentCost }));
            break;
          case "checkpoint":
            setCheckpoints((old) =>
              old.some((c) => c.id === data.checkpointId)
                ? old
                : [...old, { id: data.checkpointId, step: data.step, epoch: data.epoch, loss: data.loss, createdAt: new Date().toISOString() }],
            );
            break;
          case "log":
            setLogs((old) => [...old, data]);
            break;
          case "complete":
          case "cancelled":
          case "error":
            if (message.event !== "error" || data.canRetry === false) {
              controller.abort();
              setConnected(false);
              // The job's own answer is the truth from here on.
              setLive({});
              reload();
            }
            break;
        }
      },
      onclose() {
        setConnected(false);
        throw new Error("closed"); // reconnect
      },
      onerror() {
        setConnected(false);
        return 2000; // retry after 2 s
      },
    }).catch(() => undefined);
    return () => controller.abort();
  }, [id, active, reload, addPoints]);

  const cancel = useCallback(async () => {
    if (!window.confirm("Cancel this job? Unused compute is refunded.")) return;
    setCancelError(null);
    try {
      await api(`/api/jobs/${id}/cancel`, { method: "POST", body: {} });
      reload();
    } catch (e) {
      setCancelError(e);
    }
  }, [id, reload]);

  const rename = async (e: FormEvent) => {
    e.preventDefault();
    setRenameError(null);
    try {
      await api(`/api/jobs/${id}`, { method: "PATCH", body: { name: newName } });
      setRenaming(false);
      reload();
    } catch (err) {
      setRenameError(err);
    }
  };

  if (detail.error) return <ErrorText error={detail.error} />;
  if (!job) return <Loading />;
  const view: Job = ACTIVE.includes(job.status) ? ({ ...job, ...live } as Job) : job;
  const stage = view.status === "queued" ? "queued" : view.status === "completed" ? "completed" : (view.currentStage ?? "initializing");
  const metrics = (active ? curve.latest : null) ?? view.currentMetrics ?? {};
  return (
    <section aria-labelledby="job-title">
      <p>
        <Link to="/jobs">← Training</Link>
      </p>
      <div className="title-row">
        <h1 id="job-title">{job.name}</h1>
        <Badge status={view.status} />
        {active ? <span className={`live ${connected ? "on" : "off"}`}>{connected ? "live" : "reconnecting…"}</span> : null}
        <button
          onClick={() => {
            setNewName(job.name);
            setRenameError(null);
            setRenaming((x) => !x);
          }}
          aria-expanded={renaming}
        >
          Rename
        </button>
      </div>
      <p className="muted" aria-label="Configuration">
        On {job.datasetName ?? job.datasetId} · {job.presetId} preset · {job.baseModel} · {job.gpuConfig.numGPUs} × {job.gpuConfig.instanceType}
        {job.hyperparameters
          ? ` · ${Object.entries(job.hyperparameters)
              .filter(([k]) => ["learningRate", "numEpochs", "batchSize", "loraRank"].includes(k))
              .map(([k, v]) => `${k} ${v}`)
              .join(", ")}`
          : ""}
      </p>
      {watched.current && view.status === "completed" && view.artifactId ? <Completed modelId={view.artifactId} /> : null}
      {renaming ? (
        <form className="card" onSubmit={rename} aria-label="Rename job">
          <Field label="Job name" error={fieldError(renameError, "name")}>
            {(fid, db) => <input id={fid} aria-describedby={db} maxLength={100} value={newName} onChange={(e) => setNewName(e.target.value)} />}
          </Field>
          <button className="primary">Save name</button>
        </form>
      ) : null}
      {renameError && !fieldError(renameError, "name") ? <ErrorText error={renameError} /> : null}
      <ol className="stages" aria-label="Stage">
        {STAGES.map((s) => (
          <li key={s} className={s === stage ? "current" : STAGES.indexOf(s) < STAGES.indexOf(stage) ? "done" : ""} aria-current={s === stage ? "step" : undefined}>
            {s}
          </li>
        ))}
      </ol>
      <Progress value={view.progress} label="Training progress" />
      <p>
        {num(view.progress, 1)} % · step {num(view.currentStep)} / {num(view.totalSteps)} · epoch {num(view.currentEpoch)} / {num(view.totalEpochs)}
        {live.estimatedTimeRemaining ? ` · about ${duration(live.estimatedTimeRemaining)} left` : view.estimatedCompletionAt && active ? ` · done around ${when(view.estimatedCompletionAt)}` : ""}
      </p>
      {view.status === "failed" ? (
        <p className="error" role="alert">
          {view.errorCode}: {view.errorMessage}
        </p>
      ) : null}
      <div className="stats">
        <div className="card stat">
          <span className="stat-label">Training loss</span>
          <span className="stat-value">{num(metrics.trainingLoss, 4)}</span>
        </div>
        <div className="card stat">
          <span className="stat-label">Validation loss</span>
          <span className="stat-value">{num(metrics.validationLoss ?? (active ? curve.lastValidationLoss : null), 4)}</span>
        </div>
        <div className="card stat">
          <span className="stat-label">Learning rate</span>
          <span className="stat-value">{metrics.learningRate != null ? metrics.learningRate.toExponential(2) : "—"}</span>
        </div>
        <div className="card stat">
          <span className="stat-label">GPU utilisation</span>
          <span className="stat-value">{metrics.gpuUtilization != null ? `${num(metrics.gpuUtilization, 0)} %` : "—"}</span>
        </div>
        <div className="card stat">
          <span className="stat-label">Throughput</span>
          <span className="stat-value">{num(metrics.throughput, 0)} tok/s</span>
        </div>
        <div className="card stat">
          <span className="stat-label">Cost so far / estimate</span>
          <span className="stat-value">
            {usd(view.finalCost ?? view.currentCost)} / {usd(view.estimatedTotalCost)}
          </span>
          <Progress value={(100 * (view.finalCost ?? view.currentCost)) / Math.max(view.estimatedTotalCost, 0.01)} label="Cost against the estimate" />
        </div>
      </div>
      <div className="card">
        <h2>Loss curves</h2>
        <LossChart label="Training and validation loss by step" series={curve.series} count={curve.count} />
      </div>
      <div className="actions">
        {active ? (
          <button className="danger" onClick={cancel}>
            Cancel job
          </button>
        ) : null}
        {view.status === "completed" && view.artifactId ? (
          <Link className="button primary" to={`/models/${view.artifactId}`}>
            Open the model
          </Link>
        ) : null}
        {view.status === "cancelled" && view.refundAmount != null ? <p>Refunded {usd(view.refundAmount)} of unused compute.</p> : null}
      </div>
      <ErrorText error={cancelError} />
      <div className="columns">
        <div className="card">
          <h2>Checkpoints</h2>
          {checkpoints.length === 0 ? <p className="muted">None yet.</p> : null}
          <ul className="plain">
            {checkpoints.map((c) => (
              <li key={c.id}>
                {c.id}: step {c.step}, epoch {c.epoch}, loss {num(c.loss, 4)}
              </li>
            ))}
          </ul>
        </div>
        <div className="card">
          <h2>Logs</h2>
          <ol className="logs" aria-live="polite">
            {logs.slice(-200).map((l, i) => (
              <li key={i} className={`log-${l.level}`}>
                <time>{new Date(l.timestamp).toLocaleTimeString()}</time> {l.message}
              </li>
            ))}
          </ol>
        </div>
      </div>
    </section>
  );
}
