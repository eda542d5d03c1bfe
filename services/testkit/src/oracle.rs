//! The oracle of the tests: wire-format values decoded by `schema_registry_converter`'s own
//! decoder (`apache-avro` underneath), an implementation independent of the compiled codec the
//! services use. A test that reads what a service wrote through it checks the codec too.

use apache_avro::types::Value;
use schema_registry_converter::async_impl::avro::AvroDecoder;
use schema_registry_converter::async_impl::schema_registry::SrSettings;

/// A wire-format value as the oracle read it.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub schema_id: u32,
    /// Avro full name of the writer's record.
    pub full_name: Option<String>,
    pub value: Value,
}

impl Decoded {
    /// The value in the catalog's JSON form.
    pub fn json(&self) -> serde_json::Value {
        circulatory::codec::avro_to_json(&self.value)
    }
}

/// Decodes with the writer's schema, fetched by id from the registry at `url`.
pub struct Oracle {
    decoder: AvroDecoder,
}

impl Oracle {
    pub fn new(url: &str) -> Oracle {
        let settings = SrSettings::new_builder(url.to_string())
            .no_proxy()
            .build()
            .expect("registry settings");
        Oracle {
            decoder: AvroDecoder::new(settings),
        }
    }

    /// Decodes `bytes`; an error says why (not wire format, unknown id, bad datum).
    pub async fn decode(&self, bytes: &[u8]) -> Result<Decoded, String> {
        let schema_id = match bytes {
            [0, a, b, c, d, ..] => u32::from_be_bytes([*a, *b, *c, *d]),
            _ => return Err("not Confluent wire format".into()),
        };
        let decoded = self
            .decoder
            .decode(Some(bytes))
            .await
            .map_err(|e| e.to_string())?;
        Ok(Decoded {
            schema_id,
            full_name: decoded.name.map(|n| n.fullname(None)),
            value: decoded.value,
        })
    }
}
