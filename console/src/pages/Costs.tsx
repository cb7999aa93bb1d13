import { useState, type FormEvent } from "react";
import { Link } from "react-router";
import { api } from "../api";
import { useAuth } from "../auth";
import { BarChart } from "../components/charts";
import { ErrorText, Field, fieldError, Loading } from "../components/ui";
import { usd, when } from "../format";
import { useApi } from "../hooks";
import type { CostPeriod } from "../types";

interface Summary {
  currentMonth: { month: string; spent: number; budget?: number | null; remaining?: number | null; projectedTotal: number; daysRemaining: number };
  alerts: { type: string; message: string; threshold: number }[];
}

export function Costs() {
  const [groupBy, setGroupBy] = useState("day");
  const costs = useApi<{ costs: CostPeriod[]; summary: { totalSpend: number; averageJobCost: number; mostExpensiveJob?: { id: string; name: string; cost: number } | null } }>(
    "/api/costs",
    { groupBy },
  );
  const summary = useApi<Summary>("/api/costs/summary");
  const month = summary.data?.currentMonth;
  const used = month?.budget ? (100 * month.spent) / month.budget : null;
  const periods = costs.data?.costs ?? [];
  return (
    <section aria-labelledby="costs-title">
      <h1 id="costs-title">Costs</h1>
      <ErrorText error={costs.error ?? summary.error} />
      {month ? (
        <div className="card">
          <h2>Budget for {month.month}</h2>
          {month.budget ? (
            <>
              <div className="budget" role="meter" aria-label="Budget used" aria-valuenow={Math.round(used ?? 0)} aria-valuemin={0} aria-valuemax={100}>
                <div className={`budget-bar${(used ?? 0) >= 100 ? " over" : (used ?? 0) >= 80 ? " warn" : ""}`} style={{ width: `${Math.min(100, used ?? 0)}%` }} />
                <span className="mark" style={{ left: "80%" }} title="80 %" />
                <span className="mark" style={{ left: "100%" }} title="100 %" />
              </div>
              <p>
                {usd(month.spent)} of {usd(month.budget)} ({Math.round(used ?? 0)} %) · projected {usd(month.projectedTotal)} · {month.daysRemaining} days left
              </p>
            </>
          ) : (
            <p>
              Spent {usd(month.spent)} this month. No budget set: <Link to="/settings">set one</Link> to be alerted at 80 % and 100 %.
            </p>
          )}
          {summary.data?.alerts.map((a) => (
            <p key={a.threshold} className={a.type === "critical" ? "error" : "warning"} role="status">
              {a.message}
            </p>
          ))}
        </div>
      ) : (
        <Loading />
      )}
      <div className="card">
        <div className="title-row">
          <h2>Spend by {groupBy}</h2>
          <div className="segmented" role="radiogroup" aria-label="Group by">
            {["day", "week", "month"].map((g) => (
              <button key={g} role="radio" aria-checked={g === groupBy} className={g === groupBy ? "primary" : ""} onClick={() => setGroupBy(g)}>
                {g}
              </button>
            ))}
          </div>
        </div>
        {periods.length === 0 ? (
          <p className="muted">No costs yet.</p>
        ) : (
          <BarChart
            label={`Spend by ${groupBy}`}
            labels={periods.map((p) => p.period)}
            stacks={[
              { label: "compute", color: "#4f46e5", values: periods.map((p) => p.compute) },
              { label: "storage", color: "#0891b2", values: periods.map((p) => p.storage) },
              { label: "data transfer", color: "#f59e0b", values: periods.map((p) => p.dataTransfer) },
            ]}
          />
        )}
        {costs.data ? (
          <p>
            Total {usd(costs.data.summary.totalSpend)} · average per job {usd(costs.data.summary.averageJobCost)}
            {costs.data.summary.mostExpensiveJob ? (
              <>
                {" "}
                · most expensive: <Link to={`/jobs/${costs.data.summary.mostExpensiveJob.id}`}>{costs.data.summary.mostExpensiveJob.name}</Link> (
                {usd(costs.data.summary.mostExpensiveJob.cost)})
              </>
            ) : null}
          </p>
        ) : null}
      </div>
    </section>
  );
}

export function Settings() {
  const { user, refresh } = useAuth();
  const [budget, setBudget] = useState(user?.monthlyBudget != null ? String(user.monthlyBudget) : "");
  const [error, setError] = useState<unknown>(null);
  const [saved, setSaved] = useState(false);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    setSaved(false);
    try {
      await api("/api/auth/me", { method: "PATCH", body: { monthlyBudget: budget === "" ? null : Number(budget) } });
      await refresh();
      setSaved(true);
    } catch (err) {
      setError(err);
    }
  };
  return (
    <section aria-labelledby="settings-title">
      <h1 id="settings-title">Settings</h1>
      <div className="card">
        <h2>Profile</h2>
        <dl className="inline">
          <div>
            <dt>Name</dt>
            <dd>{user?.name}</dd>
          </div>
          <div>
            <dt>E-mail</dt>
            <dd>{user?.email}</dd>
          </div>
          <div>
            <dt>Organization</dt>
            <dd>{user?.organization ?? "—"}</dd>
          </div>
          <div>
            <dt>Plan</dt>
            <dd>{user?.subscriptionTier}</dd>
          </div>
        </dl>
      </div>
      <form className="card" onSubmit={submit} aria-labelledby="budget-title">
        <h2 id="budget-title">Monthly budget</h2>
        <Field label="Monthly budget (USD)" hint="Alerts at 80 % and 100 % of it. Empty: no budget." error={fieldError(error, "monthlyBudget")}>
          {(id, d) => <input id={id} aria-describedby={d} type="number" step="0.01" value={budget} onChange={(e) => setBudget(e.target.value)} />}
        </Field>
        {error && !fieldError(error, "monthlyBudget") ? <ErrorText error={error} /> : null}
        <button className="primary">Save budget</button>
        {saved ? <p role="status">Saved.</p> : null}
      </form>
      <ApiKeys />
    </section>
  );
}

interface ApiKey {
  id: string;
  name: string;
  prefix: string;
  createdAt: string;
  expiresAt: string | null;
  lastUsedAt: string | null;
}

/** The user's API keys: made here (the secret shown once), listed, revoked. A key works
 * wherever the login does, including the OpenAI-compatible `/v1`. */
function ApiKeys() {
  const keys = useApi<{ apiKeys: ApiKey[] }>("/api/auth/api-keys");
  const [name, setName] = useState("");
  const [expiresAt, setExpiresAt] = useState("");
  const [secret, setSecret] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const create = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    setSecret(null);
    try {
      const body: Record<string, string> = { name };
      if (expiresAt) body.expiresAt = new Date(`${expiresAt}T23:59:59`).toISOString();
      const answer = await api<{ key: string }>("/api/auth/api-keys", { method: "POST", body });
      setSecret(answer.data.key);
      setName("");
      setExpiresAt("");
      keys.reload();
    } catch (err) {
      setError(err);
    }
  };
  const revoke = async (key: ApiKey) => {
    if (!window.confirm(`Revoke the key "${key.name}"? Scripts using it stop at once.`)) return;
    setError(null);
    try {
      await api(`/api/auth/api-keys/${key.id}`, { method: "DELETE" });
      keys.reload();
    } catch (err) {
      setError(err);
    }
  };
  const list = keys.data?.apiKeys ?? [];
  return (
    <div className="card" aria-labelledby="keys-title">
      <h2 id="keys-title">API keys</h2>
      <p className="muted">
        For scripts and the OpenAI SDK: <code>OpenAI(base_url="{window.location.origin}/v1", api_key=KEY)</code>.
      </p>
      <form onSubmit={create} aria-label="New API key">
        <Field label="Key name" error={fieldError(error, "name")}>
          {(id, d) => <input id={id} aria-describedby={d} value={name} onChange={(e) => setName(e.target.value)} required />}
        </Field>
        <Field label="Expires on (optional)" error={fieldError(error, "expiresAt")}>
          {(id, d) => <input id={id} aria-describedby={d} type="date" value={expiresAt} onChange={(e) => setExpiresAt(e.target.value)} />}
        </Field>
        <button className="primary">Create key</button>
      </form>
      {secret ? (
        <div role="status" className="secret">
          <p>Copy the key now: it is not shown again.</p>
          <code aria-label="New API key secret">{secret}</code>
        </div>
      ) : null}
      {error && !fieldError(error, "name") && !fieldError(error, "expiresAt") ? <ErrorText error={error} /> : null}
      {keys.error ? <ErrorText error={keys.error} /> : null}
      {list.length === 0 ? (
        <p className="muted">No API keys yet.</p>
      ) : (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Key</th>
                <th scope="col">Created</th>
                <th scope="col">Last used</th>
                <th scope="col">Expires</th>
                <th scope="col">
                  <span className="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {list.map((key) => (
                <tr key={key.id}>
                  <td>{key.name}</td>
                  <td>
                    <code>{key.prefix}…</code>
                  </td>
                  <td>{when(key.createdAt)}</td>
                  <td>{key.lastUsedAt ? when(key.lastUsedAt) : "never"}</td>
                  <td>{key.expiresAt ? when(key.expiresAt) : "never"}</td>
                  <td>
                    <button type="button" onClick={() => revoke(key)} aria-label={`Revoke ${key.name}`}>
                      Revoke
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}
