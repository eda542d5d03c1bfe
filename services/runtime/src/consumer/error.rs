//! Why a consumer group stopped other than by shutdown.

/// Why a group stopped other than by shutdown.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("transaction: {0}")]
    Transaction(String),
    #[error(
        "dead-letter flood guard tripped: {dead} of the last {window} events were dead-lettered \
         (last error: {last_error}); the group stopped instead of dead-lettering the whole topic"
    )]
    DeadLetterFlood {
        dead: usize,
        window: usize,
        last_error: String,
    },
}
