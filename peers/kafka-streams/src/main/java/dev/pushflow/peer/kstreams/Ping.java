package dev.pushflow.peer.kstreams;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;

/** A decoded ping: only the fields the aggregate needs. */
public final class Ping {
    /** notification.delivered: an impression. */
    public static final byte DELIVERED = 0;
    /** notification.clicked. */
    public static final byte CLICKED = 1;

    public final byte kind;
    /** Null after a repartition (the dedup is done by then; it is not shipped). */
    public final String notificationId;
    public final String storeId;
    public final String campaignId;
    /** Event time, ms since the epoch. */
    public final long occurredAt;
    /**
     * Bit i set: late for window i of {@link PeerTopology#WINDOWS} by the
     * per-input-partition rule (only with --lateness partition; else 0).
     */
    public final byte lateMask;

    public Ping(byte kind, String notificationId, String storeId, String campaignId, long occurredAt) {
        this(kind, notificationId, storeId, campaignId, occurredAt, (byte) 0);
    }

    public Ping(byte kind, String notificationId, String storeId, String campaignId, long occurredAt, byte lateMask) {
        this.kind = kind;
        this.notificationId = notificationId;
        this.storeId = storeId;
        this.campaignId = campaignId;
        this.occurredAt = occurredAt;
        this.lateMask = lateMask;
    }

    public Ping withLateMask(byte mask) {
        return new Ping(kind, notificationId, storeId, campaignId, occurredAt, mask);
    }

    /**
     * The repartition-topic format: kind (1 byte), late mask (1), occurred_at (8), then
     * store_id and campaign_id, each as a 4-byte length and UTF-8 bytes.
     */
    public static Serde<Ping> serde() {
        Serializer<Ping> ser = (topic, p) -> {
            if (p == null) {
                return null;
            }
            byte[] s = p.storeId.getBytes(StandardCharsets.UTF_8);
            byte[] c = p.campaignId.getBytes(StandardCharsets.UTF_8);
            ByteBuffer b = ByteBuffer.allocate(2 + 8 + 4 + s.length + 4 + c.length);
            b.put(p.kind).put(p.lateMask).putLong(p.occurredAt).putInt(s.length).put(s).putInt(c.length).put(c);
            return b.array();
        };
        Deserializer<Ping> de = (topic, bytes) -> {
            if (bytes == null) {
                return null;
            }
            ByteBuffer b = ByteBuffer.wrap(bytes);
            byte kind = b.get();
            byte mask = b.get();
            long at = b.getLong();
            int sl = b.getInt();
            String s = new String(bytes, b.position(), sl, StandardCharsets.UTF_8);
            b.position(b.position() + sl);
            int cl = b.getInt();
            String c = new String(bytes, b.position(), cl, StandardCharsets.UTF_8);
            return new Ping(kind, null, s, c, at, mask);
        };
        return Serdes.serdeFrom(ser, de);
    }
}
