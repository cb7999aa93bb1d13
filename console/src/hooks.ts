import { useCallback, useEffect, useState } from "react";
import { useSearchParams } from "react-router";
import { api, ApiError, type Answer } from "./api";

/** Loads `path` (again when it or `query` change); `reload` fetches it anew. */
export function useApi<T>(path: string | null, query?: Record<string, string | number | boolean | undefined>) {
  const [answer, setAnswer] = useState<Answer<T> | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [loading, setLoading] = useState(true);
  const [tick, setTick] = useState(0);
  const key = JSON.stringify(query ?? {});
  useEffect(() => {
    if (!path) return;
    const controller = new AbortController();
    setLoading(true);
    api<T>(path, { query: JSON.parse(key), signal: controller.signal })
      .then((a) => {
        setAnswer(a);
        setError(null);
      })
      .catch((e) => {
        if (e instanceof ApiError) setError(e);
      })
      .finally(() => {
        if (!controller.signal.aborted) setLoading(false);
      });
    return () => controller.abort();
  }, [path, key, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { data: answer?.data ?? null, meta: answer?.meta, error, loading, reload };
}

/** Calls `f` every `ms` while `active`. */
export function useInterval(f: () => void, ms: number, active = true) {
  useEffect(() => {
    if (!active) return;
    const id = window.setInterval(f, ms);
    return () => window.clearInterval(id);
  }, [f, ms, active]);
}

/** Calls `f` every `ms` and whenever the window gets the focus back (data read again when
 * the user returns to the tab). */
export function useRefresh(f: () => void, ms: number) {
  useInterval(f, ms);
  useEffect(() => {
    window.addEventListener("focus", f);
    return () => window.removeEventListener("focus", f);
  }, [f]);
}

/** A list page's filters kept in the address (so a reload or a shared link keeps them):
 * the query for the API from `keys` and `pageSize`, and `set`, which changes one filter
 * ("all" or empty removes it) and goes back to the first page. */
export function useListParams(keys: string[], pageSize: number) {
  const [params, setParams] = useSearchParams();
  const query: Record<string, string | number | undefined> = { pageSize };
  for (const k of [...keys, "page"]) query[k] = params.get(k) ?? undefined;
  const set = (k: string, v: string) => {
    const next = new URLSearchParams(params);
    if (v && v !== "all") next.set(k, v);
    else next.delete(k);
    if (k !== "page") next.delete("page");
    setParams(next);
  };
  return { params, query, set };
}
