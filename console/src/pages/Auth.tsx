import { useState, type FormEvent } from "react";
import { Link, useLocation, useNavigate } from "react-router";
import { useAuth } from "../auth";
import { ErrorText, Field, fieldError } from "../components/ui";

function useAfterSignIn() {
  const navigate = useNavigate();
  const location = useLocation();
  const from = (location.state as { from?: string } | null)?.from ?? "/";
  return () => navigate(from, { replace: true });
}

export function SignIn() {
  const { signIn } = useAuth();
  const done = useAfterSignIn();
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await signIn(email, password);
      done();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <div className="auth-page">
      <form className="card auth-card" onSubmit={submit} aria-labelledby="signin-title">
        <h1 id="signin-title">Sign in to BrightRun</h1>
        <Field label="E-mail" error={fieldError(error, "email")}>
          {(id, d) => <input id={id} aria-describedby={d} type="email" autoComplete="email" required value={email} onChange={(e) => setEmail(e.target.value)} />}
        </Field>
        <Field label="Password" error={fieldError(error, "password")}>
          {(id, d) => (
            <input id={id} aria-describedby={d} type="password" autoComplete="current-password" required value={password} onChange={(e) => setPassword(e.target.value)} />
          )}
        </Field>
        {error && !fieldError(error, "email") && !fieldError(error, "password") ? <ErrorText error={error} /> : null}
        <button className="primary" disabled={busy}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
        <p>
          New here? <Link to="/signup">Create an account</Link>
        </p>
      </form>
    </div>
  );
}

export function SignUp() {
  const { signUp } = useAuth();
  const done = useAfterSignIn();
  const [fields, setFields] = useState({ name: "", email: "", password: "", organization: "" });
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const set = (k: keyof typeof fields) => (e: { target: { value: string } }) => setFields({ ...fields, [k]: e.target.value });
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await signUp({ ...fields, organization: fields.organization || undefined });
      done();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const named = ["name", "email", "password", "organization"].some((f) => fieldError(error, f));
  return (
    <div className="auth-page">
      <form className="card auth-card" onSubmit={submit} aria-labelledby="signup-title">
        <h1 id="signup-title">Create your BrightRun account</h1>
        <Field label="Name" error={fieldError(error, "name")}>
          {(id, d) => <input id={id} aria-describedby={d} autoComplete="name" required value={fields.name} onChange={set("name")} />}
        </Field>
        <Field label="E-mail" error={fieldError(error, "email")}>
          {(id, d) => <input id={id} aria-describedby={d} type="email" autoComplete="email" required value={fields.email} onChange={set("email")} />}
        </Field>
        <Field label="Password" hint="At least 8 characters." error={fieldError(error, "password")}>
          {(id, d) => <input id={id} aria-describedby={d} type="password" autoComplete="new-password" required value={fields.password} onChange={set("password")} />}
        </Field>
        <Field label="Organization (optional)" error={fieldError(error, "organization")}>
          {(id, d) => <input id={id} aria-describedby={d} autoComplete="organization" value={fields.organization} onChange={set("organization")} />}
        </Field>
        {error && !named ? <ErrorText error={error} /> : null}
        <button className="primary" disabled={busy}>
          {busy ? "Creating…" : "Create account"}
        </button>
        <p>
          Already have an account? <Link to="/signin">Sign in</Link>
        </p>
      </form>
    </div>
  );
}
