import { useCallback, useRef, useState, type DragEvent, type FormEvent } from "react";
import { Link, useNavigate } from "react-router";
import { api, putFile, type Pagination } from "../api";
import { Badge, ErrorText, Field, fieldError, Loading, Pager, Progress } from "../components/ui";
import { bytes, num, when } from "../format";
import { useApi, useInterval, useListParams } from "../hooks";
import type { Dataset, Registered } from "../types";

export const FORMATS = ["brightrun-lora-v4", "brightrun-lora-v3", "openai-chat", "sharegpt", "alpaca"];
const STATUSES = ["all", "uploading", "validating", "ready", "error"];
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
      {progress !== null ? <Progress value={progress * 100} label="Upload progress" /> : null}
      {error && !["name", "format", "description", "fileName", "fileSize"].some((f) => fieldError(error, f)) ? <ErrorText error={error} /> : null}
      <button className="primary" disabled={!file || progress !== null}>
        {progress !== null ? `Uploading ${Math.round(progress * 100)} %` : "Upload and validate"}
      </button>
    </form>
  );
}

export function Datasets() {
  const { params, query, set } = useListParams(["search", "format", "status", "sortBy"], 12);
  const navigate = useNavigate();
  const [showUpload, setShowUpload] = useState(params.get("upload") === "1");
  const list = useApi<{ datasets: Dataset[] }>("/api/datasets", query);
  const pending = list.data?.datasets.some((d) => d.status === "uploading" || d.status === "validating") ?? false;
  const { reload } = list;
  useInterval(useCallback(() => reload(), [reload]), 1500, pending);
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
      <ErrorText error={list.error} />
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
          </li>
        ))}
      </ul>
      <Pager pagination={list.meta?.pagination as Pagination | undefined} onPage={(p) => set("page", String(p))} />
    </section>
  );
}
