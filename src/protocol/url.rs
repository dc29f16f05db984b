//! Stream names and URLs as clients send them: splitting off query strings, splitting a stream
//! path into app and name, building the `url` hook field, and decoding `%XX` escapes (the
//! one percent-decoder of the server, its load tool and its tests). Pure string functions.

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

/// The one percent-decoder lives beside the hooks' `Location` reading, which decodes a
/// redirect's stream names as a client's.
pub use streamgate_actors::names::{escapes_complete, percent_decode};

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

/// What is escaped in the query of the streamid's resource when it is repeated after
/// `streamid=`: only what would end the query (`#`) or is not allowed in one by RFC 3986
/// (spaces, controls, quotes, angle and square brackets, braces, `|`, `^`, backslash and
/// backtick); `&`, `=` and `%` escapes stay, so its pairs read as the client wrote them.
const RESOURCE_QUERY: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'[')
    .add(b']')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// What is escaped in an SRT streamid put into a URL as the value of `streamid=`: besides the
/// above, what a URL or form parser reads as a delimiter (`&`/`;` end a pair, `+` is a space,
/// `=`/`?` split pairs and queries) and `%` itself. Non-ASCII is escaped as UTF-8 bytes by
/// `utf8_percent_encode` itself.
const STREAMID_VALUE: &AsciiSet = &RESOURCE_QUERY
    .add(b'%')
    .add(b'&')
    .add(b'+')
    .add(b';')
    .add(b'=')
    .add(b'?');

/// The `url` hook field of an SRT caller: `srt://HOST:PORT?streamid=STREAMID`, the streamid
/// percent-encoded as a query value so that every URL parser (WHATWG's `new URL`, Python's
/// `urllib`, Go's `net/url`) reads it as the query and gives it back exactly; a `#` sent by
/// GStreamer, srt-live-transmit or VLC would otherwise start a fragment. The query of the
/// streamid's resource (`r=live/cam?token=abc`), when there is one, follows as `&token=abc`,
/// so a token is found in the URL's query as for RTMP, RTSP and HTTP-FLV.
pub fn srt_url(host_port: &str, streamid: &str, resource_query: &str) -> String {
    let mut url = format!(
        "srt://{host_port}?streamid={}",
        utf8_percent_encode(streamid, STREAMID_VALUE)
    );
    if !resource_query.is_empty() {
        url.push('&');
        url.extend(utf8_percent_encode(resource_query, RESOURCE_QUERY));
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_escapes_decode_once_and_stray_percents_stay() {
        assert_eq!(percent_decode("cam%201%2Cx").as_deref(), Some("cam 1,x"));
        assert_eq!(percent_decode("%2541").as_deref(), Some("%41"));
        assert_eq!(percent_decode("a%2").as_deref(), Some("a%2"));
        assert_eq!(percent_decode("100%").as_deref(), Some("100%"));
        assert_eq!(percent_decode("%zz%41").as_deref(), Some("%zzA"));
        assert_eq!(percent_decode("%C3%A9").as_deref(), Some("\u{e9}"));
        assert_eq!(percent_decode("%ff"), None);
        assert!(escapes_complete("a%20b%2C"));
        assert!(escapes_complete("plain"));
        for stray in ["a%2", "100%", "%zz", "a%%20"] {
            assert!(!escapes_complete(stray), "{stray:?}");
        }
    }

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

    #[test]
    fn an_srt_streamid_is_one_query_value_and_its_token_a_pair() {
        assert_eq!(
            srt_url(
                "10.0.0.5:8890",
                "#!::r=live/cam3?token=abc,m=publish,u=alice",
                "token=abc"
            ),
            "srt://10.0.0.5:8890?streamid=%23!::r%3Dlive/cam3%3Ftoken%3Dabc,m%3Dpublish,u%3Dalice&token=abc"
        );
        assert_eq!(
            srt_url("h:1", "live/cam", ""),
            "srt://h:1?streamid=live/cam"
        );
        assert_eq!(
            srt_url("h:1", "a b&c+d%e\u{e9}\n", "x=1 2#y"),
            "srt://h:1?streamid=a%20b%26c%2Bd%25e%C3%A9%0A&x=1%202%23y"
        );
    }
}
