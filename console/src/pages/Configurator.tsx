import { useEffect, useMemo, useRef, useState } from "react";
import { Link, useNavigate, useSearchParams } from "react-router";
import { api, ApiError } from "../api";
import { Badge, ErrorText, Field, fieldError, Loading } from "../components/ui";
import { duration, num, usd } from "../format";
import { useApi } from "../hooks";
import type { Bound, Catalogue, Dataset, Estimate, Hyperparameters } from "../types";

const OPTION_FIELDS = ["checkpointInterval", "validationSplitRatio", "earlyStoppingPatience", "earlyStoppingMinDelta"];

/** A value outside the range the catalogue calls typical for its field deserves a second
 * look (every preset lies inside it); the API's own bounds refuse what is not allowed. */
function warningFor(bound: Bound | undefined, value: unknown): string | null {
  if (!bound || typeof value !== "number" || !Number.isFinite(value)) return null;
  const name = bound.field.replace("hyperparameters.", "");
  if (bound.typicalMax != null && value > bound.typicalMax)
    return `High for ${name} (usually at most ${bound.typicalMax}): training may diverge or cost more.`;
  if (bound.typicalMin != null && value < bound.typicalMin)
    return `Low for ${name} (usually at least ${bound.typicalMin}): training may barely learn.`;
  return null;
}

export function Configurator() {
  const [params] = useSearchParams();
  const navigate = useNavigate();
  const catalogue = useApi<Catalogue>("/api/jobs/presets");
  const ready = useApi<{ datasets: Dataset[] }>("/api/datasets", { status: "ready", pageSize: 100 });
  const [datasetId, setDatasetId] = useState(params.get("datasetId") ?? "");
  const [presetId, setPresetId] = useState("balanced");
  const [values, setValues] = useState<Hyperparameters>({});
  const [options, setOptions] = useState<Record<string, number | "">>({});
  const [baseModel, setBaseModel] = useState("");
  const [jobName, setJobName] = useState("");
  const [gpu, setGpu] = useState({ instanceType: "", numGPUs: 1 });
  const [estimate, setEstimate] = useState<Estimate | null>(null);
  const [estimateError, setEstimateError] = useState<unknown>(null);
  const [launchError, setLaunchError] = useState<unknown>(null);
  const [confirming, setConfirming] = useState(false);
  const dialog = useRef<HTMLDialogElement>(null);
  const cat = catalogue.data;
  const preset = cat?.presets.find((p) => p.id === presetId);
  // The preset's values on the chosen model, as the API will resolve them.
  const start = cat?.baseModels.find((m) => m.id === baseModel)?.presetHyperparameters[presetId] ?? preset?.hyperparameters;

  useEffect(() => {
    if (!cat) return;
    setBaseModel((b) => b || cat.defaultBaseModel);
  }, [cat]);
  // Each base model starts from the GPUs the catalogue names for it (the domain's choice:
  // the cheapest per token of those that can train it); the user may change them after.
  useEffect(() => {
    const start = cat?.baseModels.find((m) => m.id === baseModel)?.defaultGpuConfig;
    if (start) setGpu(start);
  }, [cat, baseModel]);
  useEffect(() => {
    if (start) setValues({ ...start });
  }, [start]);
  useEffect(() => {
    if (!datasetId && ready.data?.datasets[0]) setDatasetId(ready.data.datasets[0].id);
  }, [ready.data, datasetId]);

  const overrides = useMemo(() => {
    const out: Hyperparameters = {};
    if (!start) return out;
    for (const [k, v] of Object.entries(values)) {
      if (JSON.stringify(v) !== JSON.stringify(start[k])) out[k] = v;
    }
    return out;
  }, [values, start]);
  const body = useMemo(() => {
    const b: Record<string, unknown> = { datasetId, presetId, baseModel, gpuConfig: gpu, hyperparameters: overrides };
    for (const [k, v] of Object.entries(options)) if (v !== "") b[k] = v;
    return b;
  }, [datasetId, presetId, baseModel, gpu, overrides, options]);
  // The name only matters to the launch: the estimate is not asked again for it.
  const launchBody = useMemo(() => (jobName.trim() ? { ...body, name: jobName } : body), [body, jobName]);

  // The estimate follows the form: asked again a moment after each change.
  useEffect(() => {
    if (!datasetId || !baseModel || !gpu.instanceType) return;
    const controller = new AbortController();
    const t = window.setTimeout(() => {
      api<Estimate>("/api/jobs/estimate", { method: "POST", body, signal: controller.signal })
        .then((a) => {
          setEstimate(a.data);
          setEstimateError(null);
        })
        .catch((e) => e instanceof ApiError && (setEstimate(null), setEstimateError(e)));
    }, 250);
    return () => {
      window.clearTimeout(t);
      controller.abort();
    };
  }, [body, datasetId, baseModel, gpu.instanceType]);

  useEffect(() => {
    if (confirming) dialog.current?.showModal();
    else dialog.current?.close();
  }, [confirming]);

  if (catalogue.error) return <ErrorText error={catalogue.error} />;
  if (!cat) return <Loading />;
  const dataset = ready.data?.datasets.find((d) => d.id === datasetId);
  // Hyperparameter bounds are named `hyperparameters.<field>`, options by their own name.
  const bound = (f: string) => cat.bounds.find((b) => b.field === f || b.field === `hyperparameters.${f}`);
  const warnings = [...Object.entries(values), ...Object.entries(options)]
    .map(([k, v]) => warningFor(bound(k), v))
    .filter((w): w is string => w !== null);
  const launch = async () => {
    setLaunchError(null);
    try {
      const { data } = await api<{ jobId: string }>("/api/jobs", { method: "POST", body: launchBody });
      navigate(`/jobs/${data.jobId}`);
    } catch (e) {
      setConfirming(false);
      setLaunchError(e);
    }
  };
  const input = (field: string, value: unknown, set: (v: number | string | string[]) => void) => {
    const b = bound(field);
    if (field === "targetModules" && b?.values) {
      const chosen = Array.isArray(value) ? value : [];
      return (
        <fieldset key={field} className="field">
          <legend>targetModules</legend>
          <div className="checks">
            {b.values.map((m) => (
              <label key={m}>
                <input
                  type="checkbox"
                  checked={chosen.includes(m)}
                  onChange={(e) => set(e.target.checked ? [...chosen, m] : chosen.filter((x) => x !== m))}
                />
                {m}
              </label>
            ))}
          </div>
          {fieldError(launchError ?? estimateError, `hyperparameters.${field}`) ?? fieldError(launchError ?? estimateError, field) ? (
            <small className="field-error" role="alert">
              {fieldError(launchError ?? estimateError, `hyperparameters.${field}`) ?? fieldError(launchError ?? estimateError, field)}
            </small>
          ) : null}
        </fieldset>
      );
    }
    const err = fieldError(launchError ?? estimateError, `hyperparameters.${field}`) ?? fieldError(launchError ?? estimateError, field);
    const hint = b?.values ? undefined : b ? `${b.minExclusive ? ">" : "≥"} ${b.min ?? "—"}, ≤ ${b.max ?? "—"}` : undefined;
    return (
      <Field key={field} label={field} hint={hint} error={err}>
        {(id, d) =>
          b?.values ? (
            <select id={id} aria-describedby={d} value={String(value)} onChange={(e) => set(e.target.value)}>
              {b.values.map((v) => (
                <option key={v}>{v}</option>
              ))}
            </select>
          ) : (
            <div className="with-slider">
              <input
                id={id}
                aria-describedby={d}
                type="number"
                step="any"
                min={b?.min ?? undefined}
                max={b?.max ?? undefined}
                value={value === "" || value === undefined ? "" : String(value)}
                onChange={(e) => set(e.target.value === "" ? "" : Number(e.target.value))}
              />
              {b ? <Slider field={field} bound={b} value={typeof value === "number" ? value : null} onChange={set} /> : null}
            </div>
          )
        }
      </Field>
    );
  };
  return (
    <section aria-labelledby="config-title">
      <p>
        <Link to="/jobs">← Training</Link>
      </p>
      <h1 id="config-title">Configure a training job</h1>
      <div className="columns wide-left">
        <div>
          <div className="card">
            <h2>Dataset</h2>
            <Field label="Dataset" error={fieldError(launchError ?? estimateError, "datasetId")}>
              {(id, d) => (
                <select id={id} aria-describedby={d} value={datasetId} onChange={(e) => setDatasetId(e.target.value)}>
                  {ready.data?.datasets.length === 0 ? <option value="">No ready dataset: upload one first</option> : null}
                  {ready.data?.datasets.map((ds) => (
                    <option key={ds.id} value={ds.id}>
                      {ds.name}
                    </option>
                  ))}
                </select>
              )}
            </Field>
            {dataset ? (
              <p className="muted" aria-label="Dataset validation">
                <Badge status={dataset.status} /> {dataset.trainingReady ? "validated, ready to train" : "validated, not ready to train"} ·{" "}
                {num(dataset.totalConversations)} conversations · {num(dataset.totalTrainingPairs)} training pairs · {num(dataset.totalTokens)} tokens
              </p>
            ) : null}
            <Field label="Job name" hint="Optional: named after the dataset when left empty." error={fieldError(launchError, "name")}>
              {(id, d) => (
                <input
                  id={id}
                  aria-describedby={d}
                  maxLength={100}
                  placeholder={dataset ? `Training on ${dataset.name}` : ""}
                  value={jobName}
                  onChange={(e) => setJobName(e.target.value)}
                />
              )}
            </Field>
          </div>
          <div className="card">
            <h2>Preset</h2>
            <div className="presets" role="radiogroup" aria-label="Preset">
              {cat.presets.map((p) => (
                <button key={p.id} role="radio" aria-checked={p.id === presetId} className={p.id === presetId ? "primary" : ""} onClick={() => setPresetId(p.id)}>
                  <strong>{p.id}</strong>
                  <small>{p.description}</small>
                </button>
              ))}
            </div>
          </div>
          <div className="card">
            <h2>Model and GPUs</h2>
            <div className="grid">
              <Field label="Base model" error={fieldError(launchError ?? estimateError, "baseModel")}>
                {(id, d) => (
                  <select id={id} aria-describedby={d} value={baseModel} onChange={(e) => setBaseModel(e.target.value)}>
                    {cat.baseModels.map((m) => (
                      <option key={m.id}>{m.id}</option>
                    ))}
                  </select>
                )}
              </Field>
              <Field label="GPU type" error={fieldError(launchError ?? estimateError, "gpuConfig.instanceType")}>
                {(id, d) => (
                  <select id={id} aria-describedby={d} value={gpu.instanceType} onChange={(e) => setGpu({ ...gpu, instanceType: e.target.value })}>
                    {cat.gpuTypes.map((g) => (
                      <option key={g.id} value={g.id}>
                        {g.id} ({g.memoryGb} GB, {usd(g.ratePerGpuHour)}/h)
                      </option>
                    ))}
                  </select>
                )}
              </Field>
              <Field label="GPU count" error={fieldError(launchError ?? estimateError, "gpuConfig.numGPUs") ?? fieldError(launchError ?? estimateError, "gpuConfig")}>
                {(id, d) => (
                  <select id={id} aria-describedby={d} value={gpu.numGPUs} onChange={(e) => setGpu({ ...gpu, numGPUs: Number(e.target.value) })}>
                    {cat.numGPUs.map((n) => (
                      <option key={n}>{n}</option>
                    ))}
                  </select>
                )}
              </Field>
            </div>
          </div>
          <details className="card">
            <summary>
              <h2>Advanced hyperparameters</h2>
            </summary>
            <div className="grid">
              {Object.entries(values).map(([k, v]) => input(k, v, (nv) => setValues({ ...values, [k]: nv })))}
              {OPTION_FIELDS.filter((f) => bound(f)).map((f) => input(f, options[f] ?? "", (nv) => setOptions({ ...options, [f]: nv as number | "" })))}
            </div>
          </details>
        </div>
        <aside className="card estimate" aria-live="polite" aria-labelledby="estimate-title">
          <h2 id="estimate-title">Estimate</h2>
          {estimate ? (
            <dl>
              <dt>Total</dt>
              <dd className="big">{usd(estimate.cost.total)}</dd>
              <dt>GPU</dt>
              <dd>{usd(estimate.cost.breakdown.compute.total)}</dd>
              <dt>Storage</dt>
              <dd>{usd(estimate.cost.breakdown.storage.total)}</dd>
              <dt>Data transfer</dt>
              <dd>{usd(estimate.cost.breakdown.dataTransfer.total)}</dd>
              <dt>Duration</dt>
              <dd>
                {duration(estimate.duration.estimated)} ({duration(estimate.duration.min)} – {duration(estimate.duration.max)})
              </dd>
              <dt>Steps</dt>
              <dd>{num(estimate.totalSteps)}</dd>
              <dt>Learning rate · warmup</dt>
              <dd>
                {String(estimate.configuration.hyperparameters.learningRate)} · {num(Number(estimate.configuration.hyperparameters.warmupSteps))} steps
              </dd>
            </dl>
          ) : estimateError ? (
            <ErrorText error={estimateError} />
          ) : (
            <p className="muted">Choose a dataset to see the cost.</p>
          )}
          {warnings.length > 0 ? (
            <ul className="warnings" aria-label="Warnings">
              {warnings.map((w) => (
                <li key={w}>⚠ {w}</li>
              ))}
            </ul>
          ) : null}
          {launchError ? <ErrorText error={launchError} /> : null}
          <div className="actions">
            <button className="primary" disabled={!estimate} onClick={() => setConfirming(true)}>
              Launch training
            </button>
            <button onClick={() => (window.history.length > 1 ? navigate(-1) : navigate("/jobs"))}>Cancel</button>
          </div>
        </aside>
      </div>
      <dialog ref={dialog} onClose={() => setConfirming(false)} aria-labelledby="confirm-title">
        <h2 id="confirm-title">Launch this job?</h2>
        <p>
          {presetId} preset on {baseModel}, {gpu.numGPUs} × {gpu.instanceType}: about {estimate ? usd(estimate.cost.total) : "—"} and{" "}
          {estimate ? duration(estimate.duration.estimated) : "—"}.
        </p>
        <div className="actions">
          <button className="primary" onClick={launch}>
            Launch
          </button>
          <button onClick={() => setConfirming(false)}>Back</button>
        </div>
      </dialog>
    </section>
  );
}

/** A slider over the range fine-tuning usually takes (the whole allowed range when the
 * catalogue names none), logarithmic where it spans two orders of magnitude or more; the
 * number field beside it takes any allowed value. */
function Slider({ field, bound, value, onChange }: { field: string; bound: Bound; value: number | null; onChange: (v: number) => void }) {
  const lo = bound.typicalMin ?? bound.min;
  const hi = bound.typicalMax ?? bound.max;
  if (lo == null || hi == null || !(hi > lo)) return null;
  const log = lo > 0 && hi / lo >= 100;
  const whole = Number.isInteger(lo) && Number.isInteger(hi) && (value === null || Number.isInteger(value));
  const [a, b] = log ? [Math.log10(lo), Math.log10(hi)] : [lo, hi];
  const position = (v: number) => Math.min(1000, Math.max(0, (1000 * ((log ? Math.log10(v) : v) - a)) / (b - a)));
  const valueAt = (p: number) => {
    const x = a + (p / 1000) * (b - a);
    const v = log ? 10 ** x : x;
    return whole ? Math.round(v) : Number(v.toPrecision(2));
  };
  return (
    <input
      type="range"
      aria-label={`${field} slider`}
      min={0}
      max={1000}
      step={1}
      value={value === null || (log && value <= 0) ? 0 : position(value)}
      onChange={(e) => onChange(valueAt(Number(e.target.value)))}
    />
  );
}
