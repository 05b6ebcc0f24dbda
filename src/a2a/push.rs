//! Push notification configs and webhook payloads on the wire.
//!
//! A config arrives in one of three shapes, all read into [`ConfigRequest`] (the 1.0 model):
//! 1.0 `TaskPushNotificationConfig` (`{id, taskId, url, token, authentication{scheme,
//! credentials}}`, flat), 0.3 (`{taskId, pushNotificationConfig{id, url, token,
//! authentication{schemes[], credentials}}}`), and SuperX's (`{taskId, config{url, token}}`,
//! or a bare URL in `metadata.webhook`). Configs go back to their creator in the shape of the
//! method family they used, token and credentials included (the spec returns the config to
//! its creator; nothing else ever shows them). Webhook payloads are the 1.0 `StreamResponse`
//! of one committed change, or its 0.3 form for configs set by 0.3 clients.

use serde_json::{Map, Value, json};

use super::task::{TaskView, change_to_wire, task_result, task_to_wire};
use super::v03::{WireError, err, object};
use crate::state::push::{OutboxChange, OutboxEvent};
use crate::state::{PushAuth, PushFormat, StoredPushConfig, TaskChange};

/// Longest webhook URL accepted.
pub const URL_BYTES_MAX: usize = 2048;
/// Longest token, scheme or credentials accepted.
pub const SECRET_BYTES_MAX: usize = 4096;
/// Longest config id accepted.
pub const ID_BYTES_MAX: usize = 256;

/// A config as a client gave it, in the 1.0 model.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfigRequest {
    pub id: Option<String>,
    /// Absent in a message's per-request config (the task does not exist yet).
    pub task_id: Option<String>,
    pub url: String,
    pub token: Option<String>,
    pub auth: Vec<PushAuth>,
}

impl std::fmt::Debug for ConfigRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigRequest")
            .field("id", &self.id)
            .field("task_id", &self.task_id)
            .field("url", &self.url)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// Which family a push method was called in: the shape of its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    V10,
    V03,
    /// SuperX's dotted names: the 1.0 flat config plus its delivery status; list answers an
    /// array and delete `true`.
    SuperX,
}

fn string(map: &mut Map<String, Value>, key: &str, max: usize) -> Result<Option<String>, WireError> {
    match map.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() > max => Err(err(format!("{key} is longer than {max} bytes"))),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(err(format!("{key} must be a string"))),
    }
}

fn url(map: &mut Map<String, Value>) -> Result<String, WireError> {
    let url = string(map, "url", URL_BYTES_MAX)?.filter(|u| !u.is_empty()).ok_or_else(|| err("url is required"))?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(err(format!("url {url:?} must start with http:// or https://")));
    }
    Ok(url)
}

/// A scheme with credentials goes into `Authorization` as given; `Bearer` without
/// credentials asks the gateway for a JWT signed with its own key (verified with its JWKS).
fn scheme_auth(scheme: String, credentials: Option<String>) -> PushAuth {
    match credentials.filter(|c| !c.is_empty()) {
        None if scheme.eq_ignore_ascii_case("bearer") => PushAuth::GatewayJwt,
        credentials => PushAuth::Scheme { scheme, credentials },
    }
}

/// A 1.0 `AuthenticationInfo` (`{scheme, credentials}`).
fn auth_from_v10(value: Option<Value>) -> Result<Vec<PushAuth>, WireError> {
    let Some(value) = value.filter(|v| !v.is_null()) else { return Ok(vec![]) };
    let mut a = object(value, "authentication")?;
    let scheme = string(&mut a, "scheme", SECRET_BYTES_MAX)?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| err("authentication.scheme is required"))?;
    let credentials = string(&mut a, "credentials", SECRET_BYTES_MAX)?;
    Ok(vec![scheme_auth(scheme, credentials)])
}

/// A 0.3 `PushNotificationAuthenticationInfo` (`{schemes[], credentials}`): the first scheme.
fn auth_from_v03(value: Option<Value>) -> Result<Vec<PushAuth>, WireError> {
    let Some(value) = value.filter(|v| !v.is_null()) else { return Ok(vec![]) };
    let mut a = object(value, "authentication")?;
    let scheme = match a.remove("schemes") {
        Some(Value::Array(schemes)) => schemes.into_iter().next(),
        None | Some(Value::Null) => None,
        Some(_) => return Err(err("authentication.schemes must be an array")),
    };
    let scheme = match scheme {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= SECRET_BYTES_MAX => s,
        _ => return Err(err("authentication.schemes needs a scheme")),
    };
    let credentials = string(&mut a, "credentials", SECRET_BYTES_MAX)?;
    Ok(vec![scheme_auth(scheme, credentials)])
}

/// A 1.0 `TaskPushNotificationConfig` (also a message's per-request config). Gateway members
/// (`agentId`, `tenant`) are ignored.
pub fn config_from_v10(value: Value) -> Result<ConfigRequest, WireError> {
    let mut c = object(value, "push notification config")?;
    Ok(ConfigRequest {
        id: string(&mut c, "id", ID_BYTES_MAX)?.filter(|s| !s.is_empty()),
        task_id: string(&mut c, "taskId", ID_BYTES_MAX)?.filter(|s| !s.is_empty()),
        url: url(&mut c)?,
        token: string(&mut c, "token", SECRET_BYTES_MAX)?,
        auth: auth_from_v10(c.remove("authentication"))?,
    })
}

/// A 0.3 `PushNotificationConfig` (`{id, url, token, authentication}`), as in a message's
/// configuration.
pub fn inner_from_v03(value: Value) -> Result<ConfigRequest, WireError> {
    let mut c = object(value, "pushNotificationConfig")?;
    Ok(ConfigRequest {
        id: string(&mut c, "id", ID_BYTES_MAX)?.filter(|s| !s.is_empty()),
        task_id: None,
        url: url(&mut c)?,
        token: string(&mut c, "token", SECRET_BYTES_MAX)?,
        auth: auth_from_v03(c.remove("authentication"))?,
    })
}

/// A 0.3 `TaskPushNotificationConfig` (`{taskId, pushNotificationConfig}`).
pub fn config_from_v03(value: Value) -> Result<ConfigRequest, WireError> {
    let mut p = object(value, "params")?;
    let task_id = string(&mut p, "taskId", ID_BYTES_MAX)?;
    let inner = p.remove("pushNotificationConfig").ok_or_else(|| err("pushNotificationConfig is required"))?;
    Ok(ConfigRequest { task_id, ..inner_from_v03(inner)? })
}

/// SuperX's config (`{url, token}`, the value of `config`, `pushNotificationConfig` or
/// `metadata.webhook`), or a bare URL string. Its signing keys are refused until they are
/// built, rather than silently ignored.
pub fn config_from_superx(value: Value) -> Result<ConfigRequest, WireError> {
    let value = match value {
        Value::String(url) => json!({ "url": url }),
        other => other,
    };
    let mut c = object(value, "config")?;
    let mut auth = auth_from_v10(c.remove("authentication"))?;
    auth.extend(superx_signing(&mut c)?);
    if auth.len() > 1 && auth.iter().filter(|a| !matches!(a, PushAuth::Hmac { .. })).count() > 1 {
        return Err(err("authentication and jwtSecret both set Authorization: give one"));
    }
    Ok(ConfigRequest {
        id: string(&mut c, "id", ID_BYTES_MAX)?.filter(|s| !s.is_empty()),
        task_id: string(&mut c, "taskId", ID_BYTES_MAX)?.filter(|s| !s.is_empty()),
        url: url(&mut c)?,
        token: string(&mut c, "token", SECRET_BYTES_MAX)?,
        auth,
    })
}

/// SuperX's signing keys: `hmacSecret`, and `jwtSecret` with `jwtIssuer`, `jwtAudience`,
/// `jwtKid` (claims without a secret are refused: they would sign nothing). Empty strings
/// count as absent, as in SuperX.
fn superx_signing(c: &mut Map<String, Value>) -> Result<Vec<PushAuth>, WireError> {
    let mut take = |key: &str| string(c, key, SECRET_BYTES_MAX).map(|v| v.filter(|s| !s.is_empty()));
    let hmac = take("hmacSecret")?;
    let (jwt, issuer, audience, kid) = (take("jwtSecret")?, take("jwtIssuer")?, take("jwtAudience")?, take("jwtKid")?);
    let mut auth = Vec::new();
    if let Some(secret) = hmac {
        auth.push(PushAuth::Hmac { secret });
    }
    match jwt {
        Some(secret) => auth.push(PushAuth::JwtHs256 { secret, issuer, audience, kid }),
        None if issuer.is_some() || audience.is_some() || kid.is_some() => {
            return Err(err("jwtIssuer, jwtAudience and jwtKid need jwtSecret"));
        }
        None => {}
    }
    Ok(auth)
}

/// The gateway's own webhook for a task, as it registers it with a push-capable agent: the
/// 1.0 `TaskPushNotificationConfig` that is the params of CreateTaskPushNotificationConfig.
pub fn gateway_webhook(task_id: &str, config_id: &str, url: &str, token: &str) -> Value {
    json!({"taskId": task_id, "id": config_id, "url": url, "token": token})
}

/// A 1.0 `TaskPushNotificationConfig` as the params of 0.3's
/// `tasks/pushNotificationConfig/set` (`{taskId, pushNotificationConfig}`).
pub fn create_params_to_v03(params: Value) -> Value {
    let Value::Object(mut c) = params else {
        return params;
    };
    let task_id = c.remove("taskId").unwrap_or(Value::Null);
    if let Some(Value::Object(mut a)) = c.remove("authentication") {
        if let Some(scheme) = a.remove("scheme") {
            a.insert("schemes".into(), json!([scheme]));
        }
        c.insert("authentication".into(), Value::Object(a));
    }
    json!({"taskId": task_id, "pushNotificationConfig": c})
}

/// What a push-capable agent POSTs to the gateway's own webhook, as a 1.0 `StreamResponse`:
/// 1.0 agents send a `StreamResponse` (as the SDK does) or a bare `Task`; 0.3 agents a bare
/// Task or event named by its `kind`.
pub fn agent_push_to_v10(body: Value) -> Result<Value, WireError> {
    let Value::Object(members) = &body else {
        return Err(err("a webhook body must be a JSON object"));
    };
    if members.contains_key("kind") {
        return super::v03::result_to_v10(body);
    }
    if ["task", "statusUpdate", "artifactUpdate", "message"].iter().any(|k| members.contains_key(*k)) {
        return Ok(body);
    }
    if members.contains_key("id") && members.contains_key("status") {
        return Ok(json!({ "task": body }));
    }
    Err(err("a webhook body must be a task, a status update or an artifact update"))
}

/// The names of a config's signatures, for SuperX's view (never the secrets).
fn signing_names(auth: &[PushAuth]) -> Vec<&'static str> {
    auth.iter()
        .filter_map(|a| match a {
            PushAuth::Scheme { .. } | PushAuth::GatewayJwt => None,
            PushAuth::Hmac { .. } => Some("hmac-sha256"),
            PushAuth::JwtHs256 { .. } => Some("jwt-hs256"),
        })
        .collect()
}

fn flat(stored: &StoredPushConfig) -> Map<String, Value> {
    let c = &stored.config;
    let mut out = Map::new();
    out.insert("id".into(), json!(c.id));
    out.insert("taskId".into(), json!(c.task_id));
    out.insert("url".into(), json!(c.url));
    if let Some(token) = &c.token {
        out.insert("token".into(), json!(token));
    }
    let bearer = ("Bearer".to_owned(), None);
    let scheme = c.auth.iter().find_map(|a| match a {
        PushAuth::Scheme { scheme, credentials } => Some((scheme, credentials)),
        PushAuth::GatewayJwt => Some((&bearer.0, &bearer.1)),
        _ => None,
    });
    if let Some((scheme, credentials)) = scheme {
        let mut a = json!({ "scheme": scheme });
        if let Some(cred) = credentials {
            a["credentials"] = json!(cred);
        }
        out.insert("authentication".into(), a);
    }
    out
}

/// A stored config for its creator, in the family's shape.
pub fn config_to_wire(stored: &StoredPushConfig, shape: Shape) -> Value {
    let mut out = flat(stored);
    match shape {
        Shape::V10 => Value::Object(out),
        Shape::V03 => {
            let task_id = out.remove("taskId").unwrap_or(Value::Null);
            if let Some(Value::Object(mut a)) = out.remove("authentication") {
                let scheme = a.remove("scheme").unwrap_or(Value::Null);
                a.insert("schemes".into(), json!([scheme]));
                out.insert("authentication".into(), Value::Object(a));
            }
            json!({ "taskId": task_id, "pushNotificationConfig": out })
        }
        Shape::SuperX => {
            let s = &stored.status;
            let mut status = json!({
                "deliveredTotal": s.delivered_total,
                "givenUpTotal": s.given_up_total,
                "attemptsTotal": s.attempts_total,
                "lastEvent": s.cursor,
            });
            if let Some(e) = &s.last_error {
                status["lastError"] = json!(e);
            }
            out.insert("deliveryStatus".into(), status);
            let signing = signing_names(&stored.config.auth);
            if !signing.is_empty() {
                out.insert("signing".into(), json!(signing));
            }
            Value::Object(out)
        }
    }
}

/// A list of a task's configs, in the family's shape.
pub fn config_list_to_wire(configs: Vec<Value>, next_page_token: String, shape: Shape) -> Value {
    match shape {
        Shape::V10 => json!({ "configs": configs, "nextPageToken": next_page_token }),
        Shape::V03 | Shape::SuperX => Value::Array(configs),
    }
}

/// What a delete answers: null (1.0 `Empty` over JSON-RPC, as the SDK answers; 0.3 null),
/// `true` for SuperX.
pub fn deleted(shape: Shape) -> Value {
    match shape {
        Shape::V10 | Shape::V03 => Value::Null,
        Shape::SuperX => json!(true),
    }
}

/// The webhook body for one outbox event of a task.
pub fn payload(task_id: &str, event: &OutboxEvent, format: PushFormat) -> Value {
    let ctx = &event.context_id;
    let v10 = match &event.change {
        OutboxChange::Task(task) => task_result(task_to_wire(task, TaskView::FULL)),
        OutboxChange::Status { status, metadata } => {
            let change = TaskChange::Status { status: status.clone(), metadata: metadata.clone() };
            change_to_wire(task_id, ctx, &change).unwrap_or(Value::Null)
        }
        OutboxChange::Artifact { artifact, append, last_chunk } => {
            let change = TaskChange::Artifact { artifact: artifact.clone(), append: *append, last_chunk: *last_chunk };
            change_to_wire(task_id, ctx, &change).unwrap_or(Value::Null)
        }
    };
    match format {
        PushFormat::V10 => v10,
        PushFormat::V03 => super::v03::result_from_v10(v10),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::a2a::TaskState;
    use crate::state::{PushConfig, PushStatus, TaskStatus};

    fn stored(auth: Vec<PushAuth>) -> StoredPushConfig {
        let config = PushConfig {
            id: "c1".into(),
            task_id: "t1".into(),
            url: "https://hook.example/x".into(),
            token: Some("tok".into()),
            auth,
            format: PushFormat::V10,
        };
        StoredPushConfig { config, status: PushStatus::default(), created_at_ms: 1 }
    }

    #[test]
    fn agent_pushes_read_in_every_shape() {
        let update = json!({"taskId": "t", "contextId": "c", "status": {"state": "TASK_STATE_WORKING"}});
        let wrapped = json!({"statusUpdate": update});
        assert_eq!(agent_push_to_v10(wrapped.clone()).unwrap(), wrapped);
        let task = json!({"id": "t", "contextId": "c", "status": {"state": "TASK_STATE_WORKING"}});
        assert_eq!(agent_push_to_v10(task.clone()).unwrap(), json!({"task": task}));
        let v03 = json!({"kind": "status-update", "taskId": "t", "contextId": "c", "final": false,
            "status": {"state": "working"}});
        assert_eq!(agent_push_to_v10(v03).unwrap(), wrapped);
        assert!(agent_push_to_v10(json!({"hello": 1})).is_err());
        assert!(agent_push_to_v10(json!([1])).is_err());
    }

    #[test]
    fn the_gateway_webhook_reads_in_both_versions() {
        let config = gateway_webhook("t1", "superx", "http://gw/push/inbound/a/t1", "tok");
        let v03 = create_params_to_v03(config.clone());
        assert_eq!(v03["pushNotificationConfig"]["url"], "http://gw/push/inbound/a/t1");
        assert_eq!(config_from_v03(v03).unwrap(), config_from_v10(config).unwrap());
    }

    #[test]
    fn the_three_shapes_read_alike() {
        let v10 = config_from_v10(json!({"taskId": "t1", "id": "c1", "url": "https://h/x", "token": "tok",
            "authentication": {"scheme": "Bearer", "credentials": "s3"}}))
        .unwrap();
        let v03 = config_from_v03(json!({"taskId": "t1", "pushNotificationConfig": {"id": "c1", "url": "https://h/x",
            "token": "tok", "authentication": {"schemes": ["Bearer"], "credentials": "s3"}}}))
        .unwrap();
        assert_eq!(v10, v03);
        let superx = config_from_superx(json!({"taskId": "t1", "id": "c1", "url": "https://h/x", "token": "tok",
            "authentication": {"scheme": "Bearer", "credentials": "s3"}}))
        .unwrap();
        assert_eq!(v10, superx);
        assert_eq!(config_from_superx(json!("http://h/y")).unwrap().url, "http://h/y");
    }

    #[test]
    fn bad_configs_are_refused_with_a_reason() {
        for (bad, needle) in [
            (json!({"taskId": "t"}), "url is required"),
            (json!({"url": "ftp://h"}), "http"),
            (json!({"url": "http://h", "token": 5}), "token must be a string"),
            (json!({"url": "http://h", "authentication": {"credentials": "x"}}), "scheme is required"),
            (json!({"url": format!("http://h/{}", "x".repeat(URL_BYTES_MAX))}), "longer than"),
        ] {
            let e = config_from_v10(bad).unwrap_err();
            assert!(e.0.contains(needle), "{e}");
        }
        let e = config_from_superx(json!({"url": "http://h", "jwtIssuer": "me"})).unwrap_err();
        assert!(e.0.contains("jwtSecret"), "{e}");
        let both = json!({"url": "http://h", "jwtSecret": "k", "authentication": {"scheme": "Bearer"}});
        assert!(config_from_superx(both).unwrap_err().0.contains("Authorization"));
        assert!(config_from_v03(json!({"taskId": "t"})).is_err());
    }

    #[test]
    fn configs_go_back_in_their_family_shape() {
        let s = stored(vec![PushAuth::Scheme { scheme: "Bearer".into(), credentials: Some("s3".into()) }]);
        let v10 = config_to_wire(&s, Shape::V10);
        assert_eq!(
            v10,
            json!({"id": "c1", "taskId": "t1", "url": "https://hook.example/x", "token": "tok",
                "authentication": {"scheme": "Bearer", "credentials": "s3"}})
        );
        let v03 = config_to_wire(&s, Shape::V03);
        assert_eq!(v03["taskId"], "t1");
        assert_eq!(v03["pushNotificationConfig"]["authentication"]["schemes"], json!(["Bearer"]));
        assert_eq!(config_from_v03(v03).unwrap(), config_from_v10(v10).unwrap());
        let superx = config_to_wire(&s, Shape::SuperX);
        assert_eq!(superx["deliveryStatus"]["givenUpTotal"], 0);
        assert_eq!(config_list_to_wire(vec![], String::new(), Shape::V10), json!({"configs": [], "nextPageToken": ""}));
    }

    #[test]
    fn superx_signing_keys_are_kept_and_never_shown() {
        let c = config_from_superx(json!({"url": "http://h", "hmacSecret": "hk", "jwtSecret": "jk",
            "jwtIssuer": "superx", "jwtAudience": "", "jwtKid": "k1"}))
        .unwrap();
        let jwt = PushAuth::JwtHs256 {
            secret: "jk".into(),
            issuer: Some("superx".into()),
            audience: None,
            kid: Some("k1".into()),
        };
        assert_eq!(c.auth, vec![PushAuth::Hmac { secret: "hk".into() }, jwt]);
        let shown = config_to_wire(&stored(c.auth), Shape::SuperX);
        assert_eq!(shown["signing"], json!(["hmac-sha256", "jwt-hs256"]));
        assert!(!shown.to_string().contains("hk") && !shown.to_string().contains("jk"), "{shown}");
    }

    #[test]
    fn debug_output_hides_secrets() {
        let s = stored(vec![PushAuth::Scheme { scheme: "Bearer".into(), credentials: Some("s3cret".into()) }]);
        let text = format!("{s:?} {:?}", config_from_v10(json!({"url": "http://h", "token": "tok3n"})).unwrap());
        assert!(!text.contains("s3cret") && !text.contains("tok3n"), "{text}");
    }

    #[test]
    fn payloads_are_stream_responses_in_the_configs_version() {
        let status = TaskStatus { state: TaskState::Completed, message: None, timestamp: None };
        let event = OutboxEvent { context_id: "c".into(), change: OutboxChange::Status { status, metadata: None } };
        let v10 = payload("t", &event, PushFormat::V10);
        assert_eq!(v10["statusUpdate"]["status"]["state"], "TASK_STATE_COMPLETED");
        let v03 = payload("t", &event, PushFormat::V03);
        assert_eq!((v03["kind"].as_str(), v03["final"].as_bool()), (Some("status-update"), Some(true)));
    }
}
