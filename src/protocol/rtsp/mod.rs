//! RTSP/1.0 server connection core (RFC 2326), sans-IO: bytes in, [`Event`]s and bytes out.
//!
//! [`RtspConnection`] owns one client connection's request handling: keep-alives (OPTIONS,
//! GET_PARAMETER, SET_PARAMETER) are answered here; what needs the application — the first
//! request of the connection (the on_connect hook), ANNOUNCE (on_publish), DESCRIBE and a
//! SETUP or PLAY without one (on_play), SETUP (the transport, since UDP ports are IO), PLAY
//! (`RTP-Info` from the packetizers) — raises an event carrying a [`RequestId`], and input
//! processing stops there until the application calls `accept*` or [`RtspConnection::refuse`],
//! as in the RTMP core: nothing the client sent after the request is acted on before the
//! decision. RTP and RTCP in `$` frames come out as [`Event::Interleaved`]; the application
//! sends them with [`RtspConnection::send_interleaved`].
//!
//! [`message`] frames the byte stream, [`sdp`] reads and writes session descriptions, [`rtp`]
//! converts RTP packets to and from frames of the frame model. Owns no socket (UDP ports
//! included) and reads no clock; must not know about actors, hooks or streams.

pub mod message;
pub mod reorder;
pub mod rtp;
pub mod sdp;
pub mod session;

use std::borrow::Cow;
use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use message::{
    ClientTransport, Message, MessageError, Method, Request, Response, ServerTransport,
    TransportSpec,
};
use sdp::SdpTrack;

/// Identifies a request awaiting the application's decision.
pub type RequestId = u32;

/// The methods this server answers, for OPTIONS' `Public` header.
pub const PUBLIC_METHODS: &str =
    "OPTIONS, DESCRIBE, ANNOUNCE, SETUP, PLAY, RECORD, TEARDOWN, GET_PARAMETER, SET_PARAMETER";
/// Most input buffered while a request waits for a decision.
pub const MAX_SUSPENDED_INPUT: usize = 1 << 20;
/// Most tracks one session may set up.
pub const MAX_TRACKS: usize = 8;

/// What the client did, for the application to act on.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The first request of the connection (the on_connect hook point); it is answered after
    /// [`RtspConnection::accept`], or refused with [`RtspConnection::refuse`].
    Connect {
        /// The request to answer.
        request: RequestId,
        /// The request URL as sent, query included.
        url: String,
    },
    /// ANNOUNCE: the client wants to publish these tracks. [`RtspConnection::accept`] or
    /// [`RtspConnection::refuse`].
    PublishRequested {
        /// The request to answer.
        request: RequestId,
        /// The request URL as sent, query included.
        url: String,
        /// The tracks of the announced description.
        tracks: Vec<SdpTrack>,
    },
    /// DESCRIBE, or a SETUP or PLAY without a DESCRIBE before it: the client wants to play.
    /// For DESCRIBE answer with [`RtspConnection::accept_describe`]; otherwise
    /// [`RtspConnection::accept`] (or `accept_describe`, whose description then names the
    /// tracks SETUP refers to). Or [`RtspConnection::refuse`] (401, 403, 404).
    PlayRequested {
        /// The request to answer.
        request: RequestId,
        /// The stream's URL as sent, query included (a SETUP's track part removed, see
        /// [`stream_url`]).
        url: String,
    },
    /// SETUP of one track: answer with the transport the server chose,
    /// [`RtspConnection::accept_setup`], or [`RtspConnection::refuse`] (e.g. 461, 453).
    SetupRequested {
        /// The request to answer.
        request: RequestId,
        /// The request URL as sent.
        url: String,
        /// The track's control as the description names it (the last URL segment when no
        /// description names it).
        track_control: String,
        /// The index of the track in the announced or described description; for a play
        /// without DESCRIBE, the number in a `trackID=N` / `streamid=N` / `stream=N` control.
        track: Option<usize>,
        /// The transport the client asked for. TCP channels the client left to the server are
        /// filled in.
        transport: ClientTransport,
    },
    /// RECORD was answered: media follows on the tracks set up.
    RecordStarted,
    /// PLAY: answer with [`RtspConnection::accept_play`] once the packetizers are ready.
    PlayStarted {
        /// The request to answer.
        request: RequestId,
        /// The request URL as sent.
        url: String,
    },
    /// TEARDOWN: the session is over. It is answered and the connection is finished.
    Teardown,
    /// The core answered a request with an error status (4xx/5xx) on its own: for the log, so
    /// that no refusal goes unexplained. (Refusals through [`RtspConnection::refuse`] are the
    /// application's to log.)
    Refused {
        /// The request's method.
        method: String,
        /// The request URL as sent.
        url: String,
        /// The status answered.
        status: u16,
        /// Why, in words for the operator.
        reason: String,
    },
    /// A `$` frame on a channel of a track set up with TCP-interleaved transport.
    Interleaved {
        /// The channel.
        channel: u8,
        /// RTP or RTCP, sliced from the input.
        data: Bytes,
    },
}

/// A protocol violation, malformed input, or a misuse by the application. Each one from
/// [`RtspConnection::handle_input`] ends the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtspError {
    /// The byte stream is not RTSP/1.0 or exceeds its bounds.
    #[error(transparent)]
    Message(#[from] MessageError),
    /// More than [`MAX_SUSPENDED_INPUT`] bytes arrived while a request waited for a decision.
    #[error("more than {MAX_SUSPENDED_INPUT} bytes of input while suspended")]
    InputOverflow,
    /// A request id that is not the one pending.
    #[error("no pending request {0}")]
    UnknownRequest(RequestId),
    /// An answer that does not fit the pending request (e.g. `accept_setup` for a DESCRIBE).
    #[error("request {request} needs {expected}")]
    WrongAnswer {
        /// The request.
        request: RequestId,
        /// The call that answers it.
        expected: &'static str,
    },
    /// An interleaved frame over 65535 bytes.
    #[error("interleaved frame of {0} bytes is too large")]
    FrameTooLarge(usize),
}

/// One track set up in this session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupInfo {
    /// The SETUP request URL (the track URL the client knows, for `RTP-Info`).
    pub url: String,
    /// The track's control.
    pub control: String,
    /// The track's index, when known (see [`Event::SetupRequested`]).
    pub track: Option<usize>,
    /// The transport answered.
    pub transport: ServerTransport,
    /// The client sends (publish).
    pub record: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Role {
    Undecided,
    Publishing {
        tracks: Vec<SdpTrack>,
        recording: bool,
    },
    Playing {
        controls: Vec<String>,
    },
}

#[derive(Debug, Clone)]
enum Pending {
    Connect(Request),
    Publish(Request, Vec<SdpTrack>),
    Play {
        request: Request,
        describe: bool,
    },
    Setup {
        request: Request,
        control: String,
        track: Option<usize>,
        transport: ClientTransport,
    },
    PlayStart(Request),
}

impl Pending {
    fn request(&self) -> &Request {
        match self {
            Pending::Connect(r)
            | Pending::Publish(r, _)
            | Pending::Play { request: r, .. }
            | Pending::Setup { request: r, .. }
            | Pending::PlayStart(r) => r,
        }
    }
}

/// One RTSP client connection, server side.
pub struct RtspConnection {
    input: BytesMut,
    output: BytesMut,
    events: VecDeque<Event>,
    pending: Option<(RequestId, Pending)>,
    next_request: RequestId,
    connected: bool,
    role: Role,
    session_id: String,
    session_active: bool,
    setups: Vec<SetupInfo>,
    finished: bool,
}

impl RtspConnection {
    /// A new connection. `session_id` is the id this session will have once set up: the
    /// caller makes it unguessable (this core has no randomness); it must be a token
    /// (letters, digits, `$-_.+`) of at least 8 characters (RFC 2326 §3.4).
    pub fn new(session_id: impl Into<String>) -> RtspConnection {
        RtspConnection {
            input: BytesMut::new(),
            output: BytesMut::new(),
            events: VecDeque::new(),
            pending: None,
            next_request: 1,
            connected: false,
            role: Role::Undecided,
            session_id: session_id.into(),
            session_active: false,
            setups: Vec::new(),
            finished: false,
        }
    }

    /// Feeds bytes from the client. Afterwards drain [`Self::poll_event`] and
    /// [`Self::take_output`]. Input after the connection finished is ignored.
    pub fn handle_input(&mut self, bytes: &[u8]) -> Result<(), RtspError> {
        if self.finished {
            return Ok(());
        }
        self.input.extend_from_slice(bytes);
        if self.pending.is_some() && self.input.len() > MAX_SUSPENDED_INPUT {
            return Err(RtspError::InputOverflow);
        }
        self.process()
    }

    /// The next event, in the order the client caused them.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Bytes to send to the client, all at once.
    pub fn take_output(&mut self) -> Option<Bytes> {
        // `take`, not `split`: a split-off buffer keeps the whole allocation alive through
        // the capacity left behind, so one large burst (a GOP replay) would stay resident
        // for the life of the connection.
        (!self.output.is_empty()).then(|| std::mem::take(&mut self.output).freeze())
    }

    /// True while a request waits for the application's answer.
    pub fn is_suspended(&self) -> bool {
        self.pending.is_some()
    }

    /// True once the connection is over (TEARDOWN, or a refused connect, publish or play):
    /// send the output, then close.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The session id (announced from the first SETUP on).
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The tracks set up so far, in SETUP order.
    pub fn setups(&self) -> &[SetupInfo] {
        &self.setups
    }

    /// The announced tracks, when publishing.
    pub fn announced_tracks(&self) -> Option<&[SdpTrack]> {
        match &self.role {
            Role::Publishing { tracks, .. } => Some(tracks),
            _ => None,
        }
    }

    /// Appends one `$` frame made of `parts` (an RTP header and payload, an RTCP packet).
    pub fn send_interleaved(&mut self, channel: u8, parts: &[&[u8]]) -> Result<(), RtspError> {
        message::encode_interleaved(&mut self.output, channel, parts)
            .ok_or_else(|| RtspError::FrameTooLarge(parts.iter().map(|p| p.len()).sum()))
    }

    fn process(&mut self) -> Result<(), RtspError> {
        while self.pending.is_none() && !self.finished {
            let Some(message) = message::decode(&mut self.input)? else {
                break;
            };
            match message {
                Message::Interleaved { channel, data } => {
                    if self.channel_set_up(channel) {
                        self.events.push_back(Event::Interleaved { channel, data });
                    }
                }
                Message::Response { .. } => {}
                Message::Request(request) => {
                    if request.cseq().is_none() {
                        self.answer_refusal(&request, 400, "no CSeq header");
                    } else if !self.connected {
                        let url = request.url.clone();
                        let id = self.suspend(Pending::Connect(request));
                        self.events.push_back(Event::Connect { request: id, url });
                    } else {
                        self.dispatch(request);
                    }
                }
            }
        }
        Ok(())
    }

    fn channel_set_up(&self, channel: u8) -> bool {
        self.setups.iter().any(|s| {
            matches!(s.transport, ServerTransport::Interleaved { channels: (a, b) } if a == channel || b == channel)
        })
    }

    fn dispatch(&mut self, request: Request) {
        if let Some(required) = request.header("Require") {
            let required = required.to_owned();
            self.respond(&request, 551, |r| r.header("Unsupported", required.clone()));
            self.refused(&request, 551, format!("unsupported Require: {required}"));
            return;
        }
        if let Some(session) = request.session() {
            if session != self.session_id {
                self.answer_refusal(&request, 454, "unknown Session id");
                return;
            }
        }
        match request.method {
            Method::Options => {
                self.respond(&request, 200, |r| r.header("Public", PUBLIC_METHODS));
            }
            Method::GetParameter | Method::SetParameter => self.respond(&request, 200, |r| r),
            Method::Describe => {
                if matches!(self.role, Role::Publishing { .. }) {
                    self.answer_refusal(&request, 455, "DESCRIBE in a publishing session");
                } else {
                    self.ask_play(request, true);
                }
            }
            Method::Announce => self.announce(request),
            Method::Setup => self.setup(request),
            Method::Play => match self.role {
                Role::Undecided => self.ask_play(request, false),
                Role::Playing { .. } if !self.setups.is_empty() => {
                    let url = request.url.clone();
                    let id = self.suspend(Pending::PlayStart(request));
                    self.events
                        .push_back(Event::PlayStarted { request: id, url });
                }
                _ => self.answer_refusal(
                    &request,
                    455,
                    "PLAY before SETUP or in a publishing session",
                ),
            },
            Method::Record => match &mut self.role {
                Role::Publishing { recording, .. } if !self.setups.is_empty() => {
                    *recording = true;
                    self.respond(&request, 200, |r| r);
                    self.events.push_back(Event::RecordStarted);
                }
                _ => self.answer_refusal(&request, 455, "RECORD before SETUP or outside ANNOUNCE"),
            },
            Method::Teardown => {
                self.respond(&request, 200, |r| r);
                self.events.push_back(Event::Teardown);
                self.finished = true;
            }
            Method::Pause | Method::Other(_) => {
                self.respond(&request, 501, |r| r.header("Public", PUBLIC_METHODS));
                self.refused(&request, 501, "method not implemented".into());
            }
        }
    }

    fn ask_play(&mut self, request: Request, describe: bool) {
        let url = if describe {
            request.url.clone()
        } else {
            stream_url(&request.url).into_owned()
        };
        let id = self.suspend(Pending::Play { request, describe });
        self.events
            .push_back(Event::PlayRequested { request: id, url });
    }

    fn announce(&mut self, request: Request) {
        if self.role != Role::Undecided {
            self.answer_refusal(&request, 455, "ANNOUNCE after DESCRIBE, ANNOUNCE or SETUP");
            return;
        }
        if request
            .header("Content-Type")
            .is_some_and(|t| !t.to_ascii_lowercase().starts_with("application/sdp"))
        {
            self.answer_refusal(&request, 415, "ANNOUNCE body is not application/sdp");
            return;
        }
        let tracks = std::str::from_utf8(&request.body)
            .ok()
            .and_then(|text| sdp::parse(text).ok())
            .filter(|tracks| !tracks.is_empty() && tracks.len() <= MAX_TRACKS);
        let Some(tracks) = tracks else {
            self.answer_refusal(&request, 400, "unreadable SDP, or no or too many media");
            return;
        };
        // A track the server cannot carry is refused here rather than accepted and dropped:
        // 415 Unsupported Media Type (RFC 2326 §11.3, from HTTP) is the status for a request
        // body describing media the resource does not take; 461 is for transports only.
        if let Some((i, why)) = tracks
            .iter()
            .enumerate()
            .find_map(|(i, t)| t.unsupported().map(|why| (i, why)))
        {
            self.answer_refusal(
                &request,
                415,
                &format!("track {i} cannot be carried: {why}"),
            );
            return;
        }
        let url = request.url.clone();
        let id = self.suspend(Pending::Publish(request, tracks.clone()));
        self.events.push_back(Event::PublishRequested {
            request: id,
            url,
            tracks,
        });
    }

    fn setup(&mut self, request: Request) {
        let Some(mut transport) = request.header("Transport").and_then(ClientTransport::parse)
        else {
            self.answer_refusal(&request, 461, "no Transport header this server can serve");
            return;
        };
        let controls: Vec<String> = match &self.role {
            Role::Undecided if !transport.record => {
                self.ask_play(request, false);
                return;
            }
            Role::Publishing {
                recording: false,
                tracks,
            } => tracks.iter().map(|t| t.control.clone()).collect(),
            Role::Playing { controls } if !transport.record => controls.clone(),
            _ => {
                self.answer_refusal(
                    &request,
                    455,
                    "SETUP after RECORD, or of a mode the session is not in",
                );
                return;
            }
        };
        let (track, control) = resolve_track(&controls, &request.url);
        let publishing = matches!(self.role, Role::Publishing { .. });
        if publishing && track.is_none() {
            self.answer_refusal(
                &request,
                404,
                "SETUP names no track of the announced description",
            );
            return;
        }
        let replaces = self
            .setups
            .iter()
            .any(|s| s.control == control || (track.is_some() && s.track == track));
        if !replaces && self.setups.len() >= MAX_TRACKS {
            self.answer_refusal(&request, 453, "too many tracks set up");
            return;
        }
        if let TransportSpec::Interleaved(None) = transport.spec {
            let n = self.setups.len() as u8;
            transport.spec = TransportSpec::Interleaved(Some((2 * n, 2 * n + 1)));
        }
        let url = request.url.clone();
        let id = self.suspend(Pending::Setup {
            request,
            control: control.clone(),
            track,
            transport,
        });
        self.events.push_back(Event::SetupRequested {
            request: id,
            url,
            track_control: control,
            track,
            transport,
        });
    }

    fn suspend(&mut self, pending: Pending) -> RequestId {
        let id = self.next_request;
        self.next_request = self.next_request.wrapping_add(1);
        self.pending = Some((id, pending));
        id
    }

    fn take_pending(&mut self, request: RequestId) -> Result<Pending, RtspError> {
        match self.pending.take() {
            Some((id, pending)) if id == request => Ok(pending),
            other => {
                self.pending = other;
                Err(RtspError::UnknownRequest(request))
            }
        }
    }

    fn wrong_answer(
        &mut self,
        request: RequestId,
        pending: Pending,
        expected: &'static str,
    ) -> RtspError {
        self.pending = Some((request, pending));
        RtspError::WrongAnswer { request, expected }
    }

    /// Lets a pending connect, publish, play (one raised by SETUP or PLAY) or PLAY go on,
    /// answers the client, and resumes reading its input.
    pub fn accept(&mut self, request: RequestId) -> Result<(), RtspError> {
        match self.take_pending(request)? {
            Pending::Connect(r) => {
                self.connected = true;
                self.dispatch(r);
            }
            Pending::Publish(r, tracks) => {
                self.role = Role::Publishing {
                    tracks,
                    recording: false,
                };
                self.respond(&r, 200, |r| r);
            }
            p @ Pending::Play { describe: true, .. } => {
                return Err(self.wrong_answer(request, p, "accept_describe"))
            }
            Pending::Play { request: r, .. } => {
                self.role = Role::Playing {
                    controls: Vec::new(),
                };
                self.dispatch(r);
            }
            p @ Pending::Setup { .. } => return Err(self.wrong_answer(request, p, "accept_setup")),
            Pending::PlayStart(r) => self.play_response(&r, &[]),
        }
        self.process()
    }

    /// Allows a pending play and gives the stream's session description: DESCRIBE is
    /// answered with it (`Content-Base` is the request URL with `/`), and later SETUPs are
    /// matched against its `a=control` lines.
    pub fn accept_describe(&mut self, request: RequestId, sdp: String) -> Result<(), RtspError> {
        let (r, describe) = match self.take_pending(request)? {
            Pending::Play {
                request: r,
                describe,
            } => (r, describe),
            other => return Err(self.wrong_answer(request, other, "accept or accept_setup")),
        };
        let controls = sdp::parse(&sdp)
            .map(|tracks| tracks.into_iter().map(|t| t.control).collect())
            .unwrap_or_default();
        self.role = Role::Playing { controls };
        if describe {
            let base = if r.url.ends_with('/') {
                r.url.clone()
            } else {
                format!("{}/", r.url)
            };
            self.respond(&r, 200, |resp| {
                resp.header("Content-Base", base)
                    .body("application/sdp", sdp)
            });
        } else {
            self.dispatch(r);
        }
        self.process()
    }

    /// Answers a pending SETUP with the transport the server chose.
    pub fn accept_setup(
        &mut self,
        request: RequestId,
        transport: ServerTransport,
    ) -> Result<(), RtspError> {
        let (r, control, track, client) = match self.take_pending(request)? {
            Pending::Setup {
                request: r,
                control,
                track,
                transport,
            } => (r, control, track, transport),
            other => return Err(self.wrong_answer(request, other, "accept_setup")),
        };
        self.session_active = true;
        let info = SetupInfo {
            url: r.url.clone(),
            control,
            track,
            transport,
            record: client.record,
        };
        let header = transport.header(client.record, None);
        match self
            .setups
            .iter_mut()
            .find(|s| s.control == info.control || (info.track.is_some() && s.track == info.track))
        {
            Some(existing) => *existing = info,
            None => self.setups.push(info),
        }
        self.respond(&r, 200, |resp| resp.header("Transport", header));
        self.process()
    }

    /// Answers a pending PLAY: `rtp_info` has, per track, the track URL (see
    /// [`Self::setups`]), the sequence number and the RTP timestamp of the first packet that
    /// will be sent (RFC 2326 §12.33).
    pub fn accept_play(
        &mut self,
        request: RequestId,
        rtp_info: Vec<(String, u16, u32)>,
    ) -> Result<(), RtspError> {
        let r = match self.take_pending(request)? {
            Pending::PlayStart(r) => r,
            other => return Err(self.wrong_answer(request, other, "accept_play")),
        };
        self.play_response(&r, &rtp_info);
        self.process()
    }

    fn play_response(&mut self, request: &Request, rtp_info: &[(String, u16, u32)]) {
        let info: Vec<String> = rtp_info
            .iter()
            .map(|(url, seq, rtptime)| format!("url={url};seq={seq};rtptime={rtptime}"))
            .collect();
        self.respond(request, 200, |r| {
            let r = r.header("Range", "npt=0.000-");
            if info.is_empty() {
                r
            } else {
                r.header("RTP-Info", info.join(","))
            }
        });
    }

    /// Refuses a pending request with `status` (401 adds a `WWW-Authenticate` challenge).
    /// Refusing the connect, a publish or a play finishes the connection: send the output,
    /// then close. Refusing a SETUP or PLAY only answers it.
    /// The application logs its own refusals; [`Event::Refused`] reports the core's.
    pub fn refuse(&mut self, request: RequestId, status: u16) -> Result<(), RtspError> {
        let pending = self.take_pending(request)?;
        let finishes = matches!(
            pending,
            Pending::Connect(_) | Pending::Publish(..) | Pending::Play { .. }
        );
        self.respond(pending.request(), status, |r| {
            if status == 401 {
                r.header("WWW-Authenticate", "Basic realm=\"streamgate\"")
            } else {
                r
            }
        });
        if finishes {
            self.finished = true;
            Ok(())
        } else {
            self.process()
        }
    }

    /// Answers `request` with an error `status` and tells the application why.
    fn answer_refusal(&mut self, request: &Request, status: u16, reason: &str) {
        self.respond(request, status, |r| r);
        self.refused(request, status, reason.to_owned());
    }

    fn refused(&mut self, request: &Request, status: u16, reason: String) {
        self.events.push_back(Event::Refused {
            method: request.method.as_str().to_owned(),
            url: request.url.clone(),
            status,
            reason,
        });
    }

    fn respond(
        &mut self,
        request: &Request,
        status: u16,
        build: impl FnOnce(Response) -> Response,
    ) {
        let session = self.session_active.then_some(self.session_id.as_str());
        build(Response::to(request, status).session(session)).encode(&mut self.output);
    }
}

/// The stream part of a request URL: a trailing `/` and a trailing track control segment
/// (`trackID=0`, `streamid=1`, `stream=0`: a last segment with `=`) removed. The query stays,
/// whether it comes before the track part (`rtsp://h/live/cam?token=a/trackID=0`, as FFmpeg
/// sends it) or after it (`rtsp://h/live/cam/stream=0?token=a`, as GStreamer's
/// `rtspclientsink` sends it): both give `rtsp://h/live/cam?token=a`.
pub fn stream_url(url: &str) -> Cow<'_, str> {
    let url = url.strip_suffix('/').unwrap_or(url);
    if let Some((base, last)) = url.rsplit_once('/') {
        if !base.contains("//") {
            return Cow::Borrowed(url);
        }
        let base = base.strip_suffix('/').unwrap_or(base);
        if is_track_segment(last) {
            return Cow::Borrowed(base);
        }
        // `…/name/stream=0?query`: the track part, then the query.
        if let Some((track, query)) = last.split_once('?') {
            if is_track_segment(track) && !base.contains('?') {
                return Cow::Owned(format!("{base}?{query}"));
            }
        }
    }
    Cow::Borrowed(url)
}

/// A path segment that is a track control (`trackID=0`) rather than a stream name.
fn is_track_segment(segment: &str) -> bool {
    segment.contains('=') && !segment.contains('?')
}

/// The last path segment of a URL or control, a trailing `/` ignored.
fn last_segment(s: &str) -> &str {
    let s = s.strip_suffix('/').unwrap_or(s);
    s.rsplit('/').next().unwrap_or(s)
}

/// Which track a SETUP URL names: the control that equals the URL or shares its last
/// segment; without controls, the number of a `trackID=N`-style last segment. Returns the
/// index and the control (the URL's last segment when none matched).
///
/// The query may follow the track part (`…/cam/stream=0?token=a`, GStreamer): the URL is
/// then also matched without it.
fn resolve_track(controls: &[String], url: &str) -> (Option<usize>, String) {
    let with_query = last_segment(url);
    let without_query = with_query
        .split_once('?')
        .filter(|(track, _)| is_track_segment(track))
        .map(|(track, _)| track);
    let url_no_query = without_query.map(|_| url.split_once('?').map_or(url, |(u, _)| u));
    let url_last = without_query.unwrap_or(with_query).to_owned();
    for (i, control) in controls.iter().enumerate() {
        if control.is_empty() || control == "*" {
            continue;
        }
        let control_last = last_segment(control);
        if control == url
            || url_no_query == Some(control.as_str())
            || control_last == with_query
            || Some(control_last) == without_query
        {
            return (Some(i), control.clone());
        }
    }
    if controls.is_empty() {
        let number = url_last
            .split_once('=')
            .filter(|(k, _)| {
                ["trackid", "streamid", "stream"].contains(&k.to_ascii_lowercase().as_str())
            })
            .and_then(|(_, n)| n.parse::<usize>().ok());
        return (number, url_last);
    }
    (None, url_last)
}

#[cfg(test)]
mod tests;
