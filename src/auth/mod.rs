//! Who is calling: the credentials a request carries turned into a [`Principal`], and what a
//! principal may do.
//!
//! Where identity is checked and carried: `http::authenticate` (a middleware on every route)
//! calls [`Auth::authenticate`] for every route that is not public ([`is_public`]), before
//! the body is read, and answers 401 on failure; it checks the agent of an `/agents/{id}`
//! path against a scoped key ([`Principal::may_call`]) and answers 403 alike for an agent
//! that does not exist. The principal rides in the request's extensions into `rpc::Call`
//! (`Call::principal`), where `http::prepare` refuses the control plane to non-admins
//! ([`authorize_method`]). Tasks are bound to their caller: the command that creates a task
//! carries [`Principal::owner`], and every task read filters by [`Principal::task_scope`]
//! (`rpc::find_task`, ListTasks, the archive's queries).
//!
//! Credentials: `X-API-Key: <key>` or `Authorization: Bearer <key>`, where the key is an API
//! key (`sx_...`, [`keys`], stored hashed in the replicated state so revocation holds on every
//! node once applied) or the admin token (`auth.admin_token`); `Authorization: Bearer <jwt>`
//! ([`jwt`]). A credential is never logged, answered or used as a metric label: logs name
//! the principal ([`Principal`]'s `Display`: a key id, a JWT's issuer and subject).

pub mod jwks;
pub mod jwt;
pub mod keys;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, header};

use crate::config::AuthSection;
use crate::jsonrpc::RpcError;
use crate::state::{ApiKey, KeyRole};

/// The header an API key may come in (besides `Authorization: Bearer`).
pub const API_KEY_HEADER: &str = "x-api-key";

/// Routes anyone may call (axum route templates): cards (clients read them to learn how to
/// authenticate), health, readiness, the webhook JWKS (receivers verify with it), and the
/// dashboard's static files and settings (no data: the page asks for a credential).
/// `/metrics` is public unless `auth.metrics_public` is false.
const PUBLIC_ROUTES: [&str; 11] = [
    "/health",
    "/ready",
    "/.well-known/jwks.json",
    "/.well-known/agent-card.json",
    "/.well-known/agent.json",
    "/agents/{id}/.well-known/agent-card.json",
    "/agents/{id}/.well-known/agent.json",
    "/ui",
    "/ui/",
    "/ui/config.json",
    "/ui/{file}",
];

/// Path prefixes outside client auth because they authenticate by their own means (inbound
/// webhooks carry a per-task token). Add a route here only when it checks its caller itself.
pub const PUBLIC_PREFIXES: [&str; 1] = ["/push/inbound/"];

/// Routes for operators only (the admin credential when auth is on): the dashboard's feed
/// and task view show every task.
const ADMIN_ROUTES: [&str; 3] = ["/cluster", "/ui/events", "/ui/tasks/{id}"];

/// Who a call is made by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub who: Who,
    /// May call the control plane.
    pub admin: bool,
    /// The agents it may call; `None`: every agent.
    pub agents: Option<Arc<[String]>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Who {
    /// Auth is off: anyone.
    Open,
    /// The admin token.
    AdminToken,
    /// An API key, by id.
    Key(String),
    /// A JWT's issuer and subject.
    Jwt { issuer: String, subject: String },
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.who {
            Who::Open => f.write_str("open"),
            Who::AdminToken => f.write_str("admin-token"),
            Who::Key(id) => write!(f, "key:{id}"),
            Who::Jwt { issuer, subject } => write!(f, "jwt:{subject}@{issuer}"),
        }
    }
}

impl Principal {
    /// Everyone, when auth is off.
    pub fn open() -> Principal {
        Principal { who: Who::Open, admin: true, agents: None }
    }

    /// The owner recorded with the tasks it creates (`state::TaskEntry::owner`): stable for
    /// as long as the credential lives, and never the credential itself: `key:<id>`,
    /// `jwt:<issuer>|<subject>`, `admin` for the admin token. `None` with auth off (tasks are
    /// recorded without an owner, as before tasks had one).
    pub fn owner(&self) -> Option<String> {
        match &self.who {
            Who::Open => None,
            Who::AdminToken => Some("admin".into()),
            Who::Key(id) => Some(format!("key:{id}")),
            Who::Jwt { issuer, subject } => Some(format!("jwt:{issuer}|{subject}")),
        }
    }

    /// Which tasks it may see: an admin (and everyone with auth off) all of them, anyone else
    /// only those recorded with its owner. A task without an owner (created with auth off, or
    /// before tasks had owners) is an admin's only: nobody can show it was theirs.
    pub fn task_scope(&self) -> TaskScope {
        match self.owner() {
            _ if self.admin => TaskScope::All,
            Some(owner) => TaskScope::Owner(owner),
            // Only `Who::Open` has no owner, and it is an admin: never reached.
            None => TaskScope::Owner(String::new()),
        }
    }

    /// Whether it may call this agent. Decided on the id alone, before the agent is looked
    /// up, so an agent that does not exist and one that is not allowed answer alike.
    pub fn may_call(&self, agent_id: &str) -> bool {
        self.agents.as_ref().is_none_or(|list| list.iter().any(|a| a == agent_id))
    }

    fn of_key(key: &ApiKey) -> Principal {
        Principal {
            who: Who::Key(key.id.clone()),
            admin: key.role == KeyRole::Admin,
            agents: (!key.agents.is_empty()).then(|| key.agents.clone().into()),
        }
    }
}

/// The tasks a principal sees ([`Principal::task_scope`]). Another caller's task answers
/// exactly like a missing one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskScope {
    All,
    /// Only tasks recorded with this owner.
    Owner(String),
}

impl TaskScope {
    /// Whether a task recorded with `owner` is visible.
    pub fn sees(&self, owner: Option<&str>) -> bool {
        match self {
            TaskScope::All => true,
            TaskScope::Owner(mine) => owner == Some(mine.as_str()),
        }
    }

    /// The owner to filter by, `None` for every task.
    pub fn owner(&self) -> Option<&str> {
        match self {
            TaskScope::All => None,
            TaskScope::Owner(o) => Some(o),
        }
    }
}

/// Whether a route (its template, or its path for [`PUBLIC_PREFIXES`]) is open to anyone.
pub fn is_public(config: &AuthSection, route: &str, path: &str) -> bool {
    PUBLIC_ROUTES.contains(&route)
        || (route == "/metrics" && config.metrics_public)
        || PUBLIC_PREFIXES.iter().any(|p| path.starts_with(p))
}

/// Whether a route is for operators only.
pub fn is_admin_route(route: &str) -> bool {
    ADMIN_ROUTES.contains(&route)
}

/// The control plane needs an admin; an A2A method any authenticated caller.
pub fn authorize_method(principal: &Principal, control_plane: bool) -> Result<(), RpcError> {
    if control_plane && !principal.admin {
        return Err(forbidden());
    }
    Ok(())
}

/// The one answer for a credential that may not make a call, whatever the reason.
pub fn forbidden() -> RpcError {
    RpcError::PermissionDenied("this credential may not make this call".into())
}

/// The credential checks of this node.
pub struct Auth {
    required: bool,
    admin_hash: Option<[u8; 32]>,
    jwt: Option<jwt::Verifier>,
}

impl Auth {
    pub fn new(config: &AuthSection) -> anyhow::Result<Auth> {
        let admin_hash = (!config.admin_token.is_empty()).then(|| keys::hash(&config.admin_token));
        Ok(Auth { required: config.required(), admin_hash, jwt: verifier(config)? })
    }

    /// Whether calls need credentials.
    pub fn required(&self) -> bool {
        self.required
    }

    /// Starts fetching the JWT key set, if one is configured.
    pub fn start(&self) {
        if let Some(jwks) = self.jwt.as_ref().and_then(|v| v.jwks.as_ref()) {
            jwks.spawn_refresher();
        }
    }

    /// The principal a request's credentials name. `find_key` reads an API key by id from
    /// this node's applied state (so a revoked key fails here once its revocation is applied).
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        find_key: impl FnOnce(&str) -> Option<ApiKey>,
    ) -> Result<Principal, RpcError> {
        if !self.required {
            return Ok(Principal::open());
        }
        let Some(credential) = credential(headers) else {
            return Err(RpcError::Unauthenticated(
                "credentials required: send X-API-Key: <key> or Authorization: Bearer <key or token>".into(),
            ));
        };
        let presented = keys::hash(credential);
        if let Some(id) = keys::id_of(credential) {
            return match find_key(id) {
                Some(key) if keys::hashes_equal(&key.hash, &presented) => Ok(Principal::of_key(&key)),
                _ => Err(invalid()),
            };
        }
        if self.admin_hash.is_some_and(|h| keys::hashes_equal(&h, &presented)) {
            return Ok(Principal { who: Who::AdminToken, admin: true, agents: None });
        }
        self.authenticate_jwt(credential).await
    }

    async fn authenticate_jwt(&self, token: &str) -> Result<Principal, RpcError> {
        let Some(verifier) = &self.jwt else {
            return Err(invalid());
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        match verifier.verify(token, now).await {
            Ok(v) => {
                Ok(Principal { who: Who::Jwt { issuer: v.issuer, subject: v.subject }, admin: v.admin, agents: None })
            }
            Err(jwt::JwtError::Expired) => Err(RpcError::Unauthenticated("the token has expired".into())),
            Err(e) => {
                tracing::debug!(reason = %e, "JWT refused");
                Err(invalid())
            }
        }
    }
}

fn invalid() -> RpcError {
    RpcError::Unauthenticated("invalid credentials".into())
}

/// The credential a request carries: `X-API-Key`, else a bearer token.
fn credential(headers: &HeaderMap) -> Option<&str> {
    let value = |name| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
    if let Some(key) = value(API_KEY_HEADER) {
        return Some(key);
    }
    let auth = value(header::AUTHORIZATION.as_str())?;
    let (scheme, token) = auth.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// The JWT verifier `auth.jwt_*` describe, if any JWT source is configured.
fn verifier(config: &AuthSection) -> anyhow::Result<Option<jwt::Verifier>> {
    let source = match (config.jwks_url.is_empty(), config.jwt_oidc_discovery) {
        (false, _) => Some(jwks::Source::Url(config.jwks_url.clone())),
        (true, true) => Some(jwks::Source::Discovery(config.jwt_issuer.clone())),
        (true, false) => None,
    };
    if source.is_none() && config.jwt_hs256_secret.is_empty() {
        return Ok(None);
    }
    let timing = jwks::Timing {
        refresh: Duration::from_secs(config.jwks_refresh_seconds),
        refetch_min: Duration::from_secs(config.jwks_refetch_min_seconds),
        timeout: Duration::from_millis(config.jwks_timeout_ms),
    };
    let jwks = source.map(|s| jwks::Jwks::new(s, timing)).transpose()?.map(Arc::new);
    Ok(Some(jwt::Verifier {
        hs256_secret: (!config.jwt_hs256_secret.is_empty()).then(|| config.jwt_hs256_secret.as_bytes().to_vec()),
        jwks,
        issuer: config.jwt_issuer.clone(),
        audiences: config.jwt_audiences.clone(),
        leeway_secs: config.jwt_leeway_seconds,
        admin_scope: (!config.jwt_admin_scope.is_empty()).then(|| config.jwt_admin_scope.clone()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn auth() -> Auth {
        let config = AuthSection {
            mode: "required".into(),
            admin_token: "admin-token-0123456789".into(),
            jwt_hs256_secret: "0123456789abcdef0123456789abcdef".into(),
            jwt_issuer: "iss".into(),
            jwt_audiences: vec!["aud".into()],
            ..Default::default()
        };
        Auth::new(&config).unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (header::HeaderName::from_static(k), HeaderValue::from_str(v).unwrap())).collect()
    }

    #[tokio::test]
    async fn credentials_name_principals() {
        let a = auth();
        let k = keys::generate().unwrap();
        let stored = ApiKey {
            id: k.id.clone(),
            hash: keys::hash(&k.key),
            name: "n".into(),
            role: KeyRole::Client,
            agents: vec!["echo".into()],
            created_at_ms: 0,
        };
        let find = |id: &str| (id == stored.id).then(|| stored.clone());
        let p = a.authenticate(&headers(&[("x-api-key", &k.key)]), find).await.unwrap();
        assert_eq!(
            (p.to_string(), p.admin, p.may_call("echo"), p.may_call("other")),
            (format!("key:{}", k.id), false, true, false)
        );
        let bearer = format!("Bearer {}", k.key);
        assert!(a.authenticate(&headers(&[("authorization", &bearer)]), find).await.is_ok());
        let forged = format!("{}x", k.key);
        let e = a.authenticate(&headers(&[("x-api-key", &forged)]), find).await.unwrap_err();
        assert_eq!(e.code(), -32030);
        assert!(a.authenticate(&headers(&[("x-api-key", &k.key)]), |_| None).await.is_err(), "revoked");
        let admin =
            a.authenticate(&headers(&[("authorization", "bearer admin-token-0123456789")]), find).await.unwrap();
        assert_eq!((admin.who, admin.admin), (Who::AdminToken, true));
        assert!(a.authenticate(&HeaderMap::new(), find).await.is_err());
        assert!(a.authenticate(&headers(&[("authorization", "Basic eDp5")]), find).await.is_err());
        let claims = serde_json::json!({"iss": "iss", "aud": "aud", "sub": "bob", "exp": u64::MAX / 2});
        let token = format!("Bearer {}", jwt::tests::hs256(b"0123456789abcdef0123456789abcdef", &claims));
        let p = a.authenticate(&headers(&[("authorization", &token)]), find).await.unwrap();
        assert_eq!((p.to_string(), p.admin), ("jwt:bob@iss".into(), false));
    }

    #[test]
    fn public_and_admin_routes() {
        let mut c = AuthSection::default();
        assert!(is_public(&c, "/agents/{id}/.well-known/agent-card.json", "/agents/a/.well-known/agent-card.json"));
        assert!(is_public(&c, "/metrics", "/metrics"));
        c.metrics_public = false;
        assert!(!is_public(&c, "/metrics", "/metrics"));
        assert!(!is_public(&c, "/agents/{id}/{*rest}", "/agents/a/message:send"));
        assert!(!is_public(&c, "/rpc", "/rpc"));
        assert!(is_admin_route("/cluster"));
        assert!(is_admin_route("/ui/events") && !is_public(&c, "/ui/events", "/ui/events"));
        assert!(is_admin_route("/ui/tasks/{id}") && !is_public(&c, "/ui/tasks/{id}", "/ui/tasks/t"));
        assert!(is_public(&c, "/ui/{file}", "/ui/app.js") && is_public(&c, "/ui", "/ui"));
    }
}
