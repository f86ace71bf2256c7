//! The typed side of a decoded record, as the processors see it.
//!
//! A value valid for a catalogue topic's schema must also read as the
//! topic's event struct (dispatch and aggregate call `Codec::decode::<E>`;
//! a refusal there would send a valid record to the DLQ), and writing the
//! struct back must give the same value.

use apache_avro::types::Value;
use futures::executor::block_on;
use pushflow_runtime::codec::Codec;
use pushflow_schemas::{
    CampaignCreated, CampaignLaunched, Event, NotificationClicked, NotificationDelivered,
    NotificationDispatched, NotificationFailed, SubscriptionCreated, SubscriptionExpired, Topic,
};
use std::fmt::Debug;

/// Checks that `bytes`, which decode to `value` for `topic`, also decode
/// to the topic's event, and that the event encodes back to `value`.
pub fn round_trip(codec: &Codec, topic: &'static Topic, bytes: &[u8], value: &Value) {
    match topic.name {
        CampaignCreated::TOPIC => typed::<CampaignCreated>(codec, bytes, value),
        CampaignLaunched::TOPIC => typed::<CampaignLaunched>(codec, bytes, value),
        SubscriptionCreated::TOPIC => typed::<SubscriptionCreated>(codec, bytes, value),
        SubscriptionExpired::TOPIC => typed::<SubscriptionExpired>(codec, bytes, value),
        NotificationDispatched::TOPIC => typed::<NotificationDispatched>(codec, bytes, value),
        NotificationFailed::TOPIC => typed::<NotificationFailed>(codec, bytes, value),
        NotificationDelivered::TOPIC => typed::<NotificationDelivered>(codec, bytes, value),
        NotificationClicked::TOPIC => typed::<NotificationClicked>(codec, bytes, value),
        other => panic!("catalogue topic {other} has no event type in this check"),
    }
}

fn typed<E: Event + PartialEq + Debug>(codec: &Codec, bytes: &[u8], value: &Value) {
    let event: E = block_on(codec.decode(bytes)).unwrap_or_else(|e| {
        panic!(
            "{}: a record valid for the schema is refused by the typed decoder: {e}",
            E::TOPIC
        )
    });
    let again = block_on(codec.encode(&event))
        .unwrap_or_else(|e| panic!("{}: a decoded event does not encode: {e}", E::TOPIC));
    let back = block_on(codec.decode_value(E::topic(), &again))
        .unwrap_or_else(|e| panic!("{}: a re-encoded event does not decode: {e}", E::TOPIC));
    assert_eq!(
        &back,
        value,
        "{}: the event does not encode back to the value it was read from",
        E::TOPIC
    );
    let event_again: E = block_on(codec.decode(&again)).expect("decoded just above");
    assert_eq!(event_again, event, "{}: typed round trip", E::TOPIC);
}
