//! Stream names and URLs as clients send them: splitting off query strings, splitting a stream
//! path into app and name, and building the `url` hook field. Pure string functions.

/// Splits `name?query` into the name and the query (without `?`; empty when none).
pub fn split_query(s: &str) -> (&str, &str) {
    match s.split_once('?') {
        Some((name, query)) => (name, query),
        None => (s, ""),
    }
}

/// The full URL of a play or publish: the tcUrl, `/`, and the stream name as sent (query
/// included). A query on the tcUrl itself moves after the stream name. Empty when the client
/// sent no tcUrl: the URL is never invented from the socket address.
pub fn stream_url(tcurl: &str, stream_name: &str) -> String {
    if tcurl.is_empty() {
        return String::new();
    }
    let (base, tc_query) = split_query(tcurl);
    let (name, name_query) = split_query(stream_name);
    let mut url = format!("{}/{}", base.trim_end_matches('/'), name);
    let queries: Vec<&str> = [name_query, tc_query]
        .into_iter()
        .filter(|q| !q.is_empty())
        .collect();
    if !queries.is_empty() || stream_name.contains('?') {
        url.push('?');
        url.push_str(&queries.join("&"));
    }
    url
}

/// The app and stream name of a stream path (`live/a/b`, without query; one leading `/` is
/// allowed): the last segment is the name, every segment before it the app (`live/a`, `b`).
/// This is the one rule of every protocol: RTSP and HTTP-FLV paths, SRT resources, and what
/// RTMP clients such as FFmpeg send as app and stream name for `rtmp://host/live/a/b`. `None`
/// when the name or any segment of the app is empty (`live`, `live/`, `/b`, `live//b`).
pub fn app_and_name(path: &str) -> Option<(&str, &str)> {
    let path = path.strip_prefix('/').unwrap_or(path);
    let (app, name) = path.rsplit_once('/')?;
    (!name.is_empty() && !app.split('/').any(str::is_empty)).then_some((app, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_queries() {
        assert_eq!(split_query("cam1?token=abc&x=1"), ("cam1", "token=abc&x=1"));
        assert_eq!(split_query("cam1"), ("cam1", ""));
        assert_eq!(split_query("cam1?"), ("cam1", ""));
        assert_eq!(split_query("?a=b"), ("", "a=b"));
    }

    #[test]
    fn url_is_tcurl_slash_name_with_query() {
        assert_eq!(
            stream_url("rtmp://h:1935/live", "cam1?token=abc"),
            "rtmp://h:1935/live/cam1?token=abc"
        );
        assert_eq!(stream_url("rtmp://h/live/", "cam1"), "rtmp://h/live/cam1");
        assert_eq!(
            stream_url("rtmp://h/live?vhost=a", "cam1?token=b"),
            "rtmp://h/live/cam1?token=b&vhost=a"
        );
        assert_eq!(stream_url("", "cam1"), "");
    }

    #[test]
    fn the_last_segment_is_the_name() {
        assert_eq!(app_and_name("live/cam1"), Some(("live", "cam1")));
        assert_eq!(app_and_name("/live/cam1"), Some(("live", "cam1")));
        assert_eq!(app_and_name("live/a/b"), Some(("live/a", "b")));
        assert_eq!(app_and_name("a/b/c/d"), Some(("a/b/c", "d")));
        for bad in [
            "", "live", "live/", "/cam1", "//cam1", "live//b", "live/a/", "/",
        ] {
            assert_eq!(app_and_name(bad), None, "{bad:?}");
        }
    }
}
