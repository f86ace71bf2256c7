//! The Confluent REST API over real HTTP against a real Postgres: every
//! route, its bodies, status codes, error codes and content type.

mod common;

use common::{delivered, reversed_keys, start, with_field, without_field};
use pushflow_registry::CONTENT_TYPE_V1;
use pushflow_schemas::CATALOGUE;
use serde_json::{json, Value};

#[tokio::test]
async fn registers_all_pushflow_schemas_and_serves_them_by_id() {
    let t = start().await;
    let mut ids = Vec::new();
    for topic in CATALOGUE {
        let id = t.register_ok(&topic.subject(), topic.schema_text).await;
        assert!(id > 0);
        let by_id = t.get(&format!("/schemas/ids/{id}")).await;
        assert_eq!(by_id.ok()["schema"], topic.schema_text);
        assert!(
            by_id.body.get("schemaType").is_none(),
            "AVRO omits schemaType"
        );
        let raw = t.get(&format!("/schemas/ids/{id}/schema")).await;
        assert_eq!(raw.status, 200);
        let raw: Value = serde_json::from_str(&raw.text).unwrap();
        assert_eq!(
            raw,
            serde_json::from_str::<Value>(topic.schema_text).unwrap()
        );
        let versions = t.get(&format!("/schemas/ids/{id}/versions")).await;
        assert_eq!(
            versions.ok(),
            &json!([{ "subject": topic.subject(), "version": 1 }])
        );
        ids.push(id);
    }
    let mut distinct = ids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), CATALOGUE.len(), "ids {ids:?}");

    let mut subjects: Vec<String> = CATALOGUE.iter().map(|t| t.subject()).collect();
    subjects.sort();
    assert_eq!(t.get("/subjects").await.ok(), &json!(subjects));
    assert_eq!(t.get("/schemas/types").await.ok(), &json!(["AVRO"]));
    assert_eq!(t.get("/").await.ok(), &json!({}));
    t.finish().await;
}

#[tokio::test]
async fn formatting_and_key_order_do_not_create_versions() {
    let t = start().await;
    let subject = "notification.delivered-value";
    let id = t.register_ok(subject, delivered()).await;

    // Every key order reversed, no whitespace: same schema.
    let reordered = reversed_keys(delivered());
    assert!(
        reordered.starts_with(r#"{"type":"record","namespace""#),
        "{reordered}"
    );
    assert_eq!(t.register_ok(subject, &reordered).await, id);
    let pretty =
        serde_json::to_string_pretty(&serde_json::from_str::<Value>(delivered()).unwrap()).unwrap();
    assert_eq!(t.register_ok(subject, &pretty).await, id);
    assert_eq!(
        t.get(&format!("/subjects/{subject}/versions")).await.ok(),
        &json!([1])
    );

    // Same schema, another subject: same global id, its own version 1.
    assert_eq!(t.register_ok("other-value", &pretty).await, id);
    assert_eq!(
        t.get("/subjects/other-value/versions/1").await.ok()["id"],
        id
    );
    let versions = t.get(&format!("/schemas/ids/{id}/versions")).await;
    assert_eq!(
        versions.ok(),
        &json!([{"subject": subject, "version": 1}, {"subject": "other-value", "version": 1}])
    );

    // Bodies are read with any of the accepted content types, or none.
    let body = json!({ "schema": delivered() });
    for ct in [
        None,
        Some("application/json"),
        Some("application/vnd.schemaregistry+json"),
    ] {
        let reply = t
            .post_as(&format!("/subjects/{subject}/versions"), &body, ct)
            .await;
        assert_eq!(reply.ok()["id"], id, "content type {ct:?}");
    }
    // A doc change is a new schema (documented choice, like Confluent).
    let new_doc = delivered().replace("(an impression)", "(one impression)");
    let new_id = t.register_ok(subject, &new_doc).await;
    assert_ne!(new_id, id);
    assert_eq!(
        t.get(&format!("/subjects/{subject}/versions")).await.ok(),
        &json!([1, 2])
    );
    t.finish().await;
}

#[tokio::test]
async fn lookup_returns_subject_version_id_and_schema() {
    let t = start().await;
    let subject = "notification.delivered-value";
    let id = t.register_ok(subject, delivered()).await;
    let reordered = reversed_keys(delivered());
    let found = t
        .post(
            &format!("/subjects/{subject}"),
            &json!({ "schema": reordered }),
        )
        .await;
    assert_eq!(
        found.ok(),
        &json!({ "subject": subject, "version": 1, "id": id, "schema": delivered() })
    );

    let unknown_subject = t
        .post("/subjects/nope-value", &json!({ "schema": delivered() }))
        .await;
    assert_eq!(
        unknown_subject.assert_error(404, 40401),
        "Subject 'nope-value' not found."
    );
    let other = with_field(
        delivered(),
        json!({"name": "x", "type": "int", "default": 0}),
    );
    let unknown_schema = t
        .post(&format!("/subjects/{subject}"), &json!({ "schema": other }))
        .await;
    assert_eq!(unknown_schema.assert_error(404, 40403), "Schema not found");
    t.finish().await;
}

#[tokio::test]
async fn versions_latest_and_raw_schemas() {
    let t = start().await;
    let s = "notification.delivered-value";
    let v2 = with_field(
        delivered(),
        json!({"name": "channel", "type": ["null", "string"], "default": null}),
    );
    let id1 = t.register_ok(s, delivered()).await;
    let id2 = t.register_ok(s, &v2).await;
    assert!(id2 > id1);
    assert_eq!(
        t.get(&format!("/subjects/{s}/versions")).await.ok(),
        &json!([1, 2])
    );
    for latest in ["latest", "-1", "2"] {
        let reply = t.get(&format!("/subjects/{s}/versions/{latest}")).await;
        assert_eq!(
            reply.ok(),
            &json!({"subject": s, "version": 2, "id": id2, "schema": v2})
        );
    }
    let first = t.get(&format!("/subjects/{s}/versions/1")).await;
    assert_eq!(first.ok()["id"], id1);
    let raw = t.get(&format!("/subjects/{s}/versions/1/schema")).await;
    assert_eq!(raw.status, 200);
    assert_eq!(raw.content_type, CONTENT_TYPE_V1);
    assert_eq!(raw.text, delivered());
    assert_eq!(
        t.get(&format!("/subjects/{s}/versions/2/referencedby"))
            .await
            .ok(),
        &json!([])
    );

    t.get(&format!("/subjects/{s}/versions/3"))
        .await
        .assert_error(404, 40402);
    let bad = t.get(&format!("/subjects/{s}/versions/abc")).await;
    assert!(bad.assert_error(422, 42202).contains("'abc'"));
    t.get(&format!("/subjects/{s}/versions/0"))
        .await
        .assert_error(422, 42202);
    t.get("/subjects/missing/versions")
        .await
        .assert_error(404, 40401);
    t.get("/subjects/missing/versions/latest")
        .await
        .assert_error(404, 40401);
    t.finish().await;
}

#[tokio::test]
async fn soft_and_permanent_deletes_never_reuse_ids() {
    let t = start().await;
    let s = "notification.delivered-value";
    let v2 = with_field(
        delivered(),
        json!({"name": "channel", "type": ["null", "string"], "default": null}),
    );
    let id1 = t.register_ok(s, delivered()).await;
    let id2 = t.register_ok(s, &v2).await;

    // Soft-delete version 2: gone from reads, latest is 1 again.
    assert_eq!(
        t.delete(&format!("/subjects/{s}/versions/2")).await.ok(),
        &json!(2)
    );
    assert_eq!(
        t.get(&format!("/subjects/{s}/versions")).await.ok(),
        &json!([1])
    );
    assert_eq!(
        t.get(&format!("/subjects/{s}/versions?deleted=true"))
            .await
            .ok(),
        &json!([1, 2])
    );
    assert_eq!(
        t.get(&format!("/subjects/{s}/versions/latest")).await.ok()["version"],
        1
    );
    t.get(&format!("/subjects/{s}/versions/2"))
        .await
        .assert_error(404, 40402);
    assert_eq!(
        t.get(&format!("/subjects/{s}/versions/2?deleted=true"))
            .await
            .ok()["id"],
        id2
    );
    t.delete(&format!("/subjects/{s}/versions/2"))
        .await
        .assert_error(404, 40406);
    t.delete(&format!("/subjects/{s}/versions/1?permanent=true"))
        .await
        .assert_error(404, 40407);

    // Re-registering a soft-deleted schema: a new version, same id.
    assert_eq!(t.register_ok(s, &v2).await, id2);
    assert_eq!(
        t.get(&format!("/subjects/{s}/versions")).await.ok(),
        &json!([1, 3])
    );

    // Subject: permanent delete requires a soft delete first.
    t.delete(&format!("/subjects/{s}?permanent=true"))
        .await
        .assert_error(404, 40405);
    assert_eq!(
        t.delete(&format!("/subjects/{s}")).await.ok(),
        &json!([1, 3])
    );
    t.delete(&format!("/subjects/{s}"))
        .await
        .assert_error(404, 40404);
    t.get(&format!("/subjects/{s}/versions"))
        .await
        .assert_error(404, 40401);
    assert_eq!(t.get("/subjects").await.ok(), &json!([]));
    assert_eq!(t.get("/subjects?deleted=true").await.ok(), &json!([s]));
    assert_eq!(
        t.delete(&format!("/subjects/{s}?permanent=true"))
            .await
            .ok(),
        &json!([1, 2, 3])
    );
    t.delete(&format!("/subjects/{s}"))
        .await
        .assert_error(404, 40401);
    assert_eq!(t.get("/subjects?deleted=true").await.ok(), &json!([]));

    // Ids are never reused: old ids still resolve (old Kafka records stay
    // decodable), a new schema gets a fresh id, the old schema its old id.
    assert_eq!(
        t.get(&format!("/schemas/ids/{id1}")).await.ok()["schema"],
        delivered()
    );
    assert_eq!(
        t.get(&format!("/schemas/ids/{id1}/versions")).await.ok(),
        &json!([])
    );
    let v3 = with_field(
        delivered(),
        json!({"name": "country", "type": "string", "default": ""}),
    );
    let id3 = t.register_ok(s, &v3).await;
    assert!(id3 > id2, "id {id3} reused (previous {id1}, {id2})");
    assert_eq!(
        t.get(&format!("/subjects/{s}/versions")).await.ok(),
        &json!([1])
    );
    assert_eq!(t.register_ok("again-value", delivered()).await, id1);
    t.finish().await;
}

#[tokio::test]
async fn config_global_and_per_subject() {
    let t = start().await;
    assert_eq!(
        t.get("/config").await.ok(),
        &json!({"compatibilityLevel": "BACKWARD"})
    );
    assert_eq!(
        t.put("/config", &json!({"compatibility": "FULL"}))
            .await
            .ok(),
        &json!({"compatibility": "FULL"})
    );
    assert_eq!(
        t.get("/config").await.ok(),
        &json!({"compatibilityLevel": "FULL"})
    );

    let msg = t
        .get("/config/s-value")
        .await
        .assert_error(404, 40408)
        .to_owned();
    assert!(msg.contains("s-value"), "{msg}");
    assert_eq!(
        t.get("/config/s-value?defaultToGlobal=true").await.ok(),
        &json!({"compatibilityLevel": "FULL"})
    );
    assert_eq!(
        t.put(
            "/config/s-value",
            &json!({"compatibility": "forward_transitive"})
        )
        .await
        .ok(),
        &json!({"compatibility": "FORWARD_TRANSITIVE"})
    );
    assert_eq!(
        t.get("/config/s-value").await.ok(),
        &json!({"compatibilityLevel": "FORWARD_TRANSITIVE"})
    );
    assert_eq!(
        t.delete("/config/s-value").await.ok(),
        &json!({"compatibilityLevel": "FORWARD_TRANSITIVE"})
    );
    t.delete("/config/s-value").await.assert_error(404, 40408);

    let bad = t
        .put("/config", &json!({"compatibility": "SIDEWAYS"}))
        .await;
    assert!(bad
        .assert_error(422, 42203)
        .starts_with("Invalid compatibility level"));
    t.put("/config/s-value", &json!({}))
        .await
        .assert_error(422, 42203);
    assert_eq!(
        t.delete("/config").await.ok(),
        &json!({"compatibilityLevel": "FULL"})
    );
    assert_eq!(
        t.get("/config").await.ok(),
        &json!({"compatibilityLevel": "BACKWARD"})
    );
    t.finish().await;
}

#[tokio::test]
async fn compatible_evolution_creates_a_new_version() {
    let t = start().await;
    let s = "notification.delivered-value";
    let id1 = t.register_ok(s, delivered()).await;
    let v2 = with_field(
        delivered(),
        json!({"name": "channel", "type": ["null", "string"], "default": null}),
    );
    let check = t
        .post(
            &format!("/compatibility/subjects/{s}/versions/latest"),
            &json!({"schema": v2}),
        )
        .await;
    assert_eq!(check.ok(), &json!({"is_compatible": true}));
    let id2 = t.register_ok(s, &v2).await;
    assert_ne!(id1, id2);
    assert_eq!(
        t.get(&format!("/subjects/{s}/versions/latest")).await.ok()["version"],
        2
    );
    t.finish().await;
}

#[tokio::test]
async fn backward_rejects_a_new_field_without_default_naming_it() {
    let t = start().await;
    let s = "notification.delivered-value";
    t.register_ok(s, delivered()).await;
    let bad = with_field(delivered(), json!({"name": "region", "type": "string"}));

    let reply = t.register(s, &bad).await;
    let message = reply.assert_error(409, 409);
    assert!(
        message.starts_with(&format!(
            "Schema being registered is incompatible with an earlier schema for subject \"{s}\", details: ["
        )),
        "{message}"
    );
    assert!(message.contains("The field 'region'"), "{message}");
    assert!(
        message.contains("READER_FIELD_MISSING_DEFAULT_VALUE"),
        "{message}"
    );
    assert_eq!(
        t.get(&format!("/subjects/{s}/versions")).await.ok(),
        &json!([1])
    );

    let verbose = t
        .post(
            &format!("/compatibility/subjects/{s}/versions/latest?verbose=true"),
            &json!({"schema": bad}),
        )
        .await;
    let body = verbose.ok();
    assert_eq!(body["is_compatible"], false);
    assert!(
        body["messages"][0].as_str().unwrap().contains("'region'"),
        "{body}"
    );
    let terse = t
        .post(
            &format!("/compatibility/subjects/{s}/versions/1"),
            &json!({"schema": bad}),
        )
        .await;
    assert_eq!(terse.ok(), &json!({"is_compatible": false}));
    let all = t
        .post(
            &format!("/compatibility/subjects/{s}/versions"),
            &json!({"schema": bad}),
        )
        .await;
    assert_eq!(all.ok(), &json!({"is_compatible": false}));

    // NONE lets it through.
    t.put(&format!("/config/{s}"), &json!({"compatibility": "NONE"}))
        .await
        .ok();
    t.register_ok(s, &bad).await;
    t.finish().await;
}

#[tokio::test]
async fn forward_rejects_removing_a_required_field_naming_it() {
    let t = start().await;
    let s = "notification.delivered-value";
    t.register_ok(s, delivered()).await;
    let removed = without_field(delivered(), "campaign_id");

    // Under BACKWARD, dropping a field is fine: the reader ignores it.
    let check = t
        .post(
            &format!("/compatibility/subjects/{s}/versions/latest"),
            &json!({"schema": removed}),
        )
        .await;
    assert_eq!(check.ok(), &json!({"is_compatible": true}));

    t.put(
        &format!("/config/{s}"),
        &json!({"compatibility": "FORWARD"}),
    )
    .await
    .ok();
    let reply = t.register(s, &removed).await;
    let message = reply.assert_error(409, 409);
    assert!(message.contains("The field 'campaign_id'"), "{message}");
    assert!(message.contains("{compatibility: 'FORWARD'}"), "{message}");
    t.finish().await;
}

#[tokio::test]
async fn full_requires_both_directions() {
    let t = start().await;
    let s = "notification.delivered-value";
    t.put(&format!("/config/{s}"), &json!({"compatibility": "FULL"}))
        .await
        .ok();
    t.register_ok(s, delivered()).await;

    let added_required = with_field(delivered(), json!({"name": "region", "type": "string"}));
    let message = t
        .register(s, &added_required)
        .await
        .assert_error(409, 409)
        .to_owned();
    assert!(message.contains("'region'"), "{message}");
    let removed_required = without_field(delivered(), "store_id");
    let message = t
        .register(s, &removed_required)
        .await
        .assert_error(409, 409)
        .to_owned();
    assert!(message.contains("'store_id'"), "{message}");

    let channel = json!({"name": "channel", "type": ["null", "string"], "default": null});
    let added_optional = with_field(
        &with_field(
            delivered(),
            json!({"name": "region", "type": "string", "default": "eu"}),
        ),
        channel.clone(),
    );
    t.register_ok(s, &added_optional).await;
    // Removing a field that has a default is fine both ways.
    t.register_ok(s, &with_field(delivered(), channel)).await;
    // And re-registering a live version creates nothing.
    t.register_ok(s, delivered()).await;
    assert_eq!(
        t.get(&format!("/subjects/{s}/versions")).await.ok(),
        &json!([1, 2, 3])
    );
    t.finish().await;
}

#[tokio::test]
async fn compatibility_of_missing_subjects_and_versions() {
    let t = start().await;
    let body = json!({"schema": delivered()});
    t.post("/compatibility/subjects/missing/versions/latest", &body)
        .await
        .assert_error(404, 40401);
    t.post("/compatibility/subjects/missing/versions/1", &body)
        .await
        .assert_error(404, 40401);
    let s = "notification.delivered-value";
    t.register_ok(s, delivered()).await;
    t.post(&format!("/compatibility/subjects/{s}/versions/7"), &body)
        .await
        .assert_error(404, 40402);
    t.post(&format!("/compatibility/subjects/{s}/versions/x"), &body)
        .await
        .assert_error(422, 42202);
    // A subject whose versions are all soft-deleted accepts anything.
    t.delete(&format!("/subjects/{s}")).await.ok();
    let other = without_field(delivered(), "campaign_id");
    let reply = t
        .post(
            &format!("/compatibility/subjects/{s}/versions/latest"),
            &json!({"schema": other}),
        )
        .await;
    assert_eq!(reply.ok(), &json!({"is_compatible": true}));
    t.finish().await;
}

#[tokio::test]
async fn errors_have_confluent_codes_bodies_and_content_type() {
    let t = start().await;
    assert_eq!(
        t.get("/subjects/nope/versions")
            .await
            .assert_error(404, 40401),
        "Subject 'nope' not found."
    );
    let s = "notification.delivered-value";
    t.register_ok(s, delivered()).await;
    assert_eq!(
        t.get(&format!("/subjects/{s}/versions/9"))
            .await
            .assert_error(404, 40402),
        "Version 9 not found."
    );
    assert_eq!(
        t.get("/schemas/ids/424242").await.assert_error(404, 40403),
        "Schema 424242 not found"
    );
    t.get("/schemas/ids/424242/schema")
        .await
        .assert_error(404, 40403);
    t.get("/schemas/ids/424242/versions")
        .await
        .assert_error(404, 40403);

    let invalid = t
        .register(
            s,
            r#"{"type": "record", "name": "X", "fields": [{"name": "a", "type": "strng"}]}"#,
        )
        .await;
    let message = invalid.assert_error(422, 42201);
    assert!(message.starts_with("Invalid schema"), "{message}");
    assert!(message.contains("strng"), "{message}");
    t.register(s, "{ not json").await.assert_error(422, 42201);
    t.register(s, "").await.assert_error(422, 42201);
    let proto = t
        .post(
            &format!("/subjects/{s}/versions"),
            &json!({"schema": "syntax = \"proto3\";", "schemaType": "PROTOBUF"}),
        )
        .await;
    assert!(proto.assert_error(422, 42201).contains("only AVRO"));
    t.put("/config", &json!({"compatibility": "MAYBE"}))
        .await
        .assert_error(422, 42203);

    let not_found = t.get("/no/such/route").await;
    assert_eq!(not_found.assert_error(404, 404), "HTTP 404 Not Found");
    t.post_as("/subjects/x/versions", &json!({}), Some("text/plain"))
        .await
        .assert_error(415, 415);
    let garbage = t
        .post_as(&format!("/subjects/{s}/versions"), &json!("x"), None)
        .await;
    garbage.assert_error(400, 400);
    t.finish().await;
}
