import { useCallback, useEffect, useRef, useState, type DragEvent, type FormEvent } from "react";
import { Link, useNavigate } from "react-router";
import { api, putFile, type Pagination } from "../api";
import { Badge, ErrorText, Field, fieldError, Loading, Pager, Progress } from "../components/ui";
import { bytes, num, when } from "../format";
import { useApi, useInterval, useListParams } from "../hooks";
import type { Dataset, Registered } from "../types";

export const FORMATS = ["brightrun-lora-v4", "brightrun-lora-v3", "openai-chat", "sharegpt", "alpaca"];
const STATUSES = ["all", "uploading", "validating", "ready", "error"];
/** The most of the file the preview reads (`POST /api/datasets/validate` takes 100 KB). */
const PREVIEW_BYTES = 100 * 1024;

interface Preview {
  isValid: boolean;
  errors: { line: number; field?: string; code: string; message: string }[];
  errorCount: number;
  warningCount: number;
  statistics: { totalConversations: number; estimatedPairs: number; totalTokens: number };
}

/** The file's first 100 KB checked in the chosen format before anything is uploaded. */
function FormatPreview({ file, format }: { file: File; format: string }) {
  const [preview, setPreview] = useState<Preview | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    const controller = new AbortController();
    setPreview(null);
    setError(null);
    file
      .slice(0, PREVIEW_BYTES)
      .text()
      .then((content) => api<Preview>("/api/datasets/validate", { method: "POST", body: { content, format }, signal: controller.signal }))
      .then((a) => setPreview(a.data))
      .catch((e) => controller.signal.aborted || setError(e));
    return () => controller.abort();
  }, [file, format]);
  const partial = file.size > PREVIEW_BYTES ? ` (its first ${bytes(PREVIEW_BYTES)})` : "";
  if (error) return <ErrorText error={error} />;
  if (!preview) return <p className="muted">Checking the file{partial}…</p>;
  return (
    <div className="preview" role="status" aria-label="Format preview">
      {preview.isValid ? (
        <p>
          Looks like {format}
          {partial}: {num(preview.statistics.totalConversations)} conversations, about {num(preview.statistics.estimatedPairs)} training pairs,{" "}
          {num(preview.statistics.totalTokens)} tokens
          {preview.warningCount > 0 ? `, ${preview.warningCount} warnings` : ""}.
        </p>
      ) : (
        <>
          <p className="error">
            Not valid {format}
            {partial}: {preview.errorCount} errors.
          </p>
          <ul className="plain">
            {preview.errors.slice(0, 5).map((e, i) => (
              <li key={i}>
                Line {e.line}
                {e.field ? ` (${e.field})` : ""}: {e.message}
              </li>
            ))}
          </ul>
        </>
      )}
    </div>
  );
}

/** Why a dataset cannot be trained on yet, or `null` when it can. */
function notTrainable(d: Dataset): string | null {
  if (d.trainingReady) return null;
  switch (d.status) {
    case "uploading":
      return "Waiting for the file's upload.";
    case "validating":
      return "Still being validated.";
    case "error":
      return "The file has errors: fix them and upload it again.";
    default:
      return "Too few training pairs to train on.";
  }
}
const SORTS: [string, string][] = [
  ["date-desc", "Newest first"],
  ["date-asc", "Oldest first"],
  ["name-asc", "Name A–Z"],
  ["name-desc", "Name Z–A"],
  ["size-desc", "Largest first"],
  ["size-asc", "Smallest first"],
];

function Upload({ onDone }: { onDone: (id: string) => void }) {
  const [file, setFile] = useState<File | null>(null);
  const [name, setName] = useState("");
  const [format, setFormat] = useState(FORMATS[0]);
  const [description, setDescription] = useState("");
  const [progress, setProgress] = useState<number | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [over, setOver] = useState(false);
  const input = useRef<HTMLInputElement>(null);
  const choose = (f: File | null | undefined) => {
    if (!f) return;
    setFile(f);
    if (!name) setName(f.name.replace(/\.jsonl$/i, ""));
  };
  const drop = (e: DragEvent) => {
    e.preventDefault();
    setOver(false);
    choose(e.dataTransfer.files[0]);
  };
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    if (!file) return;
    setError(null);
    setProgress(0);
    try {
      const { data } = await api<Registered>("/api/datasets", {
        method: "POST",
        body: { name, fileName: file.name, fileSize: file.size, format, description: description || undefined },
      });
      await putFile(data.uploadUrl, data.uploadMethod, data.uploadHeaders, file, setProgress);
      await api(`/api/datasets/${data.datasetId}/confirm`, { method: "POST", body: {} });
      setProgress(1);
      onDone(data.datasetId);
    } catch (err) {
      setError(err);
      setProgress(null);
    }
  };
  return (
    <form className="card upload" onSubmit={submit} aria-labelledby="upload-title">
      <h2 id="upload-title">Upload a dataset</h2>
      <div
        className={`dropzone${over ? " over" : ""}`}
        onDragOver={(e) => {
          e.preventDefault();
          setOver(true);
        }}
        onDragLeave={() => setOver(false)}
        onDrop={drop}
      >
        <p>{file ? `${file.name} (${bytes(file.size)})` : "Drop a JSONL file here, or"}</p>
        <button type="button" onClick={() => input.current?.click()}>
          Choose a file
        </button>
        <input
          ref={input}
          type="file"
          accept=".jsonl,application/jsonl,application/x-ndjson"
          aria-label="Dataset file"
          className="visually-hidden"
          onChange={(e) => choose(e.target.files?.[0])}
        />
      </div>
      {fieldError(error, "fileName") || fieldError(error, "fileSize") ? (
        <p className="field-error" role="alert">
          {fieldError(error, "fileName") ?? fieldError(error, "fileSize")}
        </p>
      ) : null}
      <Field label="Name" error={fieldError(error, "name")}>
        {(id, d) => <input id={id} aria-describedby={d} required value={name} onChange={(e) => setName(e.target.value)} />}
      </Field>
      <Field label="Format" error={fieldError(error, "format")}>
        {(id, d) => (
          <select id={id} aria-describedby={d} value={format} onChange={(e) => setFormat(e.target.value)}>
            {FORMATS.map((f) => (
              <option key={f}>{f}</option>
            ))}
          </select>
        )}
      </Field>
      <Field label="Description (optional)" error={fieldError(error, "description")}>
        {(id, d) => <textarea id={id} aria-describedby={d} value={description} onChange={(e) => setDescription(e.target.value)} />}
      </Field>
      {file ? <FormatPreview file={file} format={format} /> : null}
      {progress !== null ? <Progress value={progress * 100} label="Upload progress" /> : null}
      {error && !["name", "format", "description", "fileName", "fileSize"].some((f) => fieldError(error, f)) ? <ErrorText error={error} /> : null}
      <button className="primary" disabled={!file || progress !== null}>
        {progress !== null ? `Uploading ${Math.round(progress * 100)} %` : "Upload and validate"}
      </button>
    </form>
  );
}

export function Datasets() {
  const { params, query, set } = useListParams(["search", "format", "status", "trainingReady", "sortBy"], 12);
  const [actionError, setActionError] = useState<unknown>(null);
  const navigate = useNavigate();
  const [showUpload, setShowUpload] = useState(params.get("upload") === "1");
  const list = useApi<{ datasets: Dataset[] }>("/api/datasets", query);
  const pending = list.data?.datasets.some((d) => d.status === "uploading" || d.status === "validating") ?? false;
  const { reload } = list;
  useInterval(useCallback(() => reload(), [reload]), 1500, pending);
  const remove = async (d: Dataset) => {
    if (!window.confirm(`Delete ${d.name}? Its file is removed; jobs trained on it keep their models.`)) return;
    setActionError(null);
    try {
      await api(`/api/datasets/${d.id}`, { method: "DELETE" });
      reload();
    } catch (err) {
      setActionError(err);
    }
  };
  return (
    <section aria-labelledby="datasets-title">
      <div className="title-row">
        <h1 id="datasets-title">Datasets</h1>
        <button className="primary" onClick={() => setShowUpload((s) => !s)} aria-expanded={showUpload}>
          {showUpload ? "Close upload" : "Upload a dataset"}
        </button>
      </div>
      {showUpload ? (
        <Upload
          onDone={(id) => {
            setShowUpload(false);
            navigate(`/datasets/${id}`);
          }}
        />
      ) : null}
      <div className="filters" role="search">
        <label>
          Search
          <input type="search" defaultValue={query.search} onChange={(e) => set("search", e.target.value)} placeholder="Name or description" />
        </label>
        <label>
          Format
          <select value={query.format ?? "all"} onChange={(e) => set("format", e.target.value)}>
            <option value="all">all</option>
            {FORMATS.map((f) => (
              <option key={f}>{f}</option>
            ))}
          </select>
        </label>
        <label>
          Status
          <select value={query.status ?? "all"} onChange={(e) => set("status", e.target.value)}>
            {STATUSES.map((s) => (
              <option key={s}>{s}</option>
            ))}
          </select>
        </label>
        <label>
          Training ready
          <select value={query.trainingReady ?? "all"} onChange={(e) => set("trainingReady", e.target.value)}>
            <option value="all">all</option>
            <option value="true">ready to train</option>
            <option value="false">not ready</option>
          </select>
        </label>
        <label>
          Sort
          <select value={query.sortBy ?? "date-desc"} onChange={(e) => set("sortBy", e.target.value)}>
            {SORTS.map(([v, l]) => (
              <option key={v} value={v}>
                {l}
              </option>
            ))}
          </select>
        </label>
      </div>
      <ErrorText error={list.error ?? actionError} />
      {list.loading && !list.data ? <Loading /> : null}
      {list.data?.datasets.length === 0 ? <p className="muted">No datasets match. Upload one to begin.</p> : null}
      <ul className="cards">
        {list.data?.datasets.map((d) => (
          <li key={d.id} className="card">
            <div className="title-row">
              <h2>
                <Link to={`/datasets/${d.id}`}>{d.name}</Link>
              </h2>
              <Badge status={d.status} />
            </div>
            <p className="muted">
              {d.fileName} · {bytes(d.fileSize)} · {d.format}
            </p>
            {d.status === "ready" ? (
              <p>
                {num(d.totalConversations)} conversations · {num(d.totalTrainingPairs)} training pairs · {num(d.totalTokens)} tokens
              </p>
            ) : null}
            {d.status === "error" ? <p className="error">{d.errorMessage}</p> : null}
            <small className="muted">{when(d.createdAt)}</small>
            <DatasetActions dataset={d} onDelete={() => remove(d)} />
          </li>
        ))}
      </ul>
      <Pager pagination={list.meta?.pagination as Pagination | undefined} onPage={(p) => set("page", String(p))} />
    </section>
  );
}

function DatasetActions({ dataset, onDelete }: { dataset: Dataset; onDelete: () => void }) {
  const navigate = useNavigate();
  const why = notTrainable(dataset);
  const reason = `why-${dataset.id}`;
  return (
    <div className="actions">
      <button className="primary" disabled={why !== null} aria-describedby={why ? reason : undefined} onClick={() => navigate(`/jobs/new?datasetId=${dataset.id}`)}>
        Start training
      </button>
      <button onClick={onDelete} aria-label={`Delete ${dataset.name}`}>
        Delete
      </button>
      {why ? (
        <small id={reason} className="muted">
          {why}
        </small>
      ) : null}
    </div>
  );
}
