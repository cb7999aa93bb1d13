import { StrictMode, type ReactNode } from "react";
import { createRoot } from "react-dom/client";
import { BrowserRouter, Navigate, Route, Routes, useLocation, useParams, useSearchParams } from "react-router";
import { AuthProvider, useAuth } from "./auth";
import { Layout } from "./components/Layout";
import { Loading } from "./components/ui";
import { SignIn, SignUp } from "./pages/Auth";
import { Configurator } from "./pages/Configurator";
import { Costs, Settings } from "./pages/Costs";
import { Dashboard } from "./pages/Dashboard";
import { DatasetDetail } from "./pages/DatasetDetail";
import { Datasets } from "./pages/Datasets";
import { JobMonitor, Jobs } from "./pages/Jobs";
import { ModelPage, Models } from "./pages/Models";
import "./styles.css";

function Private({ children }: { children: ReactNode }) {
  const { user, checking } = useAuth();
  const location = useLocation();
  if (checking) return <Loading />;
  if (!user) return <Navigate to="/signin" replace state={{ from: location.pathname + location.search }} />;
  return children;
}

/** The seeds' URLs (`/training/...`, `dataset_id=`), sent to the console's own pages. */
function TrainingConfigure() {
  const [params] = useSearchParams();
  const dataset = params.get("dataset_id") ?? params.get("datasetId");
  return <Navigate to={dataset ? `/jobs/new?datasetId=${encodeURIComponent(dataset)}` : "/jobs/new"} replace />;
}

function TrainingJob() {
  const { id } = useParams();
  return <Navigate to={`/jobs/${encodeURIComponent(id ?? "")}`} replace />;
}

function App() {
  return (
    <Routes>
      <Route path="/signin" element={<SignIn />} />
      <Route path="/signup" element={<SignUp />} />
      <Route path="/login" element={<Navigate to="/signin" replace />} />
      <Route
        element={
          <Private>
            <Layout />
          </Private>
        }
      >
        <Route index element={<Dashboard />} />
        <Route path="datasets" element={<Datasets />} />
        <Route path="datasets/:id" element={<DatasetDetail />} />
        <Route path="jobs" element={<Jobs />} />
        <Route path="jobs/new" element={<Configurator />} />
        <Route path="jobs/:id" element={<JobMonitor />} />
        <Route path="training/configure" element={<TrainingConfigure />} />
        <Route path="training/jobs" element={<Navigate to="/jobs" replace />} />
        <Route path="training/jobs/:id" element={<TrainingJob />} />
        <Route path="models" element={<Models />} />
        <Route path="models/:id" element={<ModelPage />} />
        <Route path="costs" element={<Costs />} />
        <Route path="settings" element={<Settings />} />
        <Route path="*" element={<p>That page does not exist.</p>} />
      </Route>
    </Routes>
  );
}

const root = document.getElementById("root");
if (root) {
  createRoot(root).render(
    <StrictMode>
      <BrowserRouter>
        <AuthProvider>
          <App />
        </AuthProvider>
      </BrowserRouter>
    </StrictMode>,
  );
}
