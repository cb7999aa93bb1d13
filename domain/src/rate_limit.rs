//! Which requests are rate limited, and the fixed-window rule that decides whether one may
//! pass. Counting is the adapter's (shared by every instance); the decision is here.

/// What a request costs: a write, or a read or write that is expensive to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateClass {
    Write,
    Expensive,
}

impl RateClass {
    pub fn as_str(self) -> &'static str {
        match self {
            RateClass::Write => "writes",
            RateClass::Expensive => "expensive",
        }
    }
}

/// The class of `method` on `path` (a concrete path or the OpenAPI template of one), or none
/// when it is not limited: reads, the service's own endpoints, the cluster's signed webhook
/// and the login (throttled by its failures instead).
pub fn classify(method: &str, path: &str) -> Option<RateClass> {
    if !(path.starts_with("/api/") || path.starts_with("/v1/")) {
        return None;
    }
    let method = method.to_ascii_uppercase();
    let under = |prefix: &str, suffix: &str| {
        path.len() > prefix.len() + suffix.len()
            && path.starts_with(prefix)
            && path.ends_with(suffix)
            && !path[prefix.len()..path.len() - suffix.len()].contains('/')
    };
    match method.as_str() {
        "GET" | "HEAD" => {
            let expensive = under("/api/jobs/", "/stream")
                || under("/v1/files/", "/content")
                || path == "/api/admin/audit/costs";
            expensive.then_some(RateClass::Expensive)
        }
        "OPTIONS" => None,
        _ => match path {
            "/api/cluster/webhook" | "/api/auth/login" => None,
            "/api/jobs/estimate" | "/api/datasets/validate" | "/v1/files" => {
                Some(RateClass::Expensive)
            }
            _ if under("/api/datasets/", "/upload") => Some(RateClass::Expensive),
            _ => Some(RateClass::Write),
        },
    }
}

/// At most `limit` requests per window of `window_secs`, counted per key from the start of
/// each window (zero: no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub limit: u32,
    pub window_secs: u64,
}

impl RateLimit {
    /// The start (Unix seconds) of the window `now` falls in, and the seconds left in it.
    pub fn window(self, now_unix: i64) -> (i64, u64) {
        let size = self.window_secs.max(1) as i64;
        let start = now_unix.div_euclid(size) * size;
        (start, (start + size - now_unix) as u64)
    }

    /// `Err(retry_after_secs)` when the request that made the window's count `hits` (itself
    /// included) is one too many.
    pub fn check(self, hits: i64, now_unix: i64) -> Result<(), u64> {
        if self.limit == 0 || hits <= i64::from(self.limit) {
            Ok(())
        } else {
            Err(self.window(now_unix).1.max(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_the_expensive_routes_are_limited_reads_are_not() {
        use RateClass::*;
        let cases = [
            ("POST", "/api/jobs", Some(Write)),
            ("PATCH", "/api/datasets/7", Some(Write)),
            ("DELETE", "/v1/files/file-1", Some(Write)),
            ("POST", "/api/auth/signup", Some(Write)),
            ("POST", "/api/jobs/estimate", Some(Expensive)),
            ("POST", "/api/datasets/validate", Some(Expensive)),
            ("POST", "/api/datasets/7/upload", Some(Expensive)),
            ("POST", "/api/datasets/{id}/upload", Some(Expensive)),
            ("post", "/v1/files", Some(Expensive)),
            ("GET", "/api/jobs/7/stream", Some(Expensive)),
            ("GET", "/v1/files/file-1/content", Some(Expensive)),
            ("GET", "/api/admin/audit/costs", Some(Expensive)),
            ("GET", "/api/jobs", None),
            ("GET", "/api/jobs/7", None),
            ("GET", "/api/jobs/7/extra/stream", None),
            ("POST", "/api/auth/login", None),
            ("POST", "/api/cluster/webhook", None),
            ("GET", "/healthz", None),
            ("POST", "/assets/x", None),
            ("OPTIONS", "/api/jobs", None),
        ];
        for (method, path, class) in cases {
            assert_eq!(classify(method, path), class, "{method} {path}");
        }
    }

    #[test]
    fn a_window_lets_limit_requests_pass_then_says_when_it_ends() {
        let rule = RateLimit {
            limit: 3,
            window_secs: 60,
        };
        assert_eq!(rule.window(125), (120, 55));
        assert_eq!(rule.window(120), (120, 60));
        assert_eq!(rule.check(3, 125), Ok(()));
        assert_eq!(rule.check(4, 125), Err(55));
        assert_eq!(rule.check(4, 179), Err(1));
        let off = RateLimit {
            limit: 0,
            window_secs: 60,
        };
        assert_eq!(off.check(1_000_000, 125), Ok(()));
    }
}
