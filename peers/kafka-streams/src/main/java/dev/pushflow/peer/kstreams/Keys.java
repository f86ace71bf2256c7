package dev.pushflow.peer.kstreams;

import java.time.LocalDate;

/** Internal keys and the JSON the output topics carry. */
public final class Keys {
    private Keys() {}

    /** Two strings as one unambiguous key: "<length of a>:<a><b>". */
    public static String pair(String a, String b) {
        return a.length() + ":" + a + b;
    }

    /** The two strings of {@link #pair}. */
    public static String[] unpair(String key) {
        int colon = key.indexOf(':');
        int len = Integer.parseInt(key.substring(0, colon));
        int start = colon + 1;
        return new String[] {key.substring(start, start + len), key.substring(start + len)};
    }

    /** First day of the UTC month of {@code ms}, as YYYY-MM-01. */
    public static String monthOf(long ms) {
        LocalDate d = LocalDate.ofEpochDay(Math.floorDiv(ms, 86_400_000L));
        int y = d.getYear();
        int m = d.getMonthValue();
        if (y < 1000 || y > 9999) {
            return String.format("%04d-%02d-01", y, m);
        }
        return y + (m < 10 ? "-0" : "-") + m + "-01";
    }

    /** A JSON string literal. */
    public static String json(String s) {
        StringBuilder b = new StringBuilder(s.length() + 2).append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> b.append("\\\"");
                case '\\' -> b.append("\\\\");
                case '\n' -> b.append("\\n");
                case '\r' -> b.append("\\r");
                case '\t' -> b.append("\\t");
                default -> {
                    if (c < 0x20) {
                        b.append(String.format("\\u%04x", (int) c));
                    } else {
                        b.append(c);
                    }
                }
            }
        }
        return b.append('"').toString();
    }
}
