//! The codec against the real schema registry: every catalog schema registers and round-trips
//! JSON → Avro → Confluent wire format → JSON; evolution is guarded by FULL_TRANSITIVE.

use circulatory::codec::{avro_to_json, json_to_avro, write_datum};
use circulatory::registry::{RegistryError, COMPATIBILITY};
use circulatory_testkit::{sample_data, TestEnv};
use serde_json::json;

#[tokio::test]
async fn every_schema_round_trips_through_the_wire_format() {
    let env = TestEnv::new();
    let mut checked = 0;
    for event in env.catalog.events().filter(|e| e.topic.is_some()) {
        let data = sample_data(&event.schema_json);
        let value = json_to_avro(&event.schema, &data)
            .unwrap_or_else(|e| panic!("{}: sample rejected: {e:?}", event.name()));
        let datum = write_datum(&event.schema, value).unwrap();
        let bytes = env
            .registry
            .encode(event, &datum)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", event.name()));
        assert_eq!(bytes[0], 0, "magic byte");
        let subject = event.subject().unwrap();
        let id = env
            .registry
            .lookup(&subject, event.schema_text())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{subject} not registered"));
        assert_eq!(u32::from_be_bytes(bytes[1..5].try_into().unwrap()), id);
        let decoded = env.oracle.decode(&bytes).await.unwrap();
        assert_eq!(decoded.full_name.as_deref(), Some(event.full_name.as_str()));
        assert_eq!(avro_to_json(&decoded.value), data, "{}", event.name());
        // Consumers' path: the writer's schema fetched by id and compiled, straight to JSON.
        let direct = env.registry.decode_json(&bytes).await.unwrap();
        assert_eq!(direct.schema_id, id);
        assert_eq!(direct.full_name.as_deref(), Some(event.full_name.as_str()));
        assert_eq!(direct.data, data, "{}", event.name());
        // The second value of a type is framed without the converter, under the id learned.
        let again = env.registry.encode(event, &datum).await.unwrap();
        assert_eq!(again[..5], bytes[..5], "{}: same schema id", event.name());
        let decoded = env.oracle.decode(&again).await.unwrap();
        assert_eq!(avro_to_json(&decoded.value), data, "{}", event.name());
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} schemas checked");
}

#[tokio::test]
async fn an_incompatible_change_is_refused_with_the_registry_reason() {
    let env = TestEnv::new();
    let event = env.catalog.event("payment.initiated").unwrap();
    let subject = event.subject().unwrap();
    env.registry
        .set_compatibility(Some(&subject), COMPATIBILITY)
        .await
        .unwrap();
    env.registry
        .register(&subject, event.schema_text())
        .await
        .unwrap();

    let mut changed = (*event.schema_json).clone();
    changed["fields"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "riskScore", "type": "int", "doc": "Required, no default."}));
    let changed = changed.to_string();
    let verdict = env
        .registry
        .check_compatibility(&subject, &changed)
        .await
        .unwrap();
    assert!(!verdict.compatible);
    match env.registry.register(&subject, &changed).await {
        Err(RegistryError::Refused(reason)) => assert!(!reason.is_empty()),
        other => panic!("expected a refusal, got {other:?}"),
    }

    let mut optional = (*event.schema_json).clone();
    optional["fields"].as_array_mut().unwrap().push(
        json!({"name": "riskScore", "type": ["null", "int"], "default": null, "doc": "Optional."}),
    );
    let optional = optional.to_string();
    assert!(
        env.registry
            .check_compatibility(&subject, &optional)
            .await
            .unwrap()
            .compatible
    );
    env.registry.register(&subject, &optional).await.unwrap();
}

#[tokio::test]
async fn bytes_that_are_not_wire_format_are_undecodable() {
    let env = TestEnv::new();
    for bytes in [
        &b"{\"json\":true}"[..],
        &[0u8, 0, 0][..],
        &[0u8, 0x7f, 0xff, 0xff, 0xf0, 2][..],
    ] {
        match env.registry.decode_json(bytes).await {
            Err(RegistryError::Undecodable(_)) => {}
            other => panic!("{bytes:?}: expected Undecodable, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_writer_schema_the_codec_cannot_compile_makes_its_values_undecodable_with_why() {
    let env = TestEnv::new();
    let subject = format!("{}.tests-circulatory.tests.Markers", env.namespace);
    let schema = json!({
        "type": "record", "name": "Markers", "namespace": "circulatory.tests",
        "fields": [{"name": "markers", "type": {"type": "array", "items": "null"}}]
    });
    let id = env
        .registry
        .register(&subject, &schema.to_string())
        .await
        .unwrap();
    let mut bytes = vec![0];
    bytes.extend_from_slice(&id.to_be_bytes());
    bytes.push(0); // an empty array
    match env.registry.decode_json(&bytes).await {
        Err(RegistryError::Undecodable(why)) => assert!(
            why.contains(&format!("schema {id}"))
                && why.contains("an array whose items may take no bytes"),
            "{why}"
        ),
        other => panic!("expected Undecodable, got {other:?}"),
    }
    let oracle = env
        .oracle
        .decode(&bytes)
        .await
        .expect("apache-avro reads it");
    assert_eq!(oracle.json(), json!({"markers": []}));
}
