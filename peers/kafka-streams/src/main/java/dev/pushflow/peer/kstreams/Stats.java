package dev.pushflow.peer.kstreams;

import java.lang.management.ManagementFactory;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAdder;
import org.apache.kafka.common.TopicPartition;

/**
 * What the processors have seen, for the run-until-caught-up monitor: the
 * highest offset processed per source partition (inputs and repartition
 * topics), and counts per stage. Updated after a record's downstream work
 * returned (forward is synchronous), so "offset seen" means "fully processed".
 */
public final class Stats {
    private Stats() {}

    /** Highest offset fully processed, per partition read. */
    public static final Map<TopicPartition, AtomicLong> MAX_OFFSET = new ConcurrentHashMap<>();
    /** Records processed per stage name. */
    public static final Map<String, LongAdder> COUNTS = new ConcurrentHashMap<>();
    /** System.currentTimeMillis() of the first input record, 0 before. */
    public static final AtomicLong FIRST_RECORD_MS = new AtomicLong();
    /** Process CPU ns when the first input record arrived. */
    public static volatile long firstRecordCpuNs;

    public static LongAdder count(String stage) {
        return COUNTS.computeIfAbsent(stage, s -> new LongAdder());
    }

    public static long get(String stage) {
        LongAdder a = COUNTS.get(stage);
        return a == null ? 0 : a.sum();
    }

    public static AtomicLong offsetOf(TopicPartition tp) {
        return MAX_OFFSET.computeIfAbsent(tp, t -> new AtomicLong(-1));
    }

    /** Notes the first input record (once). */
    public static void firstRecord() {
        if (FIRST_RECORD_MS.get() == 0 && FIRST_RECORD_MS.compareAndSet(0, System.currentTimeMillis())) {
            firstRecordCpuNs = processCpuNs();
        }
    }

    public static long processCpuNs() {
        if (ManagementFactory.getOperatingSystemMXBean() instanceof com.sun.management.OperatingSystemMXBean os) {
            return os.getProcessCpuTime();
        }
        return -1;
    }
}
