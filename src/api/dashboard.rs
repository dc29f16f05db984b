//! The dashboard at `GET /`: one page and its script, built into the binary (no CDN, no build
//! step at run time), and mpegts.js 1.8.2 (Apache-2.0, `dashboard/mpegts.js.LICENSE`), which
//! plays a stream's HTTP-FLV in the page.

use actix_web::http::header;
use actix_web::HttpResponse;

const PAGE: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/app.js");
const MPEGTS: &str = include_str!("dashboard/mpegts.js");

fn asset(body: &'static str, content_type: &str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

/// `GET /`.
pub async fn page() -> HttpResponse {
    asset(PAGE, "text/html; charset=utf-8")
}

/// `GET /dashboard/app.js`.
pub async fn script() -> HttpResponse {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

/// `GET /dashboard/mpegts.js`.
pub async fn player() -> HttpResponse {
    asset(MPEGTS, "text/javascript; charset=utf-8")
}
