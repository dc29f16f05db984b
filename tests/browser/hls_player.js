// Plays ?src=<url> (a live HLS multivariant playlist) with hls.js, low-latency mode on unless
// ?lowLatency=false, and reports to the page's own origin:
//   GET /report?kind=state&currentTime=..&latency=..&pdtLatencyMs=..  every 250 ms
//   GET /report?kind=<event>&...                                      on every event worth seeing
// The test (tests/hls_players.rs) and the benchmark (tests/bench/hls_latency.sh) read these
// reports; nothing here asserts anything.
(function () {
  'use strict';

  var video = document.getElementById('video');
  var params = new URLSearchParams(window.location.search);
  var src = params.get('src');
  var lowLatency = params.get('lowLatency') !== 'false';
  var seq = 0;
  var hls = null;
  // Media fragments hls.js loaded: whole segments and partial segments (LL-HLS parts).
  var loaded = { segments: 0, parts: 0 };
  var level = {};

  function report(kind, fields) {
    var q = new URLSearchParams();
    q.set('seq', String(seq++));
    q.set('kind', kind);
    q.set('ms', String(Math.round(performance.now())));
    Object.keys(fields || {}).forEach(function (k) {
      var v = fields[k];
      q.set(k, typeof v === 'string' ? v : JSON.stringify(v));
    });
    return fetch('/report?' + q.toString(), { cache: 'no-store' }).catch(function () {});
  }

  function mediaError() {
    var e = video.error;
    return e ? 'MediaError ' + e.code + ': ' + (e.message || '') : '';
  }

  function num(x) {
    return typeof x === 'number' && isFinite(x) ? x.toFixed(3) : '';
  }

  function state() {
    var buffered = [];
    for (var i = 0; i < video.buffered.length; i++) {
      buffered.push(video.buffered.start(i).toFixed(3) + '-' + video.buffered.end(i).toFixed(3));
    }
    var s = {
      currentTime: String(video.currentTime),
      videoWidth: String(video.videoWidth),
      videoHeight: String(video.videoHeight),
      readyState: String(video.readyState),
      paused: String(video.paused),
      buffered: buffered.join(','),
      error: mediaError(),
      segments: String(loaded.segments),
      parts: String(loaded.parts)
    };
    if (hls) {
      // hls.latency: seconds from the playhead to the live edge of the playlist.
      s.latency = num(hls.latency);
      s.targetLatency = num(hls.targetLatency);
      s.drift = num(hls.drift);
      s.lowLatencyMode = String(hls.lowLatencyMode);
      // hls.playingDate: the wall-clock time of the frame on screen, from
      // EXT-X-PROGRAM-DATE-TIME, which the server ties to the time the frames arrived.
      var date = hls.playingDate;
      if (date) {
        s.playingDate = String(date.getTime());
        s.pdtLatencyMs = String(Date.now() - date.getTime());
      }
    }
    return s;
  }

  window.addEventListener('error', function (e) {
    report('js-error', { error: String(e.message) + ' at ' + e.filename + ':' + e.lineno });
  });
  window.addEventListener('unhandledrejection', function (e) {
    report('js-error', { error: 'unhandled rejection: ' + String(e.reason) });
  });

  ['loadedmetadata', 'loadeddata', 'playing', 'waiting', 'stalled', 'ended', 'error'].forEach(
    function (name) {
      video.addEventListener(name, function () {
        var s = state();
        s.event = name;
        report(name === 'error' ? 'video-error' : 'video-event', s);
      });
    }
  );

  setInterval(function () {
    report('state', state());
  }, 250);

  if (typeof Hls === 'undefined') {
    report('fatal', { error: 'hls.js did not load' });
    return;
  }
  report('start', { src: src || '', version: Hls.version || '', lowLatency: String(lowLatency) });
  if (!src) {
    report('fatal', { error: 'no ?src= given' });
    return;
  }
  if (!Hls.isSupported()) {
    report('fatal', { error: 'hls.js: MSE not supported in this browser' });
    return;
  }

  hls = new Hls({ lowLatencyMode: lowLatency, debug: false });
  hls.on(Hls.Events.ERROR, function (event, data) {
    var what = {
      error: String(data.type) + ' / ' + String(data.details),
      fatal: String(!!data.fatal),
      url: data.url || (data.frag && data.frag.url) || (data.context && data.context.url) || '',
      reason: data.reason || (data.error && String(data.error)) || '',
      status: data.response && data.response.code !== undefined ? String(data.response.code) : ''
    };
    report(data.fatal ? 'hls-fatal' : 'hls-warning', what);
  });
  hls.on(Hls.Events.MANIFEST_PARSED, function (event, data) {
    report('hls-manifest', {
      levels: String(data.levels.length),
      codecs: data.levels.map(function (l) { return String(l.codecSet || l.attrs.CODECS); }).join(' ')
    });
    var played = video.play();
    if (played && typeof played.catch === 'function') {
      played.catch(function (e) {
        report('play-rejected', { error: String(e) });
      });
    }
  });
  hls.on(Hls.Events.LEVEL_LOADED, function (event, data) {
    var d = data.details;
    var now = {
      live: String(d.live),
      canBlockReload: String(d.canBlockReload),
      partTarget: String(d.partTarget || 0),
      parts: String(d.partList ? d.partList.length : 0),
      targetduration: String(d.targetduration),
      endSN: String(d.endSN)
    };
    // One report when what the playlist offers changes, not one per reload.
    if (JSON.stringify(now) !== JSON.stringify(level)) {
      level = now;
      report('hls-level', now);
    }
  });
  hls.on(Hls.Events.FRAG_LOADED, function (event, data) {
    if (data.part) {
      loaded.parts++;
    } else {
      loaded.segments++;
    }
  });
  hls.attachMedia(video);
  hls.loadSource(src);
})();
