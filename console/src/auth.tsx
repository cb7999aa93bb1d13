import { createContext, useCallback, useContext, useEffect, useState, type ReactNode } from "react";
import { api, setToken, SIGNED_OUT, token } from "./api";
import type { Session, User } from "./types";

interface Auth {
  user: User | null;
  /** True until the stored token has been checked (a reload stays signed in). */
  checking: boolean;
  signIn(email: string, password: string): Promise<void>;
  signUp(fields: { email: string; password: string; name: string; organization?: string }): Promise<void>;
  signOut(): void;
  refresh(): Promise<void>;
}

const AuthContext = createContext<Auth | null>(null);

export function AuthProvider({ children }: { children: ReactNode }) {
  const [user, setUser] = useState<User | null>(null);
  const [checking, setChecking] = useState(() => token() !== null);

  const refresh = useCallback(async () => {
    const { data } = await api<{ user: User }>("/api/auth/me");
    setUser(data.user);
  }, []);

  useEffect(() => {
    if (token()) {
      refresh()
        .catch(() => setUser(null))
        .finally(() => setChecking(false));
    }
    const gone = () => setUser(null);
    window.addEventListener(SIGNED_OUT, gone);
    return () => window.removeEventListener(SIGNED_OUT, gone);
  }, [refresh]);

  const start = (session: Session) => {
    setToken(session.token);
    setUser(session.user);
  };
  const value: Auth = {
    user,
    checking,
    refresh,
    async signIn(email, password) {
      start((await api<Session>("/api/auth/login", { method: "POST", body: { email, password } })).data);
    },
    async signUp(fields) {
      start((await api<Session>("/api/auth/signup", { method: "POST", body: fields })).data);
    },
    signOut() {
      setToken(null);
      setUser(null);
    },
  };
  return <AuthContext.Provider value={value}>{children}</AuthContext.Provider>;
}

export function useAuth(): Auth {
  const auth = useContext(AuthContext);
  if (!auth) throw new Error("useAuth outside AuthProvider");
  return auth;
}
