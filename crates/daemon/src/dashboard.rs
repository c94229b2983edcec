//! The web dashboard: a static page (HTML, CSS, JavaScript, one SVG icon)
//! compiled into the binary and served at `/` and `/ui/{file}`.
//!
//! Authentication design: these routes are public, every route they read
//! is not. The page shell holds no data at all; its script gets the bearer
//! token from the URL fragment (`/#token=...`, which browsers never send to
//! the server and the script removes from the address bar at once) or from
//! a form where the operator pastes it, keeps it in `sessionStorage` (this
//! tab only, gone when the tab closes) and sends it as `Authorization:
//! Bearer` on each API call, like any other client. No cookie is involved,
//! so the API's auth middleware stays the only check, and a forged
//! cross-site request carries no credential (no CSRF). The
//! Content-Security-Policy lets the page load its own scripts and styles
//! and talk to its own origin only: no external request of any kind, no
//! inline script, no framing.

use axum::extract::Path;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// The dashboard's public routes (no token: they serve no data).
pub const ROUTES: &[(&str, &str)] = &[("get", "/"), ("get", "/ui/{file}")];

/// The page shell.
pub const INDEX_HTML: &str = include_str!("../ui/index.html");

/// Every asset under `/ui/`: file name, content type, bytes.
pub const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../ui/app.js"),
    ),
    (
        "panels.js",
        "text/javascript; charset=utf-8",
        include_str!("../ui/panels.js"),
    ),
    (
        "plot.js",
        "text/javascript; charset=utf-8",
        include_str!("../ui/plot.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../ui/style.css"),
    ),
    ("icon.svg", "image/svg+xml", include_str!("../ui/icon.svg")),
];

/// Same origin only, no inline code, no framing: the page makes no request
/// beyond its own daemon.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The dashboard's routes, to merge beside the API's.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/ui/{file}", get(asset))
}

fn page(content_type: &'static str, body: &'static str) -> Response {
    let headers: [(HeaderName, HeaderValue); 5] = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        // A new binary may bring new assets: revalidate (they are small).
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    (headers, body).into_response()
}

async fn index() -> Response {
    page("text/html; charset=utf-8", INDEX_HTML)
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => page(content_type, body),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({
                "code": "not_found",
                "message": format!("no dashboard asset {file:?}"),
            })),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_the_page_names_is_served() {
        for (name, _, _) in ASSETS {
            if *name == "panels.js" || *name == "plot.js" {
                // Imported by app.js, not named by the page.
                continue;
            }
            assert!(INDEX_HTML.contains(&format!("/ui/{name}")), "{name}");
        }
        for import in ["./panels.js", "./plot.js"] {
            assert!(ASSETS.iter().any(|(_, _, body)| body.contains(import)));
        }
    }

    #[test]
    fn no_asset_reaches_beyond_its_origin() {
        let bodies = std::iter::once(INDEX_HTML).chain(ASSETS.iter().map(|(_, _, b)| *b));
        for body in bodies {
            for scheme in ["http://", "https://", "//cdn", "@import"] {
                // The SVG namespace URI is a name, not a request.
                let stripped = body.replace("http://www.w3.org/2000/svg", "");
                assert!(!stripped.contains(scheme), "an asset names {scheme}");
            }
            assert!(!body.contains("<script>"), "inline script");
        }
    }
}
