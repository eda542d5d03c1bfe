//! `codec-bench`: per-event cost of JSON ⇄ Avro binary, the `Value` path against the direct
//! codec (`circulatory::codec::CompiledSchema`). Pure CPU, no services.
//!
//! Encode, old: `json_to_avro` + `record_field_string` (the partition key) + a
//! `GenericDatumWriter` built per event, as the publisher and registry do. New:
//! `CompiledSchema::encode_json_keyed` into a reused buffer.
//! Decode, old: `apache_avro::from_avro_datum` (a `GenericDatumReader` built per value) +
//! `avro_to_json`. New: `CompiledSchema::decode_json`.
//!
//! Prints ns/event, the median of `--repetitions` runs of `--iterations` events each.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema::{Schema, UuidSchema};
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use circulatory::catalog::{Catalog, CatalogPaths};
use circulatory::codec::{avro_to_json, json_to_avro, record_field_string, CompiledSchema};
use clap::Parser;
use serde_json::{json, Map, Value as Json};

#[derive(Debug, Parser)]
#[command(
    name = "codec-bench",
    about = "JSON ⇄ Avro per-event cost: Value path vs direct codec."
)]
struct Cli {
    /// Events per timed run.
    #[arg(long, default_value_t = 200_000)]
    iterations: usize,
    /// Timed runs per measurement; the median is printed.
    #[arg(long, default_value_t = 5)]
    repetitions: usize,
    /// Directory holding topics.yaml and schemas/.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))]
    root: PathBuf,
    /// Event types to measure.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "like.added,post.created,video.uploaded,payment.initiated,admin.action"
    )]
    events: Vec<String>,
    /// Run only the direct codec (old-path columns print as 0), e.g. under a profiler.
    #[arg(long)]
    direct_only: bool,
}

/// A fully populated document: every optional field set, arrays of three, maps of two.
fn sample(schema: &Schema, name: &str, n: &mut u64) -> Json {
    *n += 1;
    match schema {
        Schema::Null => Json::Null,
        Schema::Boolean => json!(true),
        Schema::Int => json!(720),
        Schema::Long => json!(1_234_567),
        Schema::Float => json!(0.25),
        Schema::Double => json!(12.5),
        Schema::String if name == "currency" => json!("USD"),
        Schema::String => json!(format!("{name} sample text {n}")),
        Schema::Uuid(UuidSchema::String) => json!(uuid::Uuid::new_v4().to_string()),
        Schema::TimestampMillis => json!("2026-11-27T10:00:00.123Z"),
        Schema::Enum(e) => json!(e.symbols[0]),
        Schema::Array(a) => Json::Array((0..3).map(|_| sample(&a.items, name, n)).collect()),
        Schema::Map(m) => {
            let mut out = Map::new();
            for key in ["alpha", "beta"] {
                out.insert(key.to_string(), sample(&m.types, name, n));
            }
            Json::Object(out)
        }
        Schema::Record(r) => Json::Object(
            r.fields
                .iter()
                .map(|f| (f.name.clone(), sample(&f.schema, &f.name, n)))
                .collect(),
        ),
        Schema::Union(u) => u
            .variants()
            .iter()
            .find(|v| !matches!(v, Schema::Null))
            .map_or(Json::Null, |v| sample(v, name, n)),
        other => panic!("no sample for {other:?}"),
    }
}

/// What `apache_avro::from_avro_datum` (deprecated) does: a reader built for the value.
fn read_value(schema: &Schema, bytes: &[u8]) -> Value {
    GenericDatumReader::builder(schema)
        .build()
        .and_then(|reader| reader.read_value(&mut &bytes[..]))
        .unwrap()
}

/// Median ns per iteration of `repetitions` runs of `iterations` calls.
fn time(iterations: usize, repetitions: usize, mut f: impl FnMut()) -> f64 {
    if repetitions == 0 {
        return 0.0;
    }
    for _ in 0..iterations / 10 {
        f();
    }
    let mut runs: Vec<f64> = (0..repetitions)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iterations {
                f();
            }
            start.elapsed().as_nanos() as f64 / iterations as f64
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

fn main() {
    let cli = Cli::parse();
    let catalog = Catalog::load(&CatalogPaths::in_dir(&cli.root)).unwrap_or_else(|e| panic!("{e}"));
    println!(
        "{} iterations, median of {} runs, ns/event (old / new = speed-up)",
        cli.iterations, cli.repetitions
    );
    println!(
        "{:<20} {:>6} | {:>9} {:>9} {:>7} | {:>9} {:>9} {:>7}",
        "event", "bytes", "enc old", "enc new", "ratio", "dec old", "dec new", "ratio"
    );
    for name in &cli.events {
        let event = catalog
            .event(name)
            .unwrap_or_else(|| panic!("no event type {name}"));
        let schema: &Schema = &event.schema;
        let key = event.route.partition_key.as_deref();
        let compiled = CompiledSchema::new(schema).unwrap_or_else(|e| panic!("{name}: {e}"));
        let data = sample(schema, "", &mut 0);

        let mut buffer = Vec::with_capacity(1024);
        compiled
            .encode_json_keyed(&data, &mut buffer, key)
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let bytes = buffer.clone();
        assert_eq!(
            compiled.decode_json(&bytes).unwrap(),
            avro_to_json(&read_value(schema, &bytes))
        );

        let runs = if cli.direct_only { 0 } else { cli.repetitions };
        let encode_old = time(cli.iterations, runs, || {
            let value = json_to_avro(schema, black_box(&data)).unwrap();
            let key = key.and_then(|k| record_field_string(&value, k));
            let mut out = Vec::with_capacity(256);
            GenericDatumWriter::builder(schema)
                .build()
                .and_then(|writer| writer.write_value(&mut out, value))
                .unwrap();
            black_box((key, out));
        });
        let encode_new = time(cli.iterations, cli.repetitions, || {
            buffer.clear();
            let key = compiled
                .encode_json_keyed(black_box(&data), &mut buffer, key)
                .unwrap();
            black_box((key, &buffer));
        });
        let decode_old = time(cli.iterations, runs, || {
            let value = read_value(schema, black_box(&bytes));
            black_box(avro_to_json(&value));
        });
        let decode_new = time(cli.iterations, cli.repetitions, || {
            black_box(compiled.decode_json(black_box(&bytes)).unwrap());
        });
        println!(
            "{:<20} {:>6} | {:>9.0} {:>9.0} {:>6.1}x | {:>9.0} {:>9.0} {:>6.1}x",
            name,
            bytes.len(),
            encode_old,
            encode_new,
            encode_old / encode_new,
            decode_old,
            decode_new,
            decode_old / decode_new
        );
    }
}
