//! The container UI at `/containers/` (one page for every container: the path after
//! `/containers` names it) and its assets under `/static/`. Everything is compiled into the
//! binary; the page's own small canvas chart code draws CPU, memory, network and filesystem
//! charts from this server's API, refreshed every second. Nothing is fetched from elsewhere.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const PAGE: &str = include_str!("ui/containers.html");

/// The static assets: name, content type, body.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "containers.js",
        "text/javascript; charset=utf-8",
        include_str!("ui/containers.js"),
    ),
    (
        "charts.js",
        "text/javascript; charset=utf-8",
        include_str!("ui/charts.js"),
    ),
    (
        "containers.css",
        "text/css; charset=utf-8",
        include_str!("ui/containers.css"),
    ),
];

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
        .into_response()
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == file) {
        Some((_, ty, body)) => (
            [
                (header::CONTENT_TYPE, *ty),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, format!("no static asset {file:?}\n")).into_response(),
    }
}

/// `/containers/...` and `/static/<asset>`.
pub fn router() -> Router {
    Router::new()
        .route("/containers", get(page))
        .route("/containers/", get(page))
        .route("/containers/{*name}", get(page))
        .route("/static/{file}", get(asset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_references_only_local_assets() {
        for (src, _, _) in ASSETS {
            assert!(
                PAGE.contains(&format!("/static/{src}")),
                "{src} not used by the page"
            );
        }
        for text in std::iter::once(PAGE).chain(ASSETS.iter().map(|a| a.2)) {
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "absolute URL in an asset"
            );
        }
    }
}
