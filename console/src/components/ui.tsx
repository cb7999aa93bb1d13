import { useId, type ReactNode } from "react";
import { Link } from "react-router";
import { ApiError, type Pagination } from "../api";
import { sentence } from "../errors";

/** An error as a sentence, with the API's own message for the details. */
export function ErrorText({ error }: { error: unknown }) {
  if (!error) return null;
  const e = error instanceof ApiError ? error : new ApiError(0, "INTERNAL_ERROR", String(error));
  return (
    <p className="error" role="alert">
      <strong>{sentence(e.code)}</strong> {e.message && e.message !== sentence(e.code) ? e.message : null}
    </p>
  );
}

/** The error for one field, shown next to it when the API named that field. */
export function fieldError(error: unknown, field: string): string | undefined {
  if (error instanceof ApiError && error.field === field) {
    return `${sentence(error.code)} ${error.message}`;
  }
  return undefined;
}

export function Field(props: {
  label: string;
  error?: string;
  hint?: string;
  children: (id: string, describedBy: string | undefined) => ReactNode;
}) {
  const id = useId();
  const hintId = `${id}-hint`;
  const errId = `${id}-error`;
  const describedBy = [props.hint ? hintId : null, props.error ? errId : null].filter(Boolean).join(" ") || undefined;
  return (
    <div className={`field${props.error ? " invalid" : ""}`}>
      <label htmlFor={id}>{props.label}</label>
      {props.children(id, describedBy)}
      {props.hint ? (
        <small id={hintId} className="hint">
          {props.hint}
        </small>
      ) : null}
      {props.error ? (
        <small id={errId} className="field-error" role="alert">
          {props.error}
        </small>
      ) : null}
    </div>
  );
}

export function Badge({ status }: { status: string }) {
  return <span className={`badge badge-${status}`}>{status}</span>;
}

export function Loading() {
  return (
    <p className="muted" aria-live="polite">
      Loading…
    </p>
  );
}

export function Pager({ pagination, onPage }: { pagination?: Pagination; onPage: (page: number) => void }) {
  if (!pagination || pagination.total <= pagination.pageSize) return null;
  const pages = Math.ceil(pagination.total / pagination.pageSize);
  return (
    <nav className="pager" aria-label="Pages">
      <button disabled={pagination.page <= 1} onClick={() => onPage(pagination.page - 1)}>
        Previous
      </button>
      <span>
        Page {pagination.page} of {pages}
      </span>
      <button disabled={!pagination.hasMore} onClick={() => onPage(pagination.page + 1)}>
        Next
      </button>
    </nav>
  );
}

export function Stat({ label, value, to }: { label: string; value: ReactNode; to?: string }) {
  const body = (
    <>
      <span className="stat-label">{label}</span>
      <span className="stat-value">{value}</span>
    </>
  );
  return to ? (
    <Link className="card stat" to={to}>
      {body}
    </Link>
  ) : (
    <div className="card stat">{body}</div>
  );
}

export function Progress({ value, label }: { value: number; label: string }) {
  const v = Math.max(0, Math.min(100, value));
  return (
    <div className="progress" role="progressbar" aria-label={label} aria-valuenow={Math.round(v)} aria-valuemin={0} aria-valuemax={100}>
      <div className="progress-bar" style={{ width: `${v}%` }} />
    </div>
  );
}
