//! Entry points for the fuzz targets in `fuzz/`: the request decoders that are private to their
//! handlers. Built only under `cfg(fuzzing)`, which `cargo fuzz` sets; the server never calls them.

use tessera_proto as proto;

use super::form::Form;
use super::{admin, introspect, token};
use crate::refusal::Refusal;

/// Parses a `/token` body as the handler does; returns the refusal a bad form gets.
pub fn token_form(body: &[u8]) -> Result<(), Refusal> {
    let form = Form::parse(body)?;
    token::parse(&form).map(|_| ())
}

/// Returns the `token` parameter of an `/introspect` or `/revoke` body, or its refusal.
pub fn introspect_form(body: &[u8]) -> Result<String, Refusal> {
    introspect::token_param(body)
}

/// Checks a `RevokeRequest`'s selector as `Admin/Revoke` does.
pub fn revoke_selector(request: &proto::RevokeRequest) -> Result<(), Refusal> {
    admin::selector(request).map(|_| ())
}

/// Checks a `ListCredentialsRequest` as `Admin/ListCredentials` does.
pub fn list_params(request: &proto::ListCredentialsRequest) -> Result<(), Refusal> {
    admin::list_params(request).map(|_| ())
}
