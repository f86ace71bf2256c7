/*
 * pushflow service worker.
 *
 * Shows each push (JSON payload: notification_id, campaign_id, title, body,
 * url, icon?, ping_token), pings `delivered` to ingest once the notification
 * is shown and `clicked` when it is clicked, then opens the campaign url.
 * Each ping carries `at`, the time (ms since the epoch, Date.now()) it was
 * shown or clicked, which ingest takes as the event time when it is
 * plausible; every retry of a ping sends the same `at`. A failed ping is
 * retried a few times with exponential backoff; a refused one (4xx other
 * than 429: forged, expired) is not. A push whose notification could not
 * be shown (no permission) is not pinged.
 *
 * Use it as your site's /sw.js, or from your own worker:
 *   importScripts("https://<ingest>/sw.js");
 * Set self.PUSHFLOW_INGEST_ORIGIN before importing to override the origin.
 */
'use strict';

var PUSHFLOW_DEFAULT_ORIGIN = '__PUSHFLOW_INGEST_ORIGIN__';

function pushflowPingUrl() {
  var origin = self.PUSHFLOW_INGEST_ORIGIN || PUSHFLOW_DEFAULT_ORIGIN;
  return origin.replace(/\/+$/, '') + '/v1/pings';
}

function pushflowSleep(ms) {
  return new Promise(function (resolve) { setTimeout(resolve, ms); });
}

/**
 * POSTs {type, token, at} to ingest's /v1/pings, retrying on network
 * errors, 429 and 5xx (honouring Retry-After, capped). Resolves to
 * {ok, status, attempts, at}; never rejects.
 * opts: {at (ms since the epoch when shown or clicked; default: now),
 *        url, attempts (default 4), baseDelayMs (default 500),
 *        maxDelayMs (default 8000)}
 */
async function pushflowSendPing(type, token, opts) {
  opts = opts || {};
  var url = opts.url || pushflowPingUrl();
  var attempts = opts.attempts || 4;
  var base = opts.baseDelayMs == null ? 500 : opts.baseDelayMs;
  var max = opts.maxDelayMs == null ? 8000 : opts.maxDelayMs;
  var at = opts.at == null ? Date.now() : opts.at;
  // One body for every attempt: a retry reports the same event time.
  var body = JSON.stringify({ type: type, token: token, at: at });
  var last = null;
  for (var i = 0; i < attempts; i++) {
    var wait = base * Math.pow(2, i);
    try {
      var res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: body,
        keepalive: true,
        mode: 'cors',
        credentials: 'omit'
      });
      if (res.ok) return { ok: true, status: res.status, attempts: i + 1, at: at };
      last = res.status;
      if (res.status < 500 && res.status !== 429) {
        return { ok: false, status: res.status, attempts: i + 1, at: at };
      }
      var ra = parseInt(res.headers.get('retry-after') || '', 10);
      if (!isNaN(ra)) wait = Math.max(wait, ra * 1000);
    } catch (e) {
      last = String(e);
    }
    if (i + 1 < attempts) await pushflowSleep(Math.min(wait, max));
  }
  return { ok: false, status: last, attempts: attempts, at: at };
}

function pushflowIgnore() {}

if (typeof ServiceWorkerGlobalScope !== 'undefined' && self instanceof ServiceWorkerGlobalScope) {
  self.addEventListener('push', function (event) {
    var data = {};
    try { data = event.data ? event.data.json() : {}; } catch (e) { data = {}; }
    var shown = self.registration.showNotification(data.title || '', {
      body: data.body || '',
      icon: data.icon || undefined,
      tag: data.notification_id,
      data: { url: data.url, ping_token: data.ping_token, notification_id: data.notification_id }
    });
    // Pinged once shown, dated when shown.
    var ping = shown.then(function () {
      var at = Date.now();
      return data.ping_token ? pushflowSendPing('delivered', data.ping_token, { at: at }) : null;
    });
    event.waitUntil(ping);
  });

  self.addEventListener('notificationclick', function (event) {
    var at = Date.now();
    event.notification.close();
    var d = event.notification.data || {};
    var ping = d.ping_token ? pushflowSendPing('clicked', d.ping_token, { at: at }) : Promise.resolve();
    // A window that cannot be opened must not end the worker's lifetime
    // before the ping (and its retries) finished.
    var opened = d.url ? self.clients.openWindow(d.url).catch(pushflowIgnore) : Promise.resolve();
    event.waitUntil(Promise.all([opened, ping]));
  });
}
