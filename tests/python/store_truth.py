"""Independent ground truth of one merchant's numbers, straight from the
Kafka log (confluent-kafka with its own Avro deserializer and the schema
registry, no pushflow code): every partition of the event topics read from
the beginning to its high watermark, read_committed, then counted with
plain Python sets.

    store_truth.py BROKERS REGISTRY_URL STORE_ID

Prints JSON:
  {"campaigns": {campaign_id: {
       "title", "created_at", "scheduled_at", "launched_at", "cancelled_at",
       "throttle_per_minute",
       "dispatched", "failed", "expired",   # distinct notification ids
       "outcome_overlap",                   # ids with more than one outcome
       "delivered", "clicked",              # distinct notification ids
       "hourly": {start: {"delivered", "clicked"}},   # by event time, UTC
       "minutely": {start: {"delivered", "clicked"}}}},
   "days": {"YYYY-MM-DD": {"subscribed", "expired"}},   # distinct subscribers
   "months": {"YYYY-MM": {"impressions", "clicks"}},    # distinct notifications
   "delivered_not_clicked": [[notification_id, campaign_id, subscriber_id]…]}

Times are RFC 3339 UTC with milliseconds (`2026-05-01T10:00:00.000Z`);
window starts without (`2026-05-01T10:00:00Z`). `scheduled_at` is the
`send_at` of the campaign's latest `campaign.scheduled` (by event time),
`launched_at` / `cancelled_at` the earliest event of their kind.
Definitions as DESIGN.md and the analytics component state them:
expired = `notification.failed` of kind `gone`, failed = the other kinds;
a notification is counted once per kind, in the window of the event time
of its first ping in the log (a repeated ping is a duplicate).
"""
import collections
import datetime
import json
import sys

try:
    import high_watermarks
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import SerializationContext, MessageField
except ImportError as e:  # fail, naming the package
    sys.exit(f"pip package confluent-kafka[avro,schemaregistry] is missing ({e}); pip install -r tests/python/requirements.txt")

brokers, registry, store = sys.argv[1], sys.argv[2], sys.argv[3]
TOPICS = ["campaign.created", "campaign.scheduled", "campaign.cancelled", "campaign.launched",
          "subscription.created", "subscription.expired", "notification.dispatched",
          "notification.failed", "notification.delivered", "notification.clicked"]
decode = AvroDeserializer(SchemaRegistryClient({"url": registry}))
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def millis(v):
    """timestamp-millis as fastavro hands it (an aware datetime) or an int."""
    if isinstance(v, datetime.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=datetime.timezone.utc)
        return (v - EPOCH) // datetime.timedelta(milliseconds=1)
    return int(v)


def utc(ms):
    return EPOCH + datetime.timedelta(milliseconds=ms)


def rfc3339_ms(ms):
    return None if ms is None else utc(ms).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def window_start(ms, seconds):
    return utc(ms - ms % (seconds * 1000)).strftime("%Y-%m-%dT%H:%M:%SZ")


campaigns = collections.defaultdict(lambda: {
    "title": None, "created_at": None, "scheduled": None, "launched_at": None,
    "cancelled_at": None, "dispatched": set(), "failed": set(), "expired": set(),
    "delivered": {}, "clicked": {}})
subscribed = collections.defaultdict(set)
expired_subs = collections.defaultdict(set)
month_pings = {"delivered": {}, "clicked": {}}
subscriber_of = {}


def earliest(old, new):
    return new if old is None or new < old else old


def note(m):
    e = decode(m.value(), SerializationContext(m.topic(), MessageField.VALUE))
    if e["store_id"] != store:
        return
    t, at = m.topic(), millis(e["occurred_at"])
    if t.startswith("subscription."):
        day = utc(at).strftime("%Y-%m-%d")
        (subscribed if t == "subscription.created" else expired_subs)[day].add(e["subscriber_id"])
        return
    c = campaigns[e["campaign_id"]]
    if t == "campaign.created":
        c["title"], c["created_at"] = e["title"], earliest(c["created_at"], at)
    elif t == "campaign.scheduled":
        if c["scheduled"] is None or at >= c["scheduled"][0]:
            c["scheduled"] = (at, millis(e["send_at"]), e.get("throttle_per_minute"))
    elif t == "campaign.launched":
        c["launched_at"] = earliest(c["launched_at"], at)
    elif t == "campaign.cancelled":
        c["cancelled_at"] = earliest(c["cancelled_at"], at)
    elif t == "notification.dispatched":
        c["dispatched"].add(e["notification_id"])
        subscriber_of[e["notification_id"]] = e["subscriber_id"]
    elif t == "notification.failed":
        kind = e["kind"]
        (c["expired"] if kind == "gone" else c["failed"]).add(e["notification_id"])
    else:
        kind = t.split(".")[1]
        # A notification counts once per kind, in the window of the event
        # time of its first ping in the log: every ping of a notification
        # is keyed by its id, so all are in one partition, in log order.
        n = e["notification_id"]
        c[kind].setdefault(n, at)
        month_pings[kind].setdefault(n, at)


high_watermarks.read(brokers, "store-truth", TOPICS, note)


def series(pings_by_kind, seconds):
    out = collections.defaultdict(lambda: {"delivered": 0, "clicked": 0})
    for kind in ("delivered", "clicked"):
        for at in pings_by_kind[kind].values():
            out[window_start(at, seconds)][kind] += 1
    return dict(sorted(out.items()))


result = {"campaigns": {}, "days": {}, "months": {}, "delivered_not_clicked": []}
for cid, c in campaigns.items():
    outcomes = [c["dispatched"], c["failed"], c["expired"]]
    seen, overlap = set(), 0
    for s in outcomes:
        overlap += len(seen & s)
        seen |= s
    sched = c["scheduled"]
    result["campaigns"][cid] = {
        "title": c["title"],
        "created_at": rfc3339_ms(c["created_at"]),
        "scheduled_at": rfc3339_ms(sched[1]) if sched else None,
        "throttle_per_minute": sched[2] if sched else None,
        "launched_at": rfc3339_ms(c["launched_at"]),
        "cancelled_at": rfc3339_ms(c["cancelled_at"]),
        "dispatched": len(c["dispatched"]), "failed": len(c["failed"]),
        "expired": len(c["expired"]), "outcome_overlap": overlap,
        "delivered": len(c["delivered"]), "clicked": len(c["clicked"]),
        "hourly": series(c, 3600), "minutely": series(c, 60),
    }
    for n in sorted(set(c["delivered"]) - set(c["clicked"])):
        result["delivered_not_clicked"].append([n, cid, subscriber_of.get(n)])
for day in sorted(set(subscribed) | set(expired_subs)):
    result["days"][day] = {"subscribed": len(subscribed[day]), "expired": len(expired_subs[day])}
months = collections.defaultdict(lambda: {"impressions": 0, "clicks": 0})
for kind, field in (("delivered", "impressions"), ("clicked", "clicks")):
    for at in month_pings[kind].values():
        months[utc(at).strftime("%Y-%m")][field] += 1
result["months"] = dict(months)
print(json.dumps(result))
