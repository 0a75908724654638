//! JSON body edits of a route's `transform` (`body = { ... }`): set, remove and rename
//! fields by JSON Pointer, wrap or unwrap an object, within a size bound.
//!
//! Placeholder: the body edit is being built; its config is refused until it lands.

use serde::Deserialize;
use toml::Spanned;

use super::template::Scope;
use crate::settings::Ctx;

/// A transform's `body`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileBody {}

/// A compiled body edit.
#[derive(Debug)]
pub struct BodyEdit {}

/// Compiles a `body` section.
pub fn build(
    ctx: &mut Ctx,
    file: &Spanned<FileBody>,
    key: &str,
    _scope: Scope<'_>,
) -> Option<BodyEdit> {
    ctx.error(file.span(), key, "JSON body edits are not available yet");
    None
}
