package dev.pushflow.peer.kstreams;

import java.lang.management.ManagementFactory;
import java.lang.management.ThreadInfo;
import java.lang.management.ThreadMXBean;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.Collectors;
import org.apache.avro.Schema;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ListOffsetsOptions;
import org.apache.kafka.clients.admin.ListOffsetsResult.ListOffsetsResultInfo;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.IsolationLevel;
import org.apache.kafka.common.Metric;
import org.apache.kafka.common.MetricName;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse;

/**
 * The Kafka Streams peer of pushflow's aggregate. See README.md.
 *
 * <pre>
 * java -jar target/pushflow-kstreams-peer.jar --brokers B --delivered T1 --clicked T2 \
 *      --window-topic T3 --monthly-topic T4 --application-id ID --state-dir DIR \
 *      [--schemas DIR] [--registry URL] [--threads N] [--lateness stream-time|partition] [--config k=v]...
 *      [--until-caught-up] [--timeout SECONDS] [--cleanup] [--describe]
 * </pre>
 *
 * With --until-caught-up it reads the inputs from the beginning, stops once
 * every input record and every record it derived is processed and committed
 * (exactly_once_v2: the transaction holding the outputs and the offsets is
 * committed), and prints one JSON line of figures on stdout.
 */
public final class Main {
    private Main() {}

    public static void main(String[] argv) throws Exception {
        Map<String, String> a = new HashMap<>();
        Map<String, String> extra = new LinkedHashMap<>();
        Set<String> flags = Set.of("--until-caught-up", "--cleanup", "--describe", "--help");
        for (int i = 0; i < argv.length; i++) {
            String k = argv[i];
            if (flags.contains(k)) {
                a.put(k, "true");
            } else if (k.equals("--config") && i + 1 < argv.length) {
                String kv = argv[++i];
                int eq = kv.indexOf('=');
                if (eq <= 0) {
                    die("--config wants key=value, got " + kv);
                }
                extra.put(kv.substring(0, eq), kv.substring(eq + 1));
            } else if (k.startsWith("--") && i + 1 < argv.length) {
                a.put(k, argv[++i]);
            } else {
                die("unknown or incomplete argument " + k + " (see --help)");
            }
        }
        if (a.containsKey("--help")) {
            System.out.println("usage: java -jar pushflow-kstreams-peer.jar --brokers B --delivered TOPIC --clicked TOPIC\n"
                    + "  --window-topic TOPIC --monthly-topic TOPIC --application-id ID --state-dir DIR\n"
                    + "  [--schemas DIR (notification.*.avsc; default ./schemas)] [--registry URL]\n"
                    + "  [--threads N (default 1)] [--lateness stream-time|partition] [--config streams.key=value]...\n"
                    + "  [--until-caught-up] [--timeout SECONDS (default 300)] [--cleanup] [--describe]");
            return;
        }
        String brokers = need(a, "--brokers");
        String delivered = need(a, "--delivered");
        String clicked = need(a, "--clicked");
        String windowTopic = need(a, "--window-topic");
        String monthlyTopic = need(a, "--monthly-topic");
        String appId = need(a, "--application-id");
        String stateDir = need(a, "--state-dir");
        Path schemas = Path.of(a.getOrDefault("--schemas", "schemas"));
        String registry = a.get("--registry");
        int threads = Integer.parseInt(a.getOrDefault("--threads", "1"));
        long timeoutMs = (long) (Double.parseDouble(a.getOrDefault("--timeout", "300")) * 1000);

        Schema ds = Decoder.readerSchema(schemas, Ping.DELIVERED);
        Schema cs = Decoder.readerSchema(schemas, Ping.CLICKED);
        PeerTopology.Lateness lateness = switch (a.getOrDefault("--lateness", "stream-time")) {
            case "stream-time" -> PeerTopology.Lateness.STREAM_TIME;
            case "partition" -> PeerTopology.Lateness.PARTITION;
            default -> {
                die("--lateness is stream-time (Kafka Streams decides, as kSQL) or partition (pushflow's rule)");
                yield null;
            }
        };
        Topology topology = PeerTopology.build(delivered, clicked, windowTopic, monthlyTopic, ds, cs, registry, lateness);
        if (a.containsKey("--describe")) {
            System.err.println(topology.describe());
        }

        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, threads);
        p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        p.putAll(extra);

        long startMs = System.currentTimeMillis();
        Properties ap = new Properties();
        ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
        try (Admin admin = Admin.create(ap)) {
            Map<String, TopicDescription> inputs = admin.describeTopics(List.of(delivered, clicked))
                    .allTopicNames().get(30, TimeUnit.SECONDS);
            int partitions = inputs.get(delivered).partitions().size();
            createIfAbsent(admin, windowTopic, partitions);
            createIfAbsent(admin, monthlyTopic, partitions);
            List<TopicPartition> inputParts = new ArrayList<>();
            for (TopicDescription d : inputs.values()) {
                d.partitions().forEach(tp -> inputParts.add(new TopicPartition(d.name(), tp.partition())));
            }
            Map<TopicPartition, Long> begins = offsets(admin, inputParts, OffsetSpec.earliest());
            Map<TopicPartition, Long> ends = offsets(admin, inputParts, OffsetSpec.latest());

            KafkaStreams streams = new KafkaStreams(topology, p);
            AtomicReference<Throwable> failure = new AtomicReference<>();
            streams.setUncaughtExceptionHandler(e -> {
                failure.compareAndSet(null, e);
                return StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
            });
            if (!a.containsKey("--until-caught-up")) {
                Runtime.getRuntime().addShutdownHook(new Thread(() -> streams.close(Duration.ofSeconds(30))));
                streams.start();
                return;
            }
            streams.start();
            Map<String, Object> out = new LinkedHashMap<>();
            out.put("engine", "kafka-streams " + org.apache.kafka.common.utils.AppInfoParser.getVersion());
            out.put("application_id", appId);
            out.put("processing_guarantee", StreamsConfig.EXACTLY_ONCE_V2);
            out.put("threads", threads);
            out.put("lateness", lateness == PeerTopology.Lateness.PARTITION
                    ? "partition (pushflow's rule, decided before the repartition; window grace " + PeerTopology.WIDE_GRACE + ")"
                    : "stream-time (Kafka Streams' own, per aggregating task, as kSQL)");
            out.put("input_partitions", inputParts.size());
            long target = 0;
            for (TopicPartition tp : inputParts) {
                target += ends.get(tp) - begins.get(tp);
            }
            out.put("input_offsets", target);

            long deadline = startMs + timeoutMs;
            long doneMs = 0;
            long lastAdmin = 0;
            Map<String, Long> cpuAtFirst = null;
            long halfMs = 0;
            long halfCpuNs = 0;
            while (System.currentTimeMillis() < deadline) {
                if (halfMs == 0 && target > 0 && Stats.get("input") * 2 >= target) {
                    halfMs = System.currentTimeMillis();
                    halfCpuNs = Stats.processCpuNs();
                }
                if (failure.get() != null || streams.state() == KafkaStreams.State.ERROR
                        || streams.state() == KafkaStreams.State.NOT_RUNNING) {
                    break;
                }
                if (cpuAtFirst == null && Stats.FIRST_RECORD_MS.get() != 0) {
                    cpuAtFirst = cpuByThread();
                }
                boolean cheap = Stats.FIRST_RECORD_MS.get() != 0 && allInputSeen(inputParts, begins, ends, null)
                        && Stats.get(PeerTopology.BY_CAMPAIGN) >= Stats.get("forwarded")
                        && Stats.get(PeerTopology.BY_MONTH) >= Stats.get("forwarded");
                long now = System.currentTimeMillis();
                // The committed offsets are asked for when the counts say
                // done, and once a second anyway (an input ending with a
                // transaction marker is seen as done only through them).
                if (cheap || now - lastAdmin > 1000) {
                    lastAdmin = now;
                    Map<TopicPartition, OffsetAndMetadata> committed = admin.listConsumerGroupOffsets(appId)
                            .partitionsToOffsetAndMetadata().get(10, TimeUnit.SECONDS);
                    if (Stats.FIRST_RECORD_MS.get() != 0 && allInputSeen(inputParts, begins, ends, committed)
                            && Stats.get(PeerTopology.BY_CAMPAIGN) >= Stats.get("forwarded")
                            && Stats.get(PeerTopology.BY_MONTH) >= Stats.get("forwarded")
                            && allCommitted(committed)) {
                        doneMs = System.currentTimeMillis();
                        break;
                    }
                }
                Thread.sleep(cheap ? 20 : 50);
            }
            long cpuAtDone = Stats.processCpuNs();
            Map<String, Long> threadsAtDone = cpuByThread();
            long first = Stats.FIRST_RECORD_MS.get();
            out.put("timed_out", doneMs == 0 && failure.get() == null);
            if (failure.get() != null) {
                out.put("error", String.valueOf(failure.get()));
            } else if (doneMs == 0 && streams.state() != KafkaStreams.State.RUNNING) {
                out.put("error", "streams state " + streams.state());
            }
            out.put("records", Stats.get("input"));
            out.put("bad_records", Stats.get("bad"));
            out.put("duplicates", Stats.get("duplicates"));
            out.put("counted", Stats.get("forwarded"));
            out.put("late_dropped", metricSum(streams, "dropped-records-total"));
            if (lateness == PeerTopology.Lateness.PARTITION) {
                Map<String, Object> late = new LinkedHashMap<>();
                for (PeerTopology.Window w : PeerTopology.WINDOWS) {
                    late.put(w.name(), Stats.get("late-" + w.name()));
                }
                out.put("late_by_partition_rule", late);
            }
            out.put("commits", metricSum(streams, "commit-total"));
            out.put("startup_seconds", first == 0 ? null : (first - startMs) / 1000.0);
            if (doneMs != 0) {
                double secs = (doneMs - first) / 1000.0;
                out.put("seconds", secs);
                out.put("events_per_second", Math.round(Stats.get("input") / Math.max(secs, 1e-9)));
                out.put("first_record_ms", first);
                out.put("done_ms", doneMs);
                out.put("cpu_seconds", (cpuAtDone - Stats.firstRecordCpuNs) / 1e9);
                if (halfMs != 0 && doneMs > halfMs) {
                    // The second half alone: the JIT has compiled the hot code by then.
                    long rest = Stats.get("input") - target / 2;
                    out.put("second_half", Map.of(
                            "seconds", (doneMs - halfMs) / 1000.0,
                            "events_per_second", Math.round(rest / ((doneMs - halfMs) / 1000.0)),
                            "cpu_seconds", (cpuAtDone - halfCpuNs) / 1e9));
                }
                out.put("cpu_seconds_by_thread", cpuDelta(cpuAtFirst, threadsAtDone, cpuAtDone - Stats.firstRecordCpuNs));
            }
            streams.close(Duration.ofSeconds(60));
            if (a.containsKey("--cleanup")) {
                streams.cleanUp();
                Set<String> internal = admin.listTopics().names().get(30, TimeUnit.SECONDS).stream()
                        .filter(t -> t.startsWith(appId + "-")).collect(Collectors.toSet());
                if (!internal.isEmpty()) {
                    admin.deleteTopics(internal).all().get(60, TimeUnit.SECONDS);
                }
                out.put("deleted_internal_topics", internal.size());
            }
            System.out.println(toJson(out));
            System.out.flush();
            System.exit(doneMs != 0 ? 0 : 2);
        }
    }

    /** Every input partition read to its end (counts, or the group's committed offset). */
    private static boolean allInputSeen(List<TopicPartition> parts, Map<TopicPartition, Long> begins,
            Map<TopicPartition, Long> ends, Map<TopicPartition, OffsetAndMetadata> committed) {
        for (TopicPartition tp : parts) {
            long end = ends.get(tp);
            if (end <= begins.get(tp)) {
                continue;
            }
            AtomicLong seen = Stats.MAX_OFFSET.get(tp);
            if (seen != null && seen.get() + 1 >= end) {
                continue;
            }
            OffsetAndMetadata c = committed == null ? null : committed.get(tp);
            if (c != null && c.offset() >= end) {
                continue;
            }
            return false;
        }
        return true;
    }

    /** Every partition read (inputs and repartition topics) committed past the last record processed. */
    private static boolean allCommitted(Map<TopicPartition, OffsetAndMetadata> committed) {
        for (Map.Entry<TopicPartition, AtomicLong> e : Stats.MAX_OFFSET.entrySet()) {
            OffsetAndMetadata c = committed.get(e.getKey());
            if (c == null || c.offset() < e.getValue().get() + 1) {
                return false;
            }
        }
        return true;
    }

    private static Map<TopicPartition, Long> offsets(Admin admin, List<TopicPartition> parts, OffsetSpec spec)
            throws Exception {
        Map<TopicPartition, OffsetSpec> ask = new HashMap<>();
        parts.forEach(tp -> ask.put(tp, spec));
        Map<TopicPartition, ListOffsetsResultInfo> r = admin
                .listOffsets(ask, new ListOffsetsOptions(IsolationLevel.READ_COMMITTED))
                .all().get(30, TimeUnit.SECONDS);
        Map<TopicPartition, Long> out = new HashMap<>();
        r.forEach((tp, info) -> out.put(tp, info.offset()));
        return out;
    }

    private static void createIfAbsent(Admin admin, String topic, int partitions) throws Exception {
        try {
            admin.createTopics(List.of(new NewTopic(topic, java.util.Optional.of(partitions), java.util.Optional.empty())))
                    .all().get(30, TimeUnit.SECONDS);
        } catch (ExecutionException e) {
            if (!(e.getCause() instanceof TopicExistsException)) {
                throw e;
            }
        }
    }

    private static double metricSum(KafkaStreams streams, String name) {
        double sum = 0;
        for (Map.Entry<MetricName, ? extends Metric> e : streams.metrics().entrySet()) {
            if (e.getKey().name().equals(name) && e.getValue().metricValue() instanceof Number n) {
                sum += n.doubleValue();
            }
        }
        return sum;
    }

    /** CPU ns so far per kind of JVM thread. */
    private static Map<String, Long> cpuByThread() {
        ThreadMXBean mx = ManagementFactory.getThreadMXBean();
        Map<String, Long> out = new TreeMap<>();
        for (ThreadInfo t : mx.getThreadInfo(mx.getAllThreadIds())) {
            if (t == null) {
                continue;
            }
            long ns = mx.getThreadCpuTime(t.getThreadId());
            if (ns < 0) {
                continue;
            }
            String n = t.getThreadName();
            String kind;
            if (n.startsWith("kafka-producer-network-thread")) {
                kind = "producer_io";
            } else if (n.contains("StreamThread")) {
                kind = "stream_threads";
            } else if (n.contains("heartbeat") || n.contains("consumer")) {
                kind = "consumer_io";
            } else if (n.startsWith("kafka-admin-client")) {
                kind = "admin";
            } else {
                kind = "other_java";
            }
            out.merge(kind, ns, Long::sum);
        }
        addNativeThreads(out);
        return out;
    }

    private static Map<String, Object> cpuDelta(Map<String, Long> before, Map<String, Long> after, long processNs) {
        Map<String, Object> out = new TreeMap<>();
        long known = 0;
        for (Map.Entry<String, Long> e : after.entrySet()) {
            long d = e.getValue() - (before == null ? 0 : before.getOrDefault(e.getKey(), 0L));
            known += d;
            out.put(e.getKey(), Math.round(d / 1e6) / 1000.0);
        }
        out.put("unattributed", Math.round((processNs - known) / 1e6) / 1000.0);
        return out;
    }

    /**
     * CPU ns so far of the JVM's own threads, which are not Java threads
     * (GC, JIT compilers) and of RocksDB's background threads, from
     * /proc/self/task/{tid}/stat (Linux; clock ticks of 10 ms).
     */
    private static void addNativeThreads(Map<String, Long> out) {
        java.io.File[] tasks = new java.io.File("/proc/self/task").listFiles();
        if (tasks == null) {
            return;
        }
        for (java.io.File t : tasks) {
            try {
                String stat = java.nio.file.Files.readString(t.toPath().resolve("stat"));
                int open = stat.indexOf('(');
                int close = stat.lastIndexOf(')');
                String comm = stat.substring(open + 1, close);
                String[] f = stat.substring(close + 2).split(" ");
                long ns = (Long.parseLong(f[11]) + Long.parseLong(f[12])) * 10_000_000L;
                String kind;
                if (comm.startsWith("GC Thread") || comm.startsWith("G1 ") || comm.equals("VM Thread")) {
                    kind = "gc_and_vm";
                } else if (comm.startsWith("C1 Compiler") || comm.startsWith("C2 Compiler")) {
                    kind = "jit";
                } else if (comm.startsWith("rocksdb")) {
                    kind = "rocksdb_background";
                } else {
                    continue;
                }
                out.merge(kind, ns, Long::sum);
            } catch (java.io.IOException | RuntimeException e) {
                // a thread that ended meanwhile
            }
        }
    }

    @SuppressWarnings("unchecked")
    private static String toJson(Object o) {
        if (o == null) {
            return "null";
        }
        if (o instanceof Map<?, ?> m) {
            return m.entrySet().stream()
                    .map(e -> Keys.json(String.valueOf(e.getKey())) + ":" + toJson(e.getValue()))
                    .collect(Collectors.joining(",", "{", "}"));
        }
        if (o instanceof Number || o instanceof Boolean) {
            return String.valueOf(o);
        }
        return Keys.json(String.valueOf(o));
    }

    private static String need(Map<String, String> a, String k) {
        String v = a.get(k);
        if (v == null) {
            die("missing " + k + " (see --help)");
        }
        return v;
    }

    private static void die(String msg) {
        System.err.println("pushflow-kstreams-peer: " + msg);
        System.exit(64);
    }
}
