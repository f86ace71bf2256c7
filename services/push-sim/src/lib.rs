//! A local push service that verifies VAPID and decrypts aes128gcm (being written).
