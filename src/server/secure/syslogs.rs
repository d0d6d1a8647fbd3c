//! `/logs/`: the node's log directory (`/var/log`), as the kubelet's system log handler serves
//! it — a directory as an HTML listing, a file as its bytes, streamed. A path with a `..`
//! segment is refused (400 `invalid URL path`), and so is any path that resolves outside the
//! directory through a symlink (404), unlike Go's `http.Dir`, which follows them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

pub fn routes(root: PathBuf) -> Router {
    let root = Arc::new(root);
    Router::new()
        .route("/logs", get(redirect))
        .route("/logs/", get(serve))
        .route("/logs/{*path}", get(serve))
        .with_state(root)
}

async fn redirect() -> Response {
    (
        StatusCode::MOVED_PERMANENTLY,
        [(header::LOCATION, "/logs/")],
        "",
    )
        .into_response()
}

fn text(code: StatusCode, msg: &str) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{msg}\n"),
    )
        .into_response()
}

/// Where a request path points below `root`: `Err` for a `..` segment or an undecodable path.
pub fn relative(path: &str) -> Result<PathBuf, &'static str> {
    let rest = path.strip_prefix("/logs").unwrap_or(path);
    let decoded: Vec<u8> = crate::percent::decode(rest).ok_or("invalid URL escape")?;
    let decoded = String::from_utf8(decoded).map_err(|_| "invalid URL path")?;
    if decoded.contains('\0') {
        return Err("invalid URL path");
    }
    let mut out = PathBuf::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => return Err("invalid URL path"),
            s => out.push(s),
        }
    }
    Ok(out)
}

/// The real path of `rel` under `root`, if it stays there after symlinks are resolved.
fn resolve(root: &Path, rel: &Path) -> Option<PathBuf> {
    let root = root.canonicalize().ok()?;
    let full = root.join(rel).canonicalize().ok()?;
    full.starts_with(&root).then_some(full)
}

async fn serve(State(root): State<Arc<PathBuf>>, uri: Uri) -> Response {
    let rel = match relative(uri.path()) {
        Ok(r) => r,
        Err(msg) => return text(StatusCode::BAD_REQUEST, msg),
    };
    let root = root.clone();
    let dir_request = uri.path().ends_with('/');
    let found = tokio::task::spawn_blocking(move || {
        let full = resolve(&root, &rel)?;
        let meta = std::fs::metadata(&full).ok()?;
        Some((full, meta))
    })
    .await
    .ok()
    .flatten();
    let Some((full, meta)) = found else {
        return text(StatusCode::NOT_FOUND, "404 page not found");
    };
    if meta.is_dir() {
        if !dir_request {
            let to = format!("{}/", uri.path());
            return (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, to)], "").into_response();
        }
        return listing(full).await;
    }
    if dir_request {
        return text(StatusCode::NOT_FOUND, "404 page not found");
    }
    match tokio::fs::File::open(&full).await {
        Ok(f) => {
            let stream = tokio_util::io::ReaderStream::new(f);
            (
                [
                    (
                        header::CONTENT_TYPE,
                        "text/plain; charset=utf-8".to_string(),
                    ),
                    (header::CONTENT_LENGTH, meta.len().to_string()),
                ],
                axum::body::Body::from_stream(stream),
            )
                .into_response()
        }
        Err(e) => text(StatusCode::FORBIDDEN, &format!("cannot open the file: {e}")),
    }
}

/// The directory as Go's file server lists it: sorted names, directories with a trailing slash.
async fn listing(dir: PathBuf) -> Response {
    let names = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<String>> {
        let mut names = Vec::new();
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            let mut name = e.file_name().to_string_lossy().into_owned();
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                name.push('/');
            }
            names.push(name);
        }
        names.sort();
        Ok(names)
    })
    .await;
    let names = match names {
        Ok(Ok(n)) => n,
        _ => return text(StatusCode::INTERNAL_SERVER_ERROR, "Error reading directory"),
    };
    let mut body = String::from("<pre>\n");
    for n in names {
        let href: String = n
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let shown = n
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&#34;")
            .replace('\'', "&#39;");
        body.push_str(&format!("<a href=\"{href}\">{shown}</a>\n"));
    }
    body.push_str("</pre>\n");
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    async fn get(app: &Router, path: &str) -> (StatusCode, String) {
        let req = axum::http::Request::get(path)
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let code = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (code, String::from_utf8_lossy(&body).into())
    }

    #[tokio::test]
    async fn serves_the_directory_and_nothing_outside_it() {
        let top = tempfile::tempdir().unwrap();
        let root = top.path().join("log");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("syslog"), "line one\n").unwrap();
        std::fs::write(top.path().join("secret"), "nope").unwrap();
        std::os::unix::fs::symlink(top.path().join("secret"), root.join("escape")).unwrap();
        std::os::unix::fs::symlink(root.join("syslog"), root.join("inside")).unwrap();
        let app = routes(root);
        let (code, body) = get(&app, "/logs/").await;
        assert_eq!(code, StatusCode::OK);
        assert!(body.contains("<a href=\"syslog\">syslog</a>"), "{body}");
        assert!(body.contains("<a href=\"sub/\">sub/</a>"), "{body}");
        assert_eq!(
            get(&app, "/logs/syslog").await,
            (StatusCode::OK, "line one\n".into())
        );
        assert_eq!(get(&app, "/logs/inside").await.0, StatusCode::OK);
        assert_eq!(get(&app, "/logs/escape").await.0, StatusCode::NOT_FOUND);
        for bad in [
            "/logs/../secret",
            "/logs/%2e%2e/secret",
            "/logs/sub/../../secret",
            "/logs/%2E%2E%2Fsecret",
        ] {
            assert_eq!(get(&app, bad).await.0, StatusCode::BAD_REQUEST, "{bad}");
        }
        assert_eq!(get(&app, "/logs/nothing").await.0, StatusCode::NOT_FOUND);
        assert_eq!(
            get(&app, "/logs/sub").await.0,
            StatusCode::MOVED_PERMANENTLY
        );
        assert_eq!(get(&app, "/logs/%zz").await.0, StatusCode::BAD_REQUEST);
    }
}
