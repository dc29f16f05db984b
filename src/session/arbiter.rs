//! [`ArbiterState`]: what the sessions of one worker arbiter share, in one struct: the
//! encodings of frames its players share ([`cached_encoding`]), the fan-out groups of the
//! streams its RTMP and HTTP-FLV players watch ([`super::fanout`]), the merge windows of
//! its TCP outputs ([`super::output::tcp`]) and its sessions ([`super::table`]). All of it lives on that arbiter's thread and is
//! used only there, without locks; each arbiter has its own.

use std::cell::{Cell, RefCell};
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
    /// Frames in the wire forms its players asked for.
    encodings: RefCell<Encodings>,
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
    /// Whether its one-second timer runs ([`super::table::register`]).
    pub(super) ticking: Cell<bool>,
}

thread_local! {
    static ARBITER: ArbiterState = ArbiterState {
        encodings: RefCell::new(Encodings::default()),
        groups: RefCell::new(HashMap::new()),
        merges: RefCell::new(Vec::new()),
        due: RefCell::new(DueList::default()),
        sessions: RefCell::new(BTreeMap::new()),
        totals: RefCell::new(Totals::default()),
        ticking: Cell::new(false),
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
/// New encodings between two sweeps of the cache for frames nobody else holds.
const SWEEP_EVERY: usize = 8;

/// A frame: its payload's address and length and its timestamp (its payload is held, so the
/// address is not reused while the cache holds the frame).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct FrameKey {
    dts: i64,
    address: usize,
    len: usize,
}

impl FrameKey {
    fn of(frame: &MediaFrame) -> FrameKey {
        FrameKey {
            dts: frame.dts,
            address: frame.payload.as_ptr() as usize,
            len: frame.payload.len(),
        }
    }
}

/// One frame's encodings, by form (a frame has few: RTMP's, HTTP-FLV's, RTSP's packets and
/// their framings).
type Forms = Vec<(u64, Bytes)>;

/// The encodings of one arbiter, found by frame and then form: players that are paced
/// (RTSP's join pacer) ask for frames anywhere in the GOP, not only the newest, so a lookup
/// is a hash, not a scan of the cache (every frame is looked at only by a sweep, once every
/// [`SWEEP_EVERY`] new encodings, for those let go). The cache holds one clone of each
/// frame's payload, whatever the number of its forms, so a frame nobody else holds is known
/// by its payload's count alone.
#[derive(Default)]
struct Encodings {
    /// Frames oldest first (the count bound drops the front), with the payload that keeps
    /// each key's address alive.
    order: VecDeque<(FrameKey, Bytes)>,
    by_frame: HashMap<FrameKey, Forms, foldhash::fast::RandomState>,
    /// Encodings held, over every frame.
    held: usize,
    /// New encodings since the last sweep.
    since_sweep: usize,
}

impl Encodings {
    fn get(&self, frame: FrameKey, form: u64) -> Option<&Bytes> {
        let forms = self.by_frame.get(&frame)?;
        forms.iter().find(|(f, _)| *f == form).map(|(_, b)| b)
    }

    /// Lets go of the frames only the cache still holds (every [`SWEEP_EVERY`] new
    /// encodings, or more while the cache is large), and of the oldest while over
    /// [`ENCODING_CACHE`] encodings.
    fn sweep(&mut self) {
        let Encodings {
            order,
            by_frame,
            held,
            since_sweep,
        } = self;
        // A frame only the cache still holds has left the stream's GOP cache and every
        // group's history and queue: nobody can ask for its encodings again. Dropping those
        // keeps the cache at what joining players can still be sent, instead of holding
        // (and keeping alive) up to ENCODING_CACHE encodings. Every frame is looked at, not
        // only the oldest (a codec config lives as long as its stream, and would otherwise
        // keep every frame behind it), once every SWEEP_EVERY new encodings: a frame is
        // kept at most that many encodings longer (up to four times as many when a quarter of
        // the frames is more, so that a large cache is not looked through every few
        // encodings). `is_unique` may say false for a payload that is still unused (one
        // carved from a shared buffer); the count bound then applies.
        *since_sweep += 1;
        if *since_sweep >= (order.len() / 4).clamp(SWEEP_EVERY, 4 * SWEEP_EVERY) {
            *since_sweep = 0;
            order.retain(|(key, payload)| {
                let gone = payload.is_unique();
                if gone {
                    *held -= by_frame.remove(key).map_or(0, |forms| forms.len());
                }
                !gone
            });
        }
        while *held >= ENCODING_CACHE {
            let Some((oldest, _)) = order.pop_front() else {
                break;
            };
            *held -= by_frame.remove(&oldest).map_or(0, |forms| forms.len());
        }
    }
}

/// The wire bytes of `frame` in `form` (a protocol and whatever per-player setting shapes the
/// bytes): encoded by the first player on this arbiter that needs them, then shared by every
/// other player here as a reference-counted `Bytes`. Fan-out to many players of one protocol
/// thus encodes each frame once per arbiter instead of once per player.
pub fn cached_encoding(frame: &MediaFrame, form: u64, encode: impl FnOnce(&mut BytesMut)) -> Bytes {
    let key = FrameKey::of(frame);
    ArbiterState::with(|state| {
        let mut cache = state.encodings.borrow_mut();
        if let Some(hit) = cache.get(key, form) {
            return hit.clone();
        }
        let mut out = BytesMut::new();
        encode(&mut out);
        let encoded = out.freeze();
        cache.sweep();
        let cache = &mut *cache;
        let forms = match cache.by_frame.entry(key) {
            std::collections::hash_map::Entry::Occupied(forms) => forms.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                cache.order.push_back((key, frame.payload.clone()));
                entry.insert(Vec::with_capacity(2))
            }
        };
        forms.push((form, encoded.clone()));
        cache.held += 1;
        encoded
    })
}

/// The wire bytes of `frame` in `form` if a player of this arbiter made them
/// ([`cached_encoding`]), without making them.
pub fn cached_only(frame: &MediaFrame, form: u64) -> Option<Bytes> {
    let key = FrameKey::of(frame);
    ArbiterState::with(|state| state.encodings.borrow().get(key, form).cloned())
}

/// How many encodings this arbiter holds.
#[cfg(test)]
fn cached_encodings() -> usize {
    ArbiterState::with(|state| {
        let cache = state.encodings.borrow();
        assert_eq!(cache.order.len(), cache.by_frame.len());
        let held: usize = cache.by_frame.values().map(Vec::len).sum();
        assert_eq!(held, cache.held);
        held
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use streamgate_actors::media::{Codec, FrameKind, MediaFrame, Track};

    #[test]
    fn one_encoding_per_frame_and_form() {
        use super::cached_encoding;
        use bytes::BufMut;
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

    /// Video frame `n`: its own 64-byte payload, decode time `n`.
    fn frame(n: u8) -> MediaFrame {
        MediaFrame {
            track: Track::Video,
            codec: Codec::H264,
            kind: FrameKind::Media,
            dts: i64::from(n),
            pts: i64::from(n),
            keyframe: false,
            payload: Bytes::from(vec![n; 64]),
        }
    }

    #[test]
    fn an_encoding_goes_when_nobody_else_holds_its_frame() {
        use super::{cached_encoding, cached_encodings, SWEEP_EVERY};
        use bytes::BufMut;
        let enc = |f: &MediaFrame| cached_encoding(f, 7, |out| out.put_slice(&f.payload));
        let (a, b) = (frame(1), frame(2));
        let _ = enc(&a);
        let _ = enc(&b);
        assert_eq!(cached_encodings(), 2, "both frames are still held");
        drop(a);
        // Held frames, one new encoding each, up to the sweep.
        let held: Vec<MediaFrame> = (3..).take(SWEEP_EVERY - 2).map(frame).collect();
        for f in &held[..held.len() - 1] {
            let _ = enc(f);
        }
        assert_eq!(cached_encodings(), SWEEP_EVERY - 1, "a waits for the sweep");
        let _ = enc(&held[held.len() - 1]);
        assert_eq!(
            cached_encodings(),
            SWEEP_EVERY - 1,
            "a went at the sweep; b and the held ones stay"
        );
        let mut calls = 0;
        let _ = cached_encoding(&b, 7, |_| calls += 1);
        assert_eq!(calls, 0, "b is still served from the cache");
        // Entries let go behind one that is held (b, as a codec config is held as long as
        // its stream lives) go at the next sweep all the same.
        drop(held);
        let later: Vec<MediaFrame> = (100..).take(SWEEP_EVERY).map(frame).collect();
        for f in &later {
            let _ = enc(f);
        }
        assert_eq!(
            cached_encodings(),
            1 + SWEEP_EVERY,
            "the entries only the cache held went, b's stayed"
        );
        let mut calls = 0;
        let _ = cached_encoding(&later[0], 7, |_| calls += 1);
        assert_eq!(calls, 0, "a frame is found by its key");
    }

    #[test]
    fn a_frame_in_several_forms_goes_when_nobody_else_holds_it() {
        use super::{cached_encoding, cached_encodings, SWEEP_EVERY};
        use bytes::BufMut;
        let enc = |f: &MediaFrame, form: u64| {
            cached_encoding(f, form, |out| {
                out.put_u64(form);
                out.put_slice(&f.payload);
            })
        };
        let a = frame(1);
        for form in [7, 8, 9] {
            let _ = enc(&a, form);
        }
        assert_eq!(cached_encodings(), 3, "one frame in three forms");
        drop(a);
        let held: Vec<MediaFrame> = (2..).take(4 * SWEEP_EVERY).map(frame).collect();
        for f in &held {
            let _ = enc(f, 7);
        }
        assert_eq!(
            cached_encodings(),
            held.len(),
            "the frame only the cache held went in all its forms"
        );
    }
}
