import { useCallback, useEffect, useRef, useState } from "react";
import { Link, NavLink, Outlet, useLocation, useNavigate } from "react-router";
import { api } from "../api";
import { useAuth } from "../auth";
import { when } from "../format";
import { useApi, useInterval } from "../hooks";
import type { Notification } from "../types";

const NAV = [
  ["/", "Dashboard"],
  ["/datasets", "Datasets"],
  ["/jobs", "Training"],
  ["/models", "Models"],
  ["/costs", "Costs"],
  ["/settings", "Settings"],
] as const;

function Bell() {
  const [open, setOpen] = useState(false);
  const [items, setItems] = useState<Notification[]>([]);
  const [unread, setUnread] = useState(0);
  const navigate = useNavigate();
  const panel = useRef<HTMLDivElement>(null);
  const load = useCallback(() => {
    api<{ notifications: Notification[] }>("/api/notifications", { query: { pageSize: 10 } })
      .then((a) => {
        setItems(a.data.notifications);
        setUnread(a.meta?.unreadCount ?? 0);
      })
      .catch(() => undefined);
  }, []);
  useEffect(load, [load]);
  useInterval(load, 10_000);
  useEffect(() => {
    if (!open) return;
    const close = (e: KeyboardEvent) => e.key === "Escape" && setOpen(false);
    window.addEventListener("keydown", close);
    return () => window.removeEventListener("keydown", close);
  }, [open]);
  const markRead = async (n: Notification) => {
    if (!n.read) await api(`/api/notifications/${n.id}/read`, { method: "PATCH" }).catch(() => undefined);
    load();
    if (n.actionUrl) {
      setOpen(false);
      navigate(n.actionUrl.replace(/^\/api/, ""));
    }
  };
  return (
    <div className="bell" ref={panel}>
      <button
        aria-haspopup="true"
        aria-expanded={open}
        aria-label={`Notifications, ${unread} unread`}
        onClick={() => setOpen((o) => !o)}
      >
        <svg className="icon" viewBox="0 0 24 24" width="18" height="18" aria-hidden="true">
          <path d="M12 22a2.5 2.5 0 0 0 2.45-2h-4.9A2.5 2.5 0 0 0 12 22Zm7-6V11a7 7 0 0 0-5.5-6.84V3a1.5 1.5 0 0 0-3 0v1.16A7 7 0 0 0 5 11v5l-2 2v1h18v-1Z" fill="currentColor" />
        </svg>{" "}
        {unread > 0 ? <span className="count">{unread}</span> : null}
      </button>
      {open ? (
        <div className="dropdown" role="region" aria-label="Notifications">
          <div className="dropdown-head">
            <strong>Notifications</strong>
            <button
              className="link"
              disabled={unread === 0}
              onClick={() => api("/api/notifications/read-all", { method: "POST" }).then(load)}
            >
              Mark all read
            </button>
          </div>
          {items.length === 0 ? <p className="muted">Nothing yet.</p> : null}
          <ul>
            {items.map((n) => (
              <li key={n.id} className={n.read ? "read" : "unread"}>
                <button className="link" onClick={() => markRead(n)}>
                  <strong>{n.title}</strong>
                  <span>{n.message}</span>
                  <small className="muted">{when(n.createdAt)}</small>
                </button>
              </li>
            ))}
          </ul>
        </div>
      ) : null}
    </div>
  );
}

interface BudgetSummary {
  currentMonth: { spent: number; budget?: number | null };
  alerts: { type: string; message: string; threshold: number }[];
}

/** On every page once this month's spend reaches 80 % of the budget (the summary's alerts),
 * read again each minute and on every move between pages. */
function BudgetBanner() {
  const { pathname } = useLocation();
  const summary = useApi<BudgetSummary>("/api/costs/summary");
  const { reload } = summary;
  useEffect(reload, [pathname, reload]);
  useInterval(reload, 60_000);
  const alerts = summary.data?.alerts ?? [];
  if (alerts.length === 0) return null;
  const worst = alerts.reduce((a, b) => (b.threshold > a.threshold ? b : a));
  const month = summary.data?.currentMonth;
  const used = month?.budget ? Math.round((100 * month.spent) / month.budget) : null;
  return (
    <div className={`banner ${worst.type === "critical" ? "error" : "warning"}`} role="alert" aria-label="Budget">
      Budget alert: {worst.message}
      {used != null ? ` (${used} % used)` : ""} <Link to="/costs">See costs</Link>
    </div>
  );
}

export function Layout() {
  const { user, signOut } = useAuth();
  const [menu, setMenu] = useState(false);
  const [nav, setNav] = useState(false);
  const navigate = useNavigate();
  return (
    <div className={`shell${nav ? " nav-open" : ""}`}>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <aside className="sidebar">
        <Link to="/" className="brand">
          BrightRun
        </Link>
        <nav aria-label="Main">
          {NAV.map(([to, label]) => (
            <NavLink key={to} to={to} end={to === "/"} onClick={() => setNav(false)}>
              {label}
            </NavLink>
          ))}
        </nav>
      </aside>
      <div className="content">
        <header className="topbar">
          <button className="menu-toggle" aria-label="Menu" aria-expanded={nav} onClick={() => setNav((n) => !n)}>
            ☰
          </button>
          <div className="spacer" />
          <Bell />
          <div className="user-menu">
            <button aria-haspopup="true" aria-expanded={menu} onClick={() => setMenu((m) => !m)}>
              {user?.name ?? "Account"}
            </button>
            {menu ? (
              <div className="dropdown" role="menu">
                <p className="muted">{user?.email}</p>
                <button role="menuitem" className="link" onClick={() => (setMenu(false), navigate("/settings"))}>
                  Settings
                </button>
                <button
                  role="menuitem"
                  className="link"
                  onClick={() => {
                    signOut();
                    navigate("/signin");
                  }}
                >
                  Sign out
                </button>
              </div>
            ) : null}
          </div>
        </header>
        <main id="main" tabIndex={-1}>
          <BudgetBanner />
          <Outlet />
        </main>
      </div>
    </div>
  );
}
