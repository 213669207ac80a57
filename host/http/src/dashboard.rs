//! The dashboard: one HTML page, a style sheet and two scripts (the page's, and the lattice
//! map and charts), compiled into the binary so it
//! works offline and needs no build step. Everything it shows comes from `/api/v1`, and the
//! script writes all of it as text (its `html` templates escape every value). The files are
//! served with a Content-Security-Policy that runs only these files, in no other site's frame.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("../assets/index.html");
const SCRIPT: &str = include_str!("../assets/dashboard.js");
const MAP_SCRIPT: &str = include_str!("../assets/map.js");
const ROLLOUT_SCRIPT: &str = include_str!("../assets/rollout.js");
const STYLE: &str = include_str!("../assets/dashboard.css");

/// `/`, `/dashboard.js`, `/map.js`, `/rollout.js` and `/dashboard.css`. They carry no data and need no token: the page
/// asks for the token when the API answers 401.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/dashboard.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/map.js",
            get(|| async { asset("text/javascript; charset=utf-8", MAP_SCRIPT) }),
        )
        .route(
            "/rollout.js",
            get(|| async { asset("text/javascript; charset=utf-8", ROLLOUT_SCRIPT) }),
        )
        .route(
            "/dashboard.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
}

/// What the page may do. It loads only its own script and style sheet (the assets hold no
/// inline script or style, so markup that slipped past escaping could not run any), talks
/// only to its own server, and may not be framed by another site, which could otherwise lay
/// its page over the Deploy button (also `X-Frame-Options` below, for older browsers).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // A new trellis binary brings new assets: never keep old ones.
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_FRAME_OPTIONS, "DENY"),
            // Each file is only what its Content-Type says.
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // Where the dashboard runs (an internal address, a token-guarded port) is no
            // business of any site a link on it leads to.
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The policy allows no inline script or style: the page must need none.
    #[test]
    fn the_page_has_no_inline_script_or_style() {
        let page = INDEX.to_ascii_lowercase();
        for (at, _) in page.match_indices("<script") {
            let tag = &page[at..at + page[at..].find('>').expect("a closed tag")];
            assert!(tag.contains(" src="), "an inline script: {tag}");
        }
        for inline in [
            "<style",
            " style=",
            " onclick=",
            " onload=",
            " onerror=",
            "javascript:",
        ] {
            assert!(!page.contains(inline), "the page holds `{inline}`");
        }
        // Markup the script writes is in its templates: no inline handlers or styles there.
        for inline in [" style=", " onclick=", " onerror=", "javascript:"] {
            assert!(!SCRIPT.contains(inline), "the script writes `{inline}`");
        }
    }
}
