import { useState, type FormEvent } from "react";
import { Link } from "react-router";
import { api } from "../api";
import { useAuth } from "../auth";
import { BarChart } from "../components/charts";
import { ErrorText, Field, fieldError, Loading } from "../components/ui";
import { usd } from "../format";
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
    </section>
  );
}
