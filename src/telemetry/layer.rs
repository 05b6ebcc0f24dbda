//! The middleware every public HTTP request passes through first (`http::router` adds it
//! after routing, so the route template is known).
//!
//! It gives the request its id and trace context ([`super::trace`]), runs the handler inside
//! a span carrying them (so every log line of the request names them), puts the
//! [`TraceContext`] into the request's extensions for the handlers (agent calls continue the
//! trace), answers `x-request-id`, and counts the request by route, method and status.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{counter, histogram};
use tracing::Instrument;

use super::metrics::{HTTP_REQUEST_SECONDS, HTTP_REQUESTS};
use super::trace::{self, TraceContext, X_REQUEST_ID};

/// The route label of a request no route matched (a 404): one series for all of them.
const UNMATCHED: &str = "unmatched";

pub async fn middleware(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().map_or(UNMATCHED, |p| p.as_str()).to_owned();
    let method = method_label(request.method());
    let request_id = trace::request_id(request.headers());
    let context = TraceContext::from_headers(request.headers());
    // At ERROR level so the span exists whatever the log level: a warning logged at
    // `LOG_LEVEL=warn` still names its request.
    let span = tracing::error_span!(
        "request",
        request_id = %request_id,
        trace_id = %context.trace_id_hex(),
        span_id = %context.span_id_hex(),
        method,
        route = %route,
        // Who the request is made by (`auth::Principal`: a key id, a JWT subject, never a
        // credential), recorded once authenticated.
        principal = tracing::field::Empty,
    );
    request.extensions_mut().insert(context);
    let mut response = next.run(request).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }
    let status = response.status().as_u16().to_string();
    counter!(HTTP_REQUESTS, "route" => route.clone(), "method" => method, "status" => status).increment(1);
    histogram!(HTTP_REQUEST_SECONDS, "route" => route, "method" => method).record(started.elapsed().as_secs_f64());
    response
}

/// The method as a label; methods outside the standard set share one, so a client cannot
/// make new series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}
