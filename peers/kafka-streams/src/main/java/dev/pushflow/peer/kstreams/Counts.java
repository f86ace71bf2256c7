package dev.pushflow.peer.kstreams;

import java.nio.ByteBuffer;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;

/** Delivered (impressions) and clicked counts of one window or month. */
public final class Counts {
    public final long delivered;
    public final long clicked;

    public Counts(long delivered, long clicked) {
        this.delivered = delivered;
        this.clicked = clicked;
    }

    public static Counts zero() {
        return new Counts(0, 0);
    }

    /** These counts plus one ping. */
    public Counts plus(Ping p) {
        return p.kind == Ping.CLICKED ? new Counts(delivered, clicked + 1) : new Counts(delivered + 1, clicked);
    }

    /** 16 bytes: delivered, clicked (big-endian longs). */
    public static Serde<Counts> serde() {
        Serializer<Counts> ser = (topic, c) -> c == null ? null
                : ByteBuffer.allocate(16).putLong(c.delivered).putLong(c.clicked).array();
        Deserializer<Counts> de = (topic, bytes) -> {
            if (bytes == null) {
                return null;
            }
            ByteBuffer b = ByteBuffer.wrap(bytes);
            return new Counts(b.getLong(), b.getLong());
        };
        return Serdes.serdeFrom(ser, de);
    }
}
