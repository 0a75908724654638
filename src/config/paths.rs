//! `[server.paths]`: how request paths are normalised before routing (`http1::path`). The
//! defaults are the safe ones: merge slashes, refuse escaped slashes.

use serde::Deserialize;
use toml::Spanned;

use crate::http1::path::{EscapedSlashes, PathRules};
use crate::settings::Ctx;

/// `[server.paths]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePaths {
    pub merge_slashes: Option<bool>,
    pub escaped_slashes: Option<Spanned<String>>,
}

pub(super) fn build(ctx: &mut Ctx, file: &FilePaths) -> PathRules {
    let defaults = PathRules::default();
    let escaped_slashes = match file
        .escaped_slashes
        .as_ref()
        .map(|v| (v, v.get_ref().as_str()))
    {
        None => defaults.escaped_slashes,
        Some((_, "reject")) => EscapedSlashes::Reject,
        Some((_, "keep")) => EscapedSlashes::Keep,
        Some((_, "decode")) => EscapedSlashes::Decode,
        Some((v, other)) => {
            ctx.error(
                v.span(),
                "server.paths.escaped_slashes",
                format!("unknown value \"{other}\": expected \"reject\", \"keep\" or \"decode\""),
            );
            defaults.escaped_slashes
        }
    };
    PathRules {
        merge_slashes: file.merge_slashes.unwrap_or(defaults.merge_slashes),
        escaped_slashes,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{load_errors, load_str};
    use crate::http1::path::{EscapedSlashes, PathRules};

    const SERVER: &str = "[server]\nlisten = [\"127.0.0.1:1\"]\n";

    #[test]
    fn defaults_and_values() {
        let rules = |table: &str| {
            load_str(&format!("{SERVER}{table}"), "t.toml")
                .unwrap()
                .server
                .paths
        };
        assert_eq!(rules(""), PathRules::default());
        assert_eq!(
            rules("[server.paths]\nmerge_slashes = false\nescaped_slashes = \"decode\"\n"),
            PathRules {
                merge_slashes: false,
                escaped_slashes: EscapedSlashes::Decode
            }
        );
        assert_eq!(
            rules("[server.paths]\nescaped_slashes = \"keep\"\n").escaped_slashes,
            EscapedSlashes::Keep
        );
    }

    #[test]
    fn errors_name_the_key() {
        assert_eq!(
            load_errors(&format!("{SERVER}[server.paths]\nescaped_slashes = \"allow\"\n")),
            ["t.toml:4:19: server.paths.escaped_slashes: unknown value \"allow\": expected \"reject\", \"keep\" or \"decode\""]
        );
        let typo = load_errors(&format!("{SERVER}[server.paths]\nmerge_slash = true\n"));
        assert!(typo[0].contains("merge_slash"), "{typo:?}");
    }
}
