package dev.pushflow.peer.kstreams;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAdder;
import org.apache.avro.Schema;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KGroupedStream;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Named;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Repartitioned;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.processor.TimestampExtractor;
import org.apache.kafka.streams.processor.api.FixedKeyProcessor;
import org.apache.kafka.streams.processor.api.FixedKeyProcessorContext;
import org.apache.kafka.streams.processor.api.FixedKeyRecord;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.processor.api.RecordMetadata;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.Stores;
import org.apache.kafka.streams.state.WindowStore;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The seed's job as a Kafka Streams topology (what a kSQL deployment of it
 * compiles to, written in the DSL):
 *
 * <pre>
 * delivered ─decode─┐
 *                   ├─merge─ dedup (RocksDB store "dedup", key = kind + notification_id, kept forever)
 * clicked ───decode─┘            │
 * (record timestamps: occurred_at, extracted at the sources: event time throughout)
 *                                ├─ key (store, campaign) ─ repartition "by-campaign" ─┬─ tumbling 1 m, grace 5 m ─┐
 *                                │                                                      └─ tumbling 1 h, grace 30 m ┴─ window_stats (JSON)
 *                                └─ key (store, month) ─ repartition "by-month" ─ count ─ monthly_totals (JSON)
 * </pre>
 *
 * Both aggregates emit every update (kSQL's EMIT CHANGES), thinned by the
 * record cache to at most one per key and commit. Who decides that a record
 * is too late for a window is {@link Lateness}: Kafka Streams' stream time
 * (as kSQL), or pushflow's per-input-partition rule applied before the
 * repartition. Either way a late record still counts in the monthly totals,
 * which have no window.
 */
public final class PeerTopology {
    private PeerTopology() {}

    /** A tumbling window and its grace period. */
    public record Window(String name, Duration size, Duration grace) {}

    /** The same windows as pushflow's aggregate by default (config.rs). */
    public static final List<Window> WINDOWS = List.of(
            new Window("1m", Duration.ofMinutes(1), Duration.ofMinutes(5)),
            new Window("1h", Duration.ofHours(1), Duration.ofMinutes(30)));

    public static final String DEDUP_STORE = "dedup";
    public static final String BY_CAMPAIGN = "by-campaign";
    public static final String BY_MONTH = "by-month";

    private static final Logger LOG = LoggerFactory.getLogger(PeerTopology.class);
    private static final byte[] ONE = {1};

    /** Who decides that a record is too late for a window. */
    public enum Lateness {
        /**
         * Kafka Streams itself, as kSQL does: a window aggregate drops a record
         * once its window end + grace is at or behind the stream time of the
         * aggregating task (the max event time that task has seen, after the
         * repartition, from all input partitions).
         */
        STREAM_TIME,
        /**
         * pushflow's rule (processors/aggregate/src/core.rs): decided before the
         * repartition, against the max event time seen so far in the record's
         * own input partition (kept in a store with a changelog); the window
         * aggregates then get only records that are not late and a grace of
         * {@link #WIDE_GRACE}, so that Streams drops none by itself.
         */
        PARTITION
    }

    /** The grace of the window aggregates with {@link Lateness#PARTITION}. */
    public static final Duration WIDE_GRACE = Duration.ofDays(1);
    public static final String WATERMARK_STORE = "watermarks";

    public static Topology build(String deliveredTopic, String clickedTopic, String windowTopic, String monthlyTopic,
            Schema deliveredSchema, Schema clickedSchema, String registry, Lateness lateness) {
        StreamsBuilder b = new StreamsBuilder();
        // The dedup set: persistent (RocksDB) with a changelog topic, no TTL:
        // each (notification_id, kind) counts at most once, ever.
        b.addStateStore(Stores.keyValueStoreBuilder(
                Stores.persistentKeyValueStore(DEDUP_STORE), Serdes.Bytes(), Serdes.ByteArray()));

        KStream<String, Ping> delivered = b
                .stream(deliveredTopic, Consumed.with(Serdes.String(), Serdes.ByteArray())
                        .withTimestampExtractor(new EventTime(deliveredSchema, registry)).withName("delivered-source"))
                .processValues(() -> new Decode(Ping.DELIVERED, deliveredSchema, registry), Named.as("decode-delivered"));
        KStream<String, Ping> clicked = b
                .stream(clickedTopic, Consumed.with(Serdes.String(), Serdes.ByteArray())
                        .withTimestampExtractor(new EventTime(clickedSchema, registry)).withName("clicked-source"))
                .processValues(() -> new Decode(Ping.CLICKED, clickedSchema, registry), Named.as("decode-clicked"));
        KStream<String, Ping> pings = delivered.merge(clicked, Named.as("pings"));
        if (lateness == Lateness.PARTITION) {
            b.addStateStore(Stores.keyValueStoreBuilder(
                    Stores.persistentKeyValueStore(WATERMARK_STORE), Serdes.String(), Serdes.Long())
                    .withCachingEnabled());
            pings = pings.processValues(Watermarks::new, Named.as("watermarks"), WATERMARK_STORE);
        }
        KStream<String, Ping> fresh = pings.process(Dedup::new, Named.as("dedup"), DEDUP_STORE);

        Serde<Ping> pingSerde = Ping.serde();
        Serde<Counts> counts = Counts.serde();

        KStream<String, Ping> byCampaign = fresh
                .selectKey((k, p) -> Keys.pair(p.storeId, p.campaignId), Named.as("key-by-campaign"))
                .repartition(Repartitioned.<String, Ping>as(BY_CAMPAIGN)
                        .withKeySerde(Serdes.String()).withValueSerde(pingSerde))
                .processValues(() -> new Track(BY_CAMPAIGN), Named.as("track-by-campaign"));
        for (int i = 0; i < WINDOWS.size(); i++) {
            Window w = WINDOWS.get(i);
            String name = "window-" + w.name();
            long size = w.size().toMillis();
            KStream<String, Ping> in = byCampaign;
            Duration grace = w.grace();
            if (lateness == Lateness.PARTITION) {
                int bit = 1 << i;
                in = byCampaign.filter((k, p) -> (p.lateMask & bit) == 0, Named.as(name + "-not-late"));
                grace = WIDE_GRACE;
            }
            in.groupByKey(Grouped.with(Serdes.String(), pingSerde))
                    .windowedBy(TimeWindows.ofSizeAndGrace(w.size(), grace))
                    .aggregate(Counts::zero, (k, p, c) -> c.plus(p), Named.as(name),
                            Materialized.<String, Counts, WindowStore<Bytes, byte[]>>as(name)
                                    .withKeySerde(Serdes.String()).withValueSerde(counts))
                    .toStream(Named.as(name + "-changes"))
                    .filter((wk, c) -> c != null, Named.as(name + "-values"))
                    .map((wk, c) -> {
                        String[] sc = Keys.unpair(wk.key());
                        long start = wk.window().start();
                        String id = "\"store_id\":" + Keys.json(sc[0]) + ",\"campaign_id\":" + Keys.json(sc[1])
                                + ",\"size_ms\":" + size + ",\"start_ms\":" + start;
                        String value = "{" + id + ",\"window\":\"" + w.name() + "\",\"end_ms\":" + (start + size)
                                + ",\"delivered\":" + c.delivered + ",\"clicked\":" + c.clicked + "}";
                        return KeyValue.pair("{" + id + "}", value);
                    }, Named.as(name + "-json"))
                    .to(windowTopic, Produced.with(Serdes.String(), Serdes.String()).withName(name + "-sink"));
        }

        fresh
                .selectKey((k, p) -> Keys.pair(p.storeId, Keys.monthOf(p.occurredAt)), Named.as("key-by-month"))
                .repartition(Repartitioned.<String, Ping>as(BY_MONTH)
                        .withKeySerde(Serdes.String()).withValueSerde(pingSerde))
                .processValues(() -> new Track(BY_MONTH), Named.as("track-by-month"))
                .groupByKey(Grouped.with(Serdes.String(), pingSerde))
                .aggregate(Counts::zero, (k, p, c) -> c.plus(p), Named.as("monthly"),
                        Materialized.<String, Counts, KeyValueStore<Bytes, byte[]>>as("monthly")
                                .withKeySerde(Serdes.String()).withValueSerde(counts))
                .toStream(Named.as("monthly-changes"))
                .filter((k, c) -> c != null, Named.as("monthly-values"))
                .map((k, c) -> {
                    String[] sm = Keys.unpair(k);
                    String id = "\"store_id\":" + Keys.json(sm[0]) + ",\"month\":\"" + sm[1] + "\"";
                    return KeyValue.pair("{" + id + "}",
                            "{" + id + ",\"impressions\":" + c.delivered + ",\"clicks\":" + c.clicked + "}");
                }, Named.as("monthly-json"))
                .to(monthlyTopic, Produced.with(Serdes.String(), Serdes.String()).withName("monthly-sink"));
        return b.build();
    }

    /**
     * Event time from the value's occurred_at (kSQL's TIMESTAMP='occurred_at'),
     * so a task merges its delivered and clicked partitions in event-time
     * order; an undecodable value keeps its partition's time (Decode counts it).
     */
    static final class EventTime implements TimestampExtractor {
        private final Schema reader;
        private final String registry;

        EventTime(Schema reader, String registry) {
            this.reader = reader;
            this.registry = registry;
        }

        @Override
        public long extract(ConsumerRecord<Object, Object> record, long partitionTime) {
            try {
                return Decoder.occurredAt((byte[]) record.value(), reader, registry);
            } catch (Decoder.BadRecord | ClassCastException e) {
                return Math.max(partitionTime, 0);
            }
        }
    }

    /** Remembers the highest offset fully processed of the partition a record came from. */
    private static final class Position {
        private TopicPartition last;
        private AtomicLong offset;

        void done(RecordMetadata m) {
            if (last == null || last.partition() != m.partition() || !last.topic().equals(m.topic())) {
                last = new TopicPartition(m.topic(), m.partition());
                offset = Stats.offsetOf(last);
            }
            offset.accumulateAndGet(m.offset(), Math::max);
        }
    }

    /** Confluent wire format → Ping, with event time as the record timestamp. */
    static final class Decode implements FixedKeyProcessor<String, byte[], Ping> {
        private final Decoder decoder;
        private final Position position = new Position();
        private final LongAdder in = Stats.count("input");
        private final LongAdder bad = Stats.count("bad");
        private FixedKeyProcessorContext<String, Ping> ctx;

        Decode(byte kind, Schema schema, String registry) {
            this.decoder = new Decoder(kind, schema, registry);
        }

        @Override
        public void init(FixedKeyProcessorContext<String, Ping> ctx) {
            this.ctx = ctx;
        }

        private boolean started;

        @Override
        public void process(FixedKeyRecord<String, byte[]> r) {
            Stats.firstRecord();
            if (!started) {
                started = true;
                if (Boolean.getBoolean("peer.debug")) {
                    LOG.warn("DEBUG task {} first record at +{} ms, {} input records processed before, ts {}",
                            ctx.taskId(), System.currentTimeMillis() - Stats.FIRST_RECORD_MS.get(), Stats.get("input"), r.timestamp());
                }
            }
            try {
                Ping p = decoder.decode(r.value());
                ctx.forward(r.withValue(p).withTimestamp(p.occurredAt));
            } catch (Decoder.BadRecord e) {
                // A real deployment sends these to a dead-letter topic; the
                // peer counts them so a run with any is visibly not exact.
                bad.increment();
                LOG.warn("skipping an undecodable record: {}", e.getMessage());
            }
            in.increment();
            ctx.recordMetadata().ifPresent(position::done);
        }
    }

    /**
     * pushflow's lateness rule: per input partition, the max event time seen
     * before the record (duplicates included) decides which windows the
     * record is late for; the mask travels with the record.
     */
    static final class Watermarks implements FixedKeyProcessor<String, Ping, Ping> {
        private final java.util.Map<String, long[]> cache = new java.util.HashMap<>();
        private FixedKeyProcessorContext<String, Ping> ctx;
        private KeyValueStore<String, Long> store;

        @Override
        public void init(FixedKeyProcessorContext<String, Ping> ctx) {
            this.ctx = ctx;
            this.store = ctx.getStateStore(WATERMARK_STORE);
        }

        @Override
        public void process(FixedKeyRecord<String, Ping> r) {
            RecordMetadata m = ctx.recordMetadata().orElseThrow();
            String tp = m.topic() + ":" + m.partition();
            long[] wm = cache.get(tp);
            if (wm == null) {
                Long stored = store.get(tp);
                wm = new long[] {stored == null ? Long.MIN_VALUE : stored};
                cache.put(tp, wm);
            }
            Ping p = r.value();
            byte mask = 0;
            for (int i = 0; i < WINDOWS.size(); i++) {
                long size = WINDOWS.get(i).size().toMillis();
                long grace = WINDOWS.get(i).grace().toMillis();
                long start = Math.floorDiv(p.occurredAt, size) * size;
                if (wm[0] != Long.MIN_VALUE && start + size + grace <= wm[0]) {
                    mask |= (byte) (1 << i);
                }
            }
            if (p.occurredAt > wm[0]) {
                wm[0] = p.occurredAt;
                store.put(tp, wm[0]);
            }
            ctx.forward(r.withValue(mask == 0 ? p : p.withLateMask(mask)));
        }
    }

    /** Passes each (notification_id, kind) once, ever. */
    static final class Dedup implements Processor<String, Ping, String, Ping> {
        private static final LongAdder[] LATE = WINDOWS.stream().map(w -> Stats.count("late-" + w.name()))
                .toArray(LongAdder[]::new);
        private final LongAdder duplicates = Stats.count("duplicates");
        private final LongAdder forwarded = Stats.count("forwarded");
        private ProcessorContext<String, Ping> ctx;
        private KeyValueStore<Bytes, byte[]> seen;

        @Override
        public void init(ProcessorContext<String, Ping> ctx) {
            this.ctx = ctx;
            this.seen = ctx.getStateStore(DEDUP_STORE);
        }

        @Override
        public void process(Record<String, Ping> r) {
            Ping p = r.value();
            byte[] nid = p.notificationId.getBytes(StandardCharsets.UTF_8);
            byte[] k = new byte[nid.length + 1];
            k[0] = p.kind;
            System.arraycopy(nid, 0, k, 1, nid.length);
            Bytes key = Bytes.wrap(k);
            if (seen.get(key) != null) {
                duplicates.increment();
                return;
            }
            seen.put(key, ONE);
            ctx.forward(r);
            forwarded.increment();
            for (int i = 0; p.lateMask != 0 && i < WINDOWS.size(); i++) {
                if ((p.lateMask & (1 << i)) != 0) {
                    LATE[i].increment();
                }
            }
        }
    }

    /** Counts records read back from a repartition topic and notes their offsets. */
    static final class Track implements FixedKeyProcessor<String, Ping, Ping> {
        private final LongAdder n;
        private final Position position = new Position();
        private FixedKeyProcessorContext<String, Ping> ctx;

        Track(String stage) {
            this.n = Stats.count(stage);
        }

        @Override
        public void init(FixedKeyProcessorContext<String, Ping> ctx) {
            this.ctx = ctx;
        }

        @Override
        public void process(FixedKeyRecord<String, Ping> r) {
            ctx.forward(r);
            n.increment();
            ctx.recordMetadata().ifPresent(position::done);
        }
    }
}
