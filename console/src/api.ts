// The one way the console talks to BrightRun: the public REST API under /api, with the
// session token as a Bearer header. Every answer is the envelope {success, data, meta} or
// {success: false, error: {code, message, field?}}.

const TOKEN_KEY = "brightrun.token";

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export interface Pagination {
  page: number;
  pageSize: number;
  total: number;
  hasMore: boolean;
}

export interface Answer<T> {
  data: T;
  meta?: { pagination?: Pagination; unreadCount?: number };
}

/** An error answered by the API (or the network), with the code and field it names. */
export class ApiError extends Error {
  readonly code: string;
  readonly field?: string;
  readonly status: number;

  constructor(status: number, code: string, message: string, field?: string) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

export function token(): string | null {
  return localStorage.getItem(TOKEN_KEY);
}

export function setToken(value: string | null): void {
  if (value) localStorage.setItem(TOKEN_KEY, value);
  else localStorage.removeItem(TOKEN_KEY);
}

/** Fired when the API answers 401: the session is gone, the sign-in page comes back. */
export const SIGNED_OUT = "brightrun:signed-out";

type Query = Record<string, string | number | boolean | undefined | null>;

export function withQuery(path: string, query?: Query): string {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v !== undefined && v !== null && v !== "") params.set(k, String(v));
  }
  const s = params.toString();
  return s ? `${path}?${s}` : path;
}

export async function api<T>(
  path: string,
  options: { method?: string; body?: unknown; query?: Query; signal?: AbortSignal } = {},
): Promise<Answer<T>> {
  const headers: Record<string, string> = { Accept: "application/json" };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  let response: Response;
  try {
    response = await fetch(withQuery(path, options.query), {
      method: options.method ?? "GET",
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      signal: options.signal,
    });
  } catch (e) {
    if (e instanceof DOMException && e.name === "AbortError") throw e;
    throw new ApiError(0, "NETWORK", "The service could not be reached. Check your connection.");
  }
  const body = await response.json().catch(() => null);
  if (!response.ok || !body || body.success === false) {
    const error = body?.error ?? {};
    if (response.status === 401 && t) {
      setToken(null);
      window.dispatchEvent(new Event(SIGNED_OUT));
    }
    throw new ApiError(
      response.status,
      error.code ?? "INTERNAL_ERROR",
      error.message ?? `The service answered ${response.status}.`,
      error.field ?? undefined,
    );
  }
  return { data: body.data as T, meta: body.meta };
}

/** PUTs `file` to a presigned URL, reporting progress (0..1). */
export function putFile(
  url: string,
  method: string,
  headers: Record<string, string>,
  file: Blob,
  onProgress: (fraction: number) => void,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, url);
    for (const [k, v] of Object.entries(headers)) {
      // The browser sets Content-Length itself and refuses to be told.
      if (k.toLowerCase() !== "content-length") xhr.setRequestHeader(k, v);
    }
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) onProgress(e.loaded / e.total);
    };
    xhr.onload = () =>
      xhr.status >= 200 && xhr.status < 300
        ? resolve()
        : reject(new ApiError(xhr.status, "UPLOAD_FAILED", `Storage refused the upload (${xhr.status}).`));
    xhr.onerror = () =>
      reject(new ApiError(0, "NETWORK", "The upload to storage broke off. Try again."));
    xhr.send(file);
  });
}
