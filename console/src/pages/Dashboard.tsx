import { Link } from "react-router";
import { Badge, ErrorText, Loading, Stat } from "../components/ui";
import { usd, when } from "../format";
import { useApi } from "../hooks";
import type { Job, Notification } from "../types";

interface Stats {
  totalDatasets: number;
  activeJobs: number;
  completedModels: number;
  totalCost: number;
}

export function Dashboard() {
  const stats = useApi<Stats>("/api/dashboard/stats");
  const jobs = useApi<{ jobs: Job[] }>("/api/jobs", { pageSize: 5 });
  const activity = useApi<{ notifications: Notification[] }>("/api/notifications", { pageSize: 5 });
  return (
    <section aria-labelledby="dash-title">
      <h1 id="dash-title">Dashboard</h1>
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
        <div className="card">
          <h2>Recent jobs</h2>
          {jobs.data?.jobs.length === 0 ? <p className="muted">No jobs yet.</p> : null}
          <ul className="plain">
            {jobs.data?.jobs.map((j) => (
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
