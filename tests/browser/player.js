// Plays ?src=<url> (live HTTP-FLV) with mpegts.js and reports to the page's own origin:
//   GET /report?kind=state&currentTime=..&videoWidth=..&videoHeight=..  every 250 ms
//   GET /report?kind=<event>&...                                        on every event worth seeing
// The test (tests/httpflv_browser.rs) reads these reports; nothing here asserts anything.
(function () {
  'use strict';

  var video = document.getElementById('video');
  var src = new URLSearchParams(window.location.search).get('src');
  var seq = 0;

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

  function state() {
    var buffered = [];
    for (var i = 0; i < video.buffered.length; i++) {
      buffered.push(video.buffered.start(i).toFixed(3) + '-' + video.buffered.end(i).toFixed(3));
    }
    return {
      currentTime: String(video.currentTime),
      videoWidth: String(video.videoWidth),
      videoHeight: String(video.videoHeight),
      readyState: String(video.readyState),
      paused: String(video.paused),
      buffered: buffered.join(','),
      error: mediaError()
    };
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

  if (typeof mpegts === 'undefined') {
    report('fatal', { error: 'mpegts.js did not load' });
    return;
  }
  var features = mpegts.getFeatureList();
  report('start', { src: src || '', version: mpegts.version || '', features: features });
  if (!src) {
    report('fatal', { error: 'no ?src= given' });
    return;
  }
  if (!features.mseLivePlayback) {
    report('fatal', { error: 'mpegts.js: no MSE live playback in this browser' });
    return;
  }

  var player = mpegts.createPlayer({ type: 'flv', isLive: true, url: src });
  player.on(mpegts.Events.ERROR, function (type, detail, info) {
    report('mpegts-error', { error: String(type) + ' / ' + String(detail), info: info || {} });
  });
  player.on(mpegts.Events.MEDIA_INFO, function (info) {
    report('mpegts-media-info', {
      mimeType: String(info.mimeType),
      width: String(info.width),
      height: String(info.height),
      videoCodec: String(info.videoCodec),
      audioCodec: String(info.audioCodec)
    });
  });
  player.on(mpegts.Events.LOADING_COMPLETE, function () {
    report('mpegts-loading-complete', {});
  });
  player.attachMediaElement(video);
  player.load();
  var played = player.play();
  if (played && typeof played.catch === 'function') {
    played.catch(function (e) {
      report('play-rejected', { error: String(e) });
    });
  }
})();
