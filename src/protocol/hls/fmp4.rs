//! CMAF fragmented MP4 (ISO/IEC 14496-12, ISO/IEC 23000-19) for HLS: the init segment
//! (`ftyp` + `moov` with one `trak` per track and `mvex`/`trex`) and media fragments
//! (`moof` with `mfhd` and one `traf` (`tfhd`, `tfdt`, `trun`) per track, then `mdat`).
//!
//! The boxes are written with `mp4-atom` (sample entries `avc1`/`avcC`, `hvc1`/`hvcC`,
//! `mp4a`/`esds`, `Opus`/`dOps`), except the `mdat` header: the payloads are copied once,
//! straight from the frames into the fragment's buffer, instead of through the crate's
//! `Mdat { data: Vec<u8> }`.
//!
//! Pure functions over config records and samples: no clock, no IO.

use bytes::{BufMut, Bytes, BytesMut};
use mp4_atom::{
    Atom, Audio, Avc1, Avcc, Dinf, Dops, Dref, Encode, Esds, FourCC, Ftyp, Hdlr, Hvc1, Hvcc, Mdhd,
    Mdia, Mfhd, Minf, Moof, Moov, Mp4a, Mvex, Mvhd, Opus, Smhd, Stbl, Stco, Stsd, Tfdt, Tfhd, Tkhd,
    Traf, Trak, Trex, Trun, TrunEntry, Url, Visual, Vmhd,
};
use streamgate_actors::media::Codec;

use crate::protocol::codec::{audio_parameters, video_dimensions, AacConfig, OpusHead};

use super::HlsError;

/// Track id of the video track in every init segment and fragment.
pub const VIDEO_TRACK_ID: u32 = 1;
/// Track id of the audio track.
pub const AUDIO_TRACK_ID: u32 = 2;
/// Timescale of the video track (ticks per second), as MPEG-TS: every frame rate in use maps
/// to whole ticks.
pub const VIDEO_TIMESCALE: u32 = 90_000;

/// `sample_flags` of a sync sample: depends on no other (ISO/IEC 14496-12 8.8.3.1).
const FLAGS_SYNC: u32 = 0x0200_0000;
/// `sample_flags` of a non-sync sample: depends on others, `sample_is_non_sync_sample`.
const FLAGS_NON_SYNC: u32 = 0x0101_0000;

/// One track of a stream as the init segment describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    /// The codec.
    pub codec: Codec,
    /// Its configuration record (avcC, hvcC, AudioSpecificConfig, OpusHead).
    pub config: Bytes,
    /// Ticks per second of its timestamps in the fragments: [`VIDEO_TIMESCALE`] for video,
    /// the sample rate for audio.
    pub timescale: u32,
}

impl TrackInfo {
    /// A track from its codec and config record; `None` for a codec fMP4 output does not
    /// carry here (AV1) or a record that cannot be read.
    pub fn new(codec: Codec, config: Bytes) -> Option<TrackInfo> {
        let timescale = match codec {
            Codec::H264 | Codec::H265 => VIDEO_TIMESCALE,
            Codec::Aac => AacConfig::parse(&config).ok()?.sample_rate,
            Codec::Opus => {
                OpusHead::parse(&config).ok()?;
                48_000
            }
            Codec::Av1 => return None,
        };
        Some(TrackInfo {
            codec,
            config,
            timescale: timescale.max(1),
        })
    }
}

/// One sample of a fragment, timestamps already on the track's output timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Decode time in microseconds on the output timeline (never negative).
    pub dts_us: i64,
    /// Duration in microseconds (the next sample's decode time minus this one's).
    pub duration_us: i64,
    /// Presentation time minus decode time, in microseconds.
    pub cts_offset_us: i64,
    /// A sync sample (video keyframe; every audio frame).
    pub keyframe: bool,
    /// The access unit, in the payload format of [`streamgate_actors::media::MediaFrame`]
    /// (length-prefixed NAL units, raw AAC, an Opus packet): what ISO BMFF stores.
    pub data: Bytes,
}

/// Microseconds to `timescale` ticks, rounded to nearest.
pub fn to_ticks(us: i64, timescale: u32) -> i64 {
    let t = i128::from(timescale);
    let us = i128::from(us);
    let ticks = (us * t + if us >= 0 { 500_000 } else { -500_000 }) / 1_000_000;
    ticks.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

fn encoded<T: Encode>(atom: &T, out: &mut Vec<u8>) -> Result<(), HlsError> {
    atom.encode(out).map_err(|e| HlsError::Mp4(e.to_string()))
}

/// The init segment: `ftyp` + `moov` with a `trak` per track (video first, as track
/// [`VIDEO_TRACK_ID`]; audio as [`AUDIO_TRACK_ID`]) and `mvex` with a `trex` per track.
pub fn init_segment(
    video: Option<&TrackInfo>,
    audio: Option<&TrackInfo>,
) -> Result<Bytes, HlsError> {
    let mut traks = Vec::new();
    let mut trex = Vec::new();
    if let Some(video) = video {
        traks.push(video_trak(video)?);
        trex.push(trex_for(VIDEO_TRACK_ID));
    }
    if let Some(audio) = audio {
        traks.push(audio_trak(audio)?);
        trex.push(trex_for(AUDIO_TRACK_ID));
    }
    if traks.is_empty() {
        return Err(HlsError::NoTracks);
    }
    let ftyp = Ftyp {
        major_brand: b"iso6".into(),
        minor_version: 0,
        compatible_brands: vec![b"iso6".into(), b"cmfc".into(), b"mp41".into()],
    };
    let moov = Moov {
        mvhd: Mvhd {
            timescale: 1000,
            rate: 1.into(),
            volume: 1.into(),
            next_track_id: AUDIO_TRACK_ID + 1,
            ..Default::default()
        },
        mvex: Some(Mvex { mehd: None, trex }),
        trak: traks,
        ..Default::default()
    };
    let mut out = Vec::with_capacity(1024);
    encoded(&ftyp, &mut out)?;
    encoded(&moov, &mut out)?;
    Ok(Bytes::from(out))
}

fn trex_for(track_id: u32) -> Trex {
    Trex {
        track_id,
        default_sample_description_index: 1,
        ..Default::default()
    }
}

/// The media box of a track whose one sample entry is `entry`: a video track (`vide`, with a
/// video media header) or an audio track (`soun`, with a sound media header).
fn mdia_for(track: &TrackInfo, entry: mp4_atom::Codec, video: bool) -> Mdia {
    let (handler, name) = if video {
        (b"vide", "streamgate video")
    } else {
        (b"soun", "streamgate audio")
    };
    Mdia {
        mdhd: Mdhd {
            timescale: track.timescale,
            language: "und".into(),
            ..Default::default()
        },
        hdlr: Hdlr {
            handler: FourCC::new(handler),
            name: name.into(),
        },
        minf: minf_for(
            Stsd {
                codecs: vec![entry],
            },
            video,
        ),
    }
}

fn minf_for(stsd: Stsd, video: bool) -> Minf {
    Minf {
        vmhd: video.then(Vmhd::default),
        smhd: (!video).then(Smhd::default),
        dinf: Dinf {
            dref: Dref {
                urls: vec![Url {
                    location: String::new(),
                }],
            },
        },
        stbl: Stbl {
            stsd,
            stco: Some(Stco::default()),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn video_trak(track: &TrackInfo) -> Result<Trak, HlsError> {
    let (width, height) = video_dimensions(track.codec, &track.config).unwrap_or((0, 0));
    let (width, height) = (
        u16::try_from(width).unwrap_or(u16::MAX),
        u16::try_from(height).unwrap_or(u16::MAX),
    );
    let visual = Visual {
        data_reference_index: 1,
        width,
        height,
        horizresolution: 72.into(),
        vertresolution: 72.into(),
        frame_count: 1,
        compressor: "".into(),
        depth: 24,
    };
    let mut record = &track.config[..];
    let entry: mp4_atom::Codec = match track.codec {
        Codec::H264 => Avc1 {
            visual,
            avcc: Avcc::decode_body(&mut record).map_err(|e| HlsError::Config(e.to_string()))?,
            btrt: None,
            colr: None,
            pasp: None,
            taic: None,
            fiel: None,
        }
        .into(),
        Codec::H265 => Hvc1 {
            visual,
            hvcc: Hvcc::decode_body(&mut record).map_err(|e| HlsError::Config(e.to_string()))?,
            ..Default::default()
        }
        .into(),
        other => return Err(HlsError::Unsupported(other)),
    };
    Ok(Trak {
        tkhd: Tkhd {
            track_id: VIDEO_TRACK_ID,
            enabled: true,
            in_movie: true,
            width: width.into(),
            height: height.into(),
            ..Default::default()
        },
        mdia: mdia_for(track, entry, true),
        ..Default::default()
    })
}

fn audio_trak(track: &TrackInfo) -> Result<Trak, HlsError> {
    let (rate, channels) = audio_parameters(track.codec, &track.config)
        .ok_or_else(|| HlsError::Config(format!("unreadable {:?} config", track.codec)))?;
    let audio = Audio {
        data_reference_index: 1,
        channel_count: u16::try_from(channels).unwrap_or(2),
        sample_size: 16,
        sample_rate: u16::try_from(rate).unwrap_or(0).into(),
    };
    let entry: mp4_atom::Codec = match track.codec {
        Codec::Aac => {
            let asc = AacConfig::parse(&track.config)?;
            Mp4a {
                audio,
                esds: Esds {
                    es_desc: mp4_atom::esds::EsDescriptor {
                        es_id: AUDIO_TRACK_ID as u16,
                        dec_config: mp4_atom::esds::DecoderConfig {
                            // 0x40: Audio ISO/IEC 14496-3; stream type 5: audio.
                            object_type_indication: 0x40,
                            stream_type: 5,
                            dec_specific: Some(mp4_atom::esds::DecoderSpecific {
                                profile: asc.object_type,
                                freq_index: asc.sample_rate_index,
                                chan_conf: asc.channels,
                                // The whole AudioSpecificConfig: SBR/PS signalling after
                                // the first fields must reach the decoder too.
                                raw: track.config.to_vec(),
                            }),
                            ..Default::default()
                        },
                        ..Default::default()
                    },
                },
                btrt: None,
                taic: None,
            }
            .into()
        }
        Codec::Opus => {
            let head = OpusHead::parse(&track.config)?;
            Opus {
                audio,
                dops: Dops {
                    output_channel_count: head.channels,
                    pre_skip: head.pre_skip,
                    input_sample_rate: head.input_sample_rate,
                    // Bytes 16-17 of OpusHead, little-endian (RFC 7845 §5.1).
                    output_gain: i16::from_le_bytes([track.config[16], track.config[17]]),
                },
                btrt: None,
            }
            .into()
        }
        other => return Err(HlsError::Unsupported(other)),
    };
    Ok(Trak {
        tkhd: Tkhd {
            track_id: AUDIO_TRACK_ID,
            alternate_group: 1,
            enabled: true,
            in_movie: true,
            volume: 1.into(),
            ..Default::default()
        },
        mdia: mdia_for(track, entry, false),
        ..Default::default()
    })
}

/// The samples of one track in a fragment.
#[derive(Debug, Clone, Copy)]
pub struct TrackRun<'a> {
    /// [`VIDEO_TRACK_ID`] or [`AUDIO_TRACK_ID`].
    pub track_id: u32,
    /// The track's timescale.
    pub timescale: u32,
    /// Its samples in decode order (at least one).
    pub samples: &'a [Sample],
}

/// One media fragment: `moof` (sequence number `sequence`, a `traf` per non-empty run, each
/// with `tfdt` and a `trun` of per-sample duration, size, flags and composition offset) and
/// the `mdat` with every run's payloads in order. `None` when no run has a sample.
pub fn fragment(sequence: u32, runs: &[TrackRun<'_>]) -> Result<Option<Bytes>, HlsError> {
    let runs: Vec<&TrackRun<'_>> = runs.iter().filter(|r| !r.samples.is_empty()).collect();
    if runs.is_empty() {
        return Ok(None);
    }
    let mut trafs = Vec::with_capacity(runs.len());
    let mut data_len = 0usize;
    for run in &runs {
        let base = to_ticks(run.samples[0].dts_us.max(0), run.timescale);
        let entries = run
            .samples
            .iter()
            .map(|s| {
                let dts = to_ticks(s.dts_us, run.timescale);
                let end = to_ticks(s.dts_us.saturating_add(s.duration_us), run.timescale);
                let pts = to_ticks(s.dts_us.saturating_add(s.cts_offset_us), run.timescale);
                data_len += s.data.len();
                TrunEntry {
                    duration: Some(u32::try_from((end - dts).max(0)).unwrap_or(u32::MAX)),
                    size: Some(u32::try_from(s.data.len()).unwrap_or(u32::MAX)),
                    flags: Some(if s.keyframe {
                        FLAGS_SYNC
                    } else {
                        FLAGS_NON_SYNC
                    }),
                    cts: Some(i32::try_from(pts - dts).unwrap_or(0)),
                }
            })
            .collect();
        trafs.push(Traf {
            tfhd: Tfhd {
                track_id: run.track_id,
                default_base_is_moof: true,
                ..Default::default()
            },
            tfdt: Some(Tfdt {
                base_media_decode_time: u64::try_from(base).unwrap_or(0),
            }),
            trun: vec![Trun {
                data_offset: Some(0),
                entries,
            }],
            ..Default::default()
        });
    }
    let mut moof = Moof {
        mfhd: Mfhd {
            sequence_number: sequence,
        },
        traf: trafs,
    };
    // The data offsets count from the start of the moof; its size does not depend on them.
    let mut probe = Vec::new();
    encoded(&moof, &mut probe)?;
    let mut offset = probe.len() + 8;
    for (traf, run) in moof.traf.iter_mut().zip(&runs) {
        traf.trun[0].data_offset = Some(i32::try_from(offset).map_err(|_| HlsError::TooLarge)?);
        offset += run.samples.iter().map(|s| s.data.len()).sum::<usize>();
    }
    let mut head = Vec::with_capacity(probe.len());
    encoded(&moof, &mut head)?;
    let mdat_size = u32::try_from(data_len + 8).map_err(|_| HlsError::TooLarge)?;
    let mut out = BytesMut::with_capacity(head.len() + 8 + data_len);
    out.put_slice(&head);
    out.put_u32(mdat_size);
    out.put_slice(b"mdat");
    for run in &runs {
        for s in run.samples {
            out.put_slice(&s.data);
        }
    }
    Ok(Some(out.freeze()))
}
