// Validates an AsyncAPI document with the AsyncAPI project's parser, Avro payloads included.
//
//   node scripts/asyncapi/validate.cjs <document.json|yaml>
//
// Prints every diagnostic as one JSON line; exits 1 when any is an error (severity 0).
// The packages come from scripts/asyncapi/package.json (scripts/test installs them; NODE_PATH
// points at their node_modules).
'use strict';

const fs = require('fs');
const { Parser } = require('@asyncapi/parser');
const { AvroSchemaParser } = require('@asyncapi/avro-schema-parser');

async function main() {
  const path = process.argv[2];
  if (!path) {
    console.error('usage: validate.cjs <document>');
    process.exit(64);
  }
  const parser = new Parser();
  parser.registerSchemaParser(AvroSchemaParser());
  const { document, diagnostics } = await parser.parse(fs.readFileSync(path, 'utf8'));
  for (const d of diagnostics) {
    console.log(JSON.stringify({ severity: d.severity, code: d.code, message: d.message, path: d.path }));
  }
  const errors = diagnostics.filter((d) => d.severity === 0);
  if (errors.length > 0 || !document) {
    console.error(`${errors.length} error(s)`);
    process.exit(1);
  }
  const channels = document.channels().length;
  const messages = document.components().messages().length;
  const operations = document.operations().length;
  console.error(`valid: ${channels} channels, ${messages} messages, ${operations} operations`);
}

main().catch((e) => {
  console.error(e);
  process.exit(2);
});
