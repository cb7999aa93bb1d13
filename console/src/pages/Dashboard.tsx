import { useCallback } from "react";
import { Link } from "react-router";
import { useAuth } from "../auth";
import { Badge, ErrorText, Loading, Stat } from "../components/ui";
import { usd, when } from "../format";
import { useApi, useRefresh } from "../hooks";
import type { Dataset, Job, Notification } from "../types";

/** The statuses of a job still on its way. */
const ACTIVE = ["queued", "initializing", "running"] as const;

interface Stats {
  totalDatasets: number;
  activeJobs: number;
  completedModels: number;
  totalCost: number;
}

export function Dashboard() {
  const { user } = useAuth();
  const stats = useApi<Stats>("/api/dashboard/stats");
  const datasets = useApi<{ datasets: Dataset[] }>("/api/datasets", { pageSize: 5 });
  const queued = useApi<{ jobs: Job[] }>("/api/jobs", { pageSize: 5, status: ACTIVE[0] });
  const initializing = useApi<{ jobs: Job[] }>("/api/jobs", { pageSize: 5, status: ACTIVE[1] });
  const running = useApi<{ jobs: Job[] }>("/api/jobs", { pageSize: 5, status: ACTIVE[2] });
  const activity = useApi<{ notifications: Notification[] }>("/api/notifications", { pageSize: 5 });
  const reloads = [stats.reload, datasets.reload, queued.reload, initializing.reload, running.reload, activity.reload];
  // Each reload is stable (useApi's), so this is too.
  // eslint-disable-next-line react-hooks/exhaustive-deps
  const refresh = useCallback(() => reloads.forEach((r) => r()), reloads);
  useRefresh(refresh, 30_000);
  const active = [...(running.data?.jobs ?? []), ...(initializing.data?.jobs ?? []), ...(queued.data?.jobs ?? [])];
  const activeLoaded = running.data && initializing.data && queued.data;
  return (
    <section aria-labelledby="dash-title">
      <h1 id="dash-title">Welcome back, {user?.name}</h1>
      <ErrorText error={stats.error} />
      {stats.data ? (
        <div className="stats">
          <Stat label="Datasets" value={stats.data.totalDatasets} to="/datasets" />
          <Stat label="Active jobs" value={stats.data.activeJobs} to="/jobs" />
          <Stat label="Completed models" value={stats.data.completedModels} to="/models" />
          <Stat label="Total cost" value={usd(stats.data.totalCost)} to="/costs" />
        </div>
      ) : (
        <Loading />
      )}
      <div className="actions">
        <Link className="button primary" to="/datasets?upload=1">
          Upload a dataset
        </Link>
        <Link className="button" to="/jobs/new">
          Start training
        </Link>
        <Link className="button" to="/models">
          Browse models
        </Link>
      </div>
      <div className="columns">
        <div className="card" role="region" aria-labelledby="recent-datasets">
          <h2 id="recent-datasets">Recent datasets</h2>
          {datasets.data?.datasets.length === 0 ? <p className="muted">No datasets yet.</p> : null}
          <ul className="plain">
            {datasets.data?.datasets.map((d) => (
              <li key={d.id}>
                <Link to={`/datasets/${d.id}`}>{d.name}</Link> <Badge status={d.status} /> <small className="muted">{when(d.createdAt)}</small>
              </li>
            ))}
          </ul>
        </div>
        <div className="card" role="region" aria-labelledby="active-jobs">
          <h2 id="active-jobs">Active jobs</h2>
          {activeLoaded && active.length === 0 ? <p className="muted">No job is training now.</p> : null}
          <ul className="plain">
            {active.map((j) => (
              <li key={j.id}>
                <Link to={`/jobs/${j.id}`}>{j.name}</Link> <Badge status={j.status} /> <small className="muted">{when(j.createdAt)}</small>
              </li>
            ))}
          </ul>
        </div>
        <div className="card">
          <h2>Recent activity</h2>
          {activity.data?.notifications.length === 0 ? <p className="muted">Nothing has happened yet.</p> : null}
          <ul className="plain">
            {activity.data?.notifications.map((n) => (
              <li key={n.id}>
                <strong>{n.title}</strong> <span>{n.message}</span> <small className="muted">{when(n.createdAt)}</small>
              </li>
            ))}
          </ul>
        </div>
      </div>
    </section>
  );
}
