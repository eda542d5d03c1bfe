//! Publishing through the real broker: routing, key, CloudEvents headers, decodable value, and
//! validation that produces nothing.

use std::time::Duration;

use circulatory::codec::avro_to_json;
use circulatory::kafka::{self, ProducerSettings};
use circulatory::publisher::{EventDraft, EventPublisher, ValidationError};
use circulatory_testkit::{header, is_empty, read_records, sample_data, TestEnv};
use rdkafka::message::Message;

fn publisher(env: &TestEnv) -> EventPublisher {
    let producer = kafka::producer(&env.kafka, &ProducerSettings::default()).unwrap();
    EventPublisher::new(env.catalog.clone(), env.registry.clone(), producer, "/test")
}

#[tokio::test]
async fn a_published_event_is_keyed_headed_and_decodable() {
    let env = TestEnv::new();
    let topic = env.topic_of("video.uploaded");
    env.create_topics(&[&topic]).await;
    let publisher = publisher(&env);
    let event = env.catalog.event("video.uploaded").unwrap();
    let data = sample_data(&event.schema_json);
    let video_id = data["videoId"].as_str().unwrap().to_string();
    let validated = publisher
        .validate(EventDraft {
            event_type: "video.uploaded".into(),
            data: data.clone(),
            subject: Some(format!("videos/{video_id}")),
            correlation_id: Some("corr-1".into()),
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            ..EventDraft::default()
        })
        .unwrap();
    let delivered = publisher.publish(validated).await.unwrap();
    assert_eq!(delivered.topic, topic);

    let records = read_records(&env.kafka, &topic, 1, Duration::from_secs(20)).await;
    let record = &records[0];
    assert_eq!(record.partition(), delivered.partition);
    assert_eq!(record.offset(), delivered.offset);
    assert_eq!(record.key(), Some(video_id.as_bytes()));
    assert_eq!(header(record, "ce_specversion").as_deref(), Some("1.0"));
    assert_eq!(header(record, "ce_type").as_deref(), Some("video.uploaded"));
    assert_eq!(
        header(record, "ce_id").as_deref(),
        Some(delivered.id.as_str())
    );
    assert_eq!(header(record, "ce_source").as_deref(), Some("/test"));
    assert_eq!(
        header(record, "ce_subject"),
        Some(format!("videos/{video_id}"))
    );
    assert_eq!(
        header(record, "content-type").as_deref(),
        Some("application/avro")
    );
    assert_eq!(header(record, "correlation_id").as_deref(), Some("corr-1"));
    assert!(header(record, "traceparent").is_some());
    assert!(header(record, "ce_time").is_some());
    let decoded = env.oracle.decode(record.payload().unwrap()).await.unwrap();
    assert_eq!(avro_to_json(&decoded.value), data);
}

#[tokio::test]
async fn an_invalid_event_is_refused_before_anything_is_produced() {
    let env = TestEnv::new();
    let topic = env.topic_of("payment.initiated");
    env.create_topics(&[&topic]).await;
    let publisher = publisher(&env);
    let mut data = sample_data(&env.catalog.event("payment.initiated").unwrap().schema_json);
    data["amountMinor"] = serde_json::json!("five");
    let error = publisher
        .validate(EventDraft {
            event_type: "payment.initiated".into(),
            data,
            ..EventDraft::default()
        })
        .unwrap_err();
    let ValidationError::Schema { errors, .. } = error else {
        panic!("expected schema errors, got {error:?}");
    };
    assert_eq!(errors[0].path, "/amountMinor");
    assert!(matches!(
        publisher.validate(EventDraft {
            event_type: "payment.refunded".into(),
            ..EventDraft::default()
        }),
        Err(ValidationError::UnknownType(_))
    ));
    assert!(is_empty(&env.kafka, &topic).await);
}
