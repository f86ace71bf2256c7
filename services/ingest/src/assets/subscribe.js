/*
 * pushflow subscribe snippet. On the merchant's page:
 *
 *   <script src="https://<ingest>/subscribe.js"></script>
 *   <script>pushflowSubscribe({ storeId: "store-7" }).then(r => console.log(r.subscriber_id));</script>
 *
 * Registers the service worker (opts.swUrl, default "/sw.js" on the page's
 * origin: serve ingest's /sw.js there or importScripts it), subscribes with
 * the VAPID public key (opts.vapidPublicKey, else fetched from ingest's
 * /v1/vapid-public-key) and posts the PushSubscription to ingest's
 * /v1/subscriptions, which records a subscription.created event.
 */
'use strict';

var PUSHFLOW_SUBSCRIBE_ORIGIN = '__PUSHFLOW_INGEST_ORIGIN__';

function pushflowB64ToBytes(s) {
  var pad = '='.repeat((4 - (s.length % 4)) % 4);
  var raw = atob((s + pad).replace(/-/g, '+').replace(/_/g, '/'));
  var out = new Uint8Array(raw.length);
  for (var i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

async function pushflowSubscribe(opts) {
  opts = opts || {};
  if (!opts.storeId) throw new Error('pushflowSubscribe: storeId is required');
  var origin = (opts.ingestOrigin || PUSHFLOW_SUBSCRIBE_ORIGIN).replace(/\/+$/, '');
  if (!('serviceWorker' in navigator) || !('PushManager' in window)) {
    throw new Error('this browser does not support web push');
  }
  var reg = await navigator.serviceWorker.register(opts.swUrl || '/sw.js');
  await navigator.serviceWorker.ready;
  var key = opts.vapidPublicKey;
  if (!key) {
    var kr = await fetch(origin + '/v1/vapid-public-key');
    if (!kr.ok) throw new Error('no VAPID public key from ' + origin + ': ' + kr.status);
    key = (await kr.json()).public_key;
  }
  if ((await Notification.requestPermission()) !== 'granted') {
    throw new Error('notification permission was not granted');
  }
  var sub = await reg.pushManager.getSubscription();
  if (!sub) {
    sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: pushflowB64ToBytes(key) });
  }
  var res = await fetch(origin + '/v1/subscriptions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ store_id: opts.storeId, subscription: sub.toJSON() })
  });
  if (!res.ok) throw new Error('ingest refused the subscription: ' + res.status + ' ' + (await res.text()));
  return res.json();
}

if (typeof window !== 'undefined') window.pushflowSubscribe = pushflowSubscribe;
