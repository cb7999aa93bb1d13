import { useCallback, useState, type FormEvent } from "react";
import { Link, useNavigate, useParams } from "react-router";
import { api } from "../api";
import { BarChart } from "../components/charts";
import { Badge, ErrorText, Field, fieldError, Loading } from "../components/ui";
import { bytes, num, when } from "../format";
import { useApi, useInterval } from "../hooks";
import type { DatasetDetail as Detail } from "../types";

export function DatasetDetail() {
  const { id } = useParams();
  const navigate = useNavigate();
  const { data, error, reload } = useApi<{ dataset: Detail }>(`/api/datasets/${id}`);
  const d = data?.dataset;
  const pending = d?.status === "uploading" || d?.status === "validating";
  useInterval(useCallback(() => reload(), [reload]), 1500, pending);
  const [editing, setEditing] = useState(false);
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const [actionError, setActionError] = useState<unknown>(null);
  if (error) return <ErrorText error={error} />;
  if (!d) return <Loading />;
  const save = async (e: FormEvent) => {
    e.preventDefault();
    setActionError(null);
    try {
      await api(`/api/datasets/${d.id}`, { method: "PATCH", body: { name, description } });
      setEditing(false);
      reload();
    } catch (err) {
      setActionError(err);
    }
  };
  const remove = async () => {
    if (!window.confirm(`Delete the dataset "${d.name}"? This cannot be undone.`)) return;
    try {
      await api(`/api/datasets/${d.id}`, { method: "DELETE" });
      navigate("/datasets");
    } catch (err) {
      setActionError(err);
    }
  };
  const lengths = d.fullStatistics?.lengthDistribution;
  const topics = d.fullStatistics?.topicDistribution ?? [];
  return (
    <section aria-labelledby="dataset-title">
      <p>
        <Link to="/datasets">← Datasets</Link>
      </p>
      <div className="title-row">
        <h1 id="dataset-title">{d.name}</h1>
        <Badge status={d.status} />
      </div>
      <p className="muted">
        {d.fileName} · {bytes(d.fileSize)} · {d.format} · uploaded {when(d.createdAt)}
      </p>
      {d.description ? <p>{d.description}</p> : null}
      {pending ? <p aria-live="polite">Validating the file… this page follows it live.</p> : null}
      {d.status === "error" ? <p className="error">{d.errorMessage}</p> : null}
      <div className="actions">
        <button
          className="primary"
          disabled={d.status !== "ready" || !d.trainingReady}
          onClick={() => navigate(`/jobs/new?datasetId=${d.id}`)}
        >
          Start training
        </button>
        <button
          onClick={() => {
            setName(d.name);
            setDescription(d.description ?? "");
            setEditing((x) => !x);
          }}
          aria-expanded={editing}
        >
          Edit
        </button>
        <button className="danger" onClick={remove}>
          Delete
        </button>
      </div>
      {editing ? (
        <form className="card" onSubmit={save} aria-label="Edit dataset">
          <Field label="Name" error={fieldError(actionError, "name")}>
            {(fid, db) => <input id={fid} aria-describedby={db} value={name} onChange={(e) => setName(e.target.value)} />}
          </Field>
          <Field label="Description" error={fieldError(actionError, "description")}>
            {(fid, db) => <textarea id={fid} aria-describedby={db} value={description} onChange={(e) => setDescription(e.target.value)} />}
          </Field>
          <button className="primary">Save</button>
        </form>
      ) : null}
      {actionError && !fieldError(actionError, "name") && !fieldError(actionError, "description") ? <ErrorText error={actionError} /> : null}
      {d.status === "ready" ? (
        <>
          <div className="stats">
            <div className="card stat">
              <span className="stat-label">Conversations</span>
              <span className="stat-value">{num(d.totalConversations)}</span>
            </div>
            <div className="card stat">
              <span className="stat-label">Training / validation pairs</span>
              <span className="stat-value">
                {num(d.totalTrainingPairs)} / {num(d.totalValidationPairs)}
              </span>
            </div>
            <div className="card stat">
              <span className="stat-label">Tokens</span>
              <span className="stat-value">{num(d.totalTokens)}</span>
            </div>
            <div className="card stat">
              <span className="stat-label">Avg turns · tokens per turn</span>
              <span className="stat-value">
                {num(d.avgTurnsPerConversation, 1)} · {num(d.avgTokensPerTurn, 1)}
              </span>
            </div>
          </div>
          <div className="columns">
            {lengths ? (
              <div className="card">
                <h2>Conversation length (tokens)</h2>
                <BarChart
                  label="Token length distribution"
                  labels={["min", "median", "mean", "p95", "max"]}
                  stacks={[{ label: "tokens", color: "#4f46e5", values: [lengths.min, lengths.median, lengths.mean, lengths.p95, lengths.max] }]}
                />
              </div>
            ) : null}
            {topics.length > 0 ? (
              <div className="card">
                <h2>Topics</h2>
                <BarChart label="Topic distribution" labels={topics.map((t) => t.topic)} stacks={[{ label: "conversations", color: "#0891b2", values: topics.map((t) => t.count) }]} />
              </div>
            ) : null}
          </div>
        </>
      ) : null}
      {d.validationErrors.length > 0 || d.validationWarnings.length > 0 ? (
        <div className="card">
          <h2>
            Validation: {d.validationErrorCount} errors, {d.validationWarningCount} warnings
          </h2>
          <table>
            <thead>
              <tr>
                <th scope="col">Line</th>
                <th scope="col">Kind</th>
                <th scope="col">Field</th>
                <th scope="col">Message</th>
              </tr>
            </thead>
            <tbody>
              {[...d.validationErrors.map((i) => ({ ...i, kind: "error" })), ...d.validationWarnings.map((i) => ({ ...i, kind: "warning" }))].map((i, n) => (
                <tr key={n} className={i.kind}>
                  <td>{i.line ?? "—"}</td>
                  <td>{i.kind}</td>
                  <td>{i.field ?? "—"}</td>
                  <td>{i.message}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      {d.sampleConversations.length > 0 ? (
        <div className="card">
          <h2>Sample conversations</h2>
          {d.sampleConversations.map((c) => (
            <details key={c.conversationId}>
              <summary>{c.conversationId}</summary>
              <ol className="turns">
                {c.turns.map((t, i) => (
                  <li key={i} className={`turn turn-${t.role}`}>
                    <strong>{t.role}</strong> {t.content}
                  </li>
                ))}
              </ol>
            </details>
          ))}
        </div>
      ) : null}
    </section>
  );
}
