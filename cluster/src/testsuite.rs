//! Test harnesses shared with the root crate's tests (feature `testsuite`).
//!
//! INTERFACE STUB (to be completed): [`FakeKubeApi`] is a fake Kubernetes API server: HTTPS
//! with a certificate from a test CA it generates, requiring `Authorization: Bearer <token>`,
//! answering `GET /apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices?labelSelector=...`
//! with an `EndpointSliceList` shaped exactly like the real API's.

use std::path::{Path, PathBuf};

/// One endpoint of a fake EndpointSlice. `None` conditions are omitted from the JSON, as the
/// real API does (an absent `ready` means ready).
#[derive(Clone, Debug, Default)]
pub struct FakeEndpoint {
    pub ip: String,
    pub hostname: Option<String>,
    pub ready: Option<bool>,
    pub serving: Option<bool>,
    pub terminating: Option<bool>,
}

/// A running fake API server; it runs on its own thread with its own runtime, so blocking and
/// async tests can both use it. Stopped on drop.
pub struct FakeKubeApi {
    /// `https://127.0.0.1:PORT`
    pub url: String,
    /// PEM of the test CA (written in the directory given to `start`).
    pub ca_file: PathBuf,
    /// The service-account token file (written in the directory given to `start`).
    pub token_file: PathBuf,
}

impl FakeKubeApi {
    /// Starts the server; writes `ca.pem` and `token` (containing `token`) into `dir`.
    pub fn start(_dir: &Path, _token: &str) -> FakeKubeApi {
        todo!()
    }
    /// Replaces the EndpointSlice `name` in `namespace` (labels; one port named `port_name`
    /// with number `port`, protocol UDP; the endpoints).
    pub fn set_slice(
        &self,
        _namespace: &str,
        _name: &str,
        _labels: &[(&str, &str)],
        _port_name: &str,
        _port: u16,
        _endpoints: Vec<FakeEndpoint>,
    ) {
        todo!()
    }
    /// Rotates the token: rewrites the token file; from now on only the new token is accepted.
    pub fn rotate_token(&self, _token: &str) {
        todo!()
    }
    /// Requests served so far: (path with query, whether the bearer was accepted).
    pub fn requests(&self) -> Vec<(String, bool)> {
        todo!()
    }
}
