package dev.pushflow.peer.kstreams;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.DecoderFactory;

/**
 * Decodes record values in the Confluent wire format: magic byte 0, a 4-byte
 * big-endian schema id, then the Avro binary body. The reader schema is the
 * repository's .avsc; the writer schema is the registry's schema of that id
 * (GET /schemas/ids/{id}) when a registry URL is given, otherwise the reader
 * schema itself (every id is taken to be the .avsc's schema).
 *
 * One instance per stream task (not thread-safe); the writer schemas are
 * shared by all.
 */
public final class Decoder {
    /** A value that is not a decodable ping (counted, then skipped). */
    public static final class BadRecord extends Exception {
        public BadRecord(String why) {
            super(why);
        }
    }

    private static final Map<Integer, Schema> WRITERS = new ConcurrentHashMap<>();
    private static final HttpClient HTTP = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();

    private final byte kind;
    private final Schema reader;
    private final String registry;
    private final Map<Integer, GenericDatumReader<GenericRecord>> readers = new HashMap<>();
    private final int nid;
    private final int store;
    private final int campaign;
    private final int occurred;
    private BinaryDecoder decoder;
    private GenericRecord reuse;

    public Decoder(byte kind, Schema reader, String registry) {
        this.kind = kind;
        this.reader = reader;
        this.registry = registry;
        this.nid = reader.getField("notification_id").pos();
        this.store = reader.getField("store_id").pos();
        this.campaign = reader.getField("campaign_id").pos();
        this.occurred = reader.getField("occurred_at").pos();
        this.reuse = new GenericData.Record(reader);
    }

    /** The reader schema of a topic kind, from the schemas folder. */
    public static Schema readerSchema(Path schemas, byte kind) throws IOException {
        String file = kind == Ping.CLICKED ? "notification.clicked.avsc" : "notification.delivered.avsc";
        return new Schema.Parser().parse(Files.readString(schemas.resolve(file)));
    }

    public Ping decode(byte[] value) throws BadRecord {
        if (value == null || value.length < 5) {
            throw new BadRecord("shorter than the 5-byte Confluent header");
        }
        if (value[0] != 0) {
            throw new BadRecord("magic byte " + value[0] + ", not 0");
        }
        int id = ((value[1] & 0xff) << 24) | ((value[2] & 0xff) << 16) | ((value[3] & 0xff) << 8) | (value[4] & 0xff);
        GenericDatumReader<GenericRecord> r = readers.get(id);
        if (r == null) {
            r = new GenericDatumReader<>(writerSchema(id, reader, registry), reader);
            readers.put(id, r);
        }
        decoder = DecoderFactory.get().binaryDecoder(value, 5, value.length - 5, decoder);
        try {
            reuse = r.read(reuse, decoder);
        } catch (IOException | RuntimeException e) {
            throw new BadRecord("Avro body of schema " + id + ": " + e);
        }
        Object n = reuse.get(nid);
        Object s = reuse.get(store);
        Object c = reuse.get(campaign);
        Object t = reuse.get(occurred);
        if (n == null || s == null || c == null || !(t instanceof Long)) {
            throw new BadRecord("missing notification_id, store_id, campaign_id or occurred_at");
        }
        return new Ping(kind, n.toString(), s.toString(), c.toString(), (Long) t);
    }

    /** The writer schema of an id: the registry's, or {@code reader} without a registry. */
    public static Schema writerSchema(int id, Schema reader, String registry) {
        if (registry == null) {
            return reader;
        }
        return WRITERS.computeIfAbsent(id, i -> fetch(registry, i));
    }

    /** The schema id of a Confluent wire-format value, or -1. */
    public static int schemaId(byte[] value) {
        if (value == null || value.length < 5 || value[0] != 0) {
            return -1;
        }
        return ((value[1] & 0xff) << 24) | ((value[2] & 0xff) << 16) | ((value[3] & 0xff) << 8) | (value[4] & 0xff);
    }

    /**
     * occurred_at of a wire-format value without decoding the rest: the
     * fields before it (in the writer schema's order) are skipped.
     */
    public static long occurredAt(byte[] value, Schema reader, String registry) throws BadRecord {
        int id = schemaId(value);
        if (id < 0) {
            throw new BadRecord("not in the Confluent wire format");
        }
        Schema w = writerSchema(id, reader, registry);
        BinaryDecoder d = DecoderFactory.get().binaryDecoder(value, 5, value.length - 5, null);
        try {
            for (Schema.Field f : w.getFields()) {
                if (f.name().equals("occurred_at") && f.schema().getType() == Schema.Type.LONG) {
                    return d.readLong();
                }
                GenericDatumReader.skip(f.schema(), d);
            }
        } catch (IOException | RuntimeException e) {
            throw new BadRecord("Avro body of schema " + id + ": " + e);
        }
        throw new BadRecord("schema " + id + " has no long occurred_at");
    }

    /** The registry's schema of an id; a registry that cannot answer stops the app (never a silent skip). */
    private static Schema fetch(String registry, int id) {
        String url = registry.replaceAll("/+$", "") + "/schemas/ids/" + id;
        try {
            HttpResponse<String> res = HTTP.send(
                    HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(10)).GET().build(),
                    HttpResponse.BodyHandlers.ofString());
            if (res.statusCode() != 200) {
                throw new IllegalStateException("GET " + url + ": HTTP " + res.statusCode() + " " + res.body());
            }
            JsonNode body = new ObjectMapper().readTree(res.body());
            return new Schema.Parser().parse(body.get("schema").asText());
        } catch (IOException e) {
            throw new IllegalStateException("GET " + url + ": " + e, e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("GET " + url + ": interrupted", e);
        }
    }
}
