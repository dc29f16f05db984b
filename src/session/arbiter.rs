//! [`ArbiterState`]: what the sessions of one worker arbiter share, in one struct: the
//! encodings of frames its players share ([`cached_encoding`]), the fan-out groups of the
//! streams its RTMP and HTTP-FLV players watch ([`super::fanout`]), the merge windows of
//! its TCP outputs ([`super::output::tcp`]) and its sessions ([`super::table`]). All of it lives on that arbiter's thread and is
//! used only there, without locks; each arbiter has its own.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;

use actix::Addr;
use bytes::{Bytes, BytesMut};
use streamgate_actors::media::MediaFrame;
use streamgate_actors::session::ClientId;
use streamgate_actors::stream::StreamActor;

use super::fanout::Group;
use super::output::tcp::{DueList, MergeList};
use super::table::{SessionView, Totals};

/// The state one worker arbiter's sessions share.
pub struct ArbiterState {
    /// Frames in the wire forms its players asked for, newest last.
    encodings: RefCell<VecDeque<Encoding>>,
    /// One fan-out group per stream with players here.
    pub(super) groups: RefCell<HashMap<Addr<StreamActor>, Group>>,
    /// The TCP outputs waiting for each merge window's timer.
    pub(super) merges: RefCell<Vec<MergeList>>,
    /// The TCP outputs to be written at the end of the current turn.
    pub(super) due: RefCell<DueList>,
    /// Its sessions, in the order of their clientids ([`super::table`]): a page of them is
    /// read in order, never sorted (clientids grow, so a new session is the last).
    pub(super) sessions: RefCell<BTreeMap<ClientId, Rc<SessionView>>>,
    /// What its sessions that are gone did ([`super::table::Totals`]).
    pub(super) totals: RefCell<Totals>,
}

thread_local! {
    static ARBITER: ArbiterState = ArbiterState {
        encodings: RefCell::new(VecDeque::with_capacity(ENCODING_CACHE)),
        groups: RefCell::new(HashMap::new()),
        merges: RefCell::new(Vec::new()),
        due: RefCell::new(DueList::default()),
        sessions: RefCell::new(BTreeMap::new()),
        totals: RefCell::new(Totals::default()),
    };
}

impl ArbiterState {
    /// Runs `f` with the current arbiter's state.
    pub fn with<R>(f: impl FnOnce(&ArbiterState) -> R) -> R {
        ARBITER.with(f)
    }

    /// [`Self::with`], or `None` while the arbiter's thread is ending (a group or output let
    /// go then finds no state to leave).
    pub fn try_with<R>(f: impl FnOnce(&ArbiterState) -> R) -> Option<R> {
        ARBITER.try_with(f).ok()
    }
}

/// Most encodings each arbiter keeps for [`cached_encoding`].
const ENCODING_CACHE: usize = 512;

/// A frame's encoding in one wire form, cached per arbiter.
pub(super) struct Encoding {
    /// Holds the payload alive, so its address cannot be reused while the entry exists.
    payload: Bytes,
    dts: i64,
    form: u64,
    encoded: Bytes,
}

/// The wire bytes of `frame` in `form` (a protocol and whatever per-player setting shapes the
/// bytes): encoded by the first player on this arbiter that needs them, then shared by every
/// other player here as a reference-counted `Bytes`. Fan-out to many players of one protocol
/// thus encodes each frame once per arbiter instead of once per player.
pub fn cached_encoding(frame: &MediaFrame, form: u64, encode: impl FnOnce(&mut BytesMut)) -> Bytes {
    let same = |e: &Encoding| {
        e.form == form
            && e.dts == frame.dts
            && e.payload.len() == frame.payload.len()
            && e.payload.as_ptr() == frame.payload.as_ptr()
    };
    ArbiterState::with(|state| {
        let mut cache = state.encodings.borrow_mut();
        // Newest first: the players of one frame ask for it one after another.
        if let Some(hit) = cache.iter().rev().find(|e| same(e)) {
            return hit.encoded.clone();
        }
        let mut out = BytesMut::new();
        encode(&mut out);
        let encoded = out.freeze();
        // A frame only the cache still holds has left the stream's GOP cache and every
        // group's history and queue: nobody can ask for its encoding again. Dropping those
        // keeps the cache at what joining players can still be sent, instead of holding
        // (and keeping alive) up to ENCODING_CACHE frames. `is_unique` may say false for a
        // payload that is still unused (one carved from a shared buffer); the count bound
        // then applies.
        cache.retain(|e| !e.payload.is_unique());
        if cache.len() == ENCODING_CACHE {
            cache.pop_front();
        }
        cache.push_back(Encoding {
            payload: frame.payload.clone(),
            dts: frame.dts,
            form,
            encoded: encoded.clone(),
        });
        encoded
    })
}

/// How many encodings this arbiter holds.
#[cfg(test)]
fn cached_encodings() -> usize {
    ArbiterState::with(|state| state.encodings.borrow().len())
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_encoding_per_frame_and_form() {
        use super::cached_encoding;
        use bytes::{BufMut, Bytes};
        use streamgate_actors::media::{Codec, FrameKind, MediaFrame, Track};
        let frame = |payload: Bytes, dts| MediaFrame {
            track: Track::Audio,
            codec: Codec::Aac,
            kind: FrameKind::Media,
            dts,
            pts: dts,
            keyframe: true,
            payload,
        };
        let a = frame(Bytes::from_static(b"same"), 0);
        let mut calls = 0;
        let mut enc = |form: u64, f: &MediaFrame| {
            cached_encoding(f, form, |out| {
                calls += 1;
                out.put_u64(form);
                out.put_slice(&f.payload);
            })
        };
        let first = enc(1, &a);
        let again = enc(1, &a.clone());
        assert_eq!(first, again);
        assert_eq!(first.as_ptr(), again.as_ptr(), "shared, not re-encoded");
        let other_form = enc(2, &a);
        assert_ne!(first, other_form);
        // Equal bytes in another buffer are another frame.
        let b = frame(Bytes::copy_from_slice(b"same"), 0);
        let _ = enc(1, &b);
        let later = frame(a.payload.clone(), 40);
        let _ = enc(1, &later);
        assert_eq!(calls, 4);
    }

    #[test]
    fn an_encoding_goes_when_nobody_else_holds_its_frame() {
        use super::{cached_encoding, cached_encodings};
        use bytes::{BufMut, Bytes};
        use streamgate_actors::media::{Codec, FrameKind, MediaFrame, Track};
        let frame = |n: u8| MediaFrame {
            track: Track::Video,
            codec: Codec::H264,
            kind: FrameKind::Media,
            dts: i64::from(n),
            pts: i64::from(n),
            keyframe: false,
            payload: Bytes::from(vec![n; 64]),
        };
        let enc = |f: &MediaFrame| cached_encoding(f, 7, |out| out.put_slice(&f.payload));
        let (a, b) = (frame(1), frame(2));
        let _ = enc(&a);
        let _ = enc(&b);
        assert_eq!(cached_encodings(), 2, "both frames are still held");
        drop(a);
        let c = frame(3);
        let _ = enc(&c);
        assert_eq!(
            cached_encodings(),
            2,
            "a's encoding went with its frame, b's and c's stay"
        );
        let mut calls = 0;
        let _ = cached_encoding(&b, 7, |_| calls += 1);
        assert_eq!(calls, 0, "b is still served from the cache");
    }
}
